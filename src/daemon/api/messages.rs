//! The prompt queue and session changes: `POST /messages`, `GET /queue`, `PATCH`.

use super::error::{ApiError, ApiResult, ErrorBody};
use super::{ApiJson, ApiPath, ApiQuery, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use herd_actors::{Message, MessageState, SessionInfo, SessionPatch};
use serde::Deserialize;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// Default for `?timeout=` with `?wait=true`.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Longest wait a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Body of `POST /v1/sessions/{id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// The prompt; Enter is pressed after it.
    text: String,
}

/// Query of `POST /v1/sessions/{id}/messages`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// Wait for the reply.
    #[serde(default)]
    wait: bool,
    /// How long to wait (humantime, default 60s, at most 1h).
    #[param(value_type = Option<String>)]
    #[serde(default, with = "humantime_serde::option")]
    timeout: Option<Duration>,
}

/// `POST /v1/sessions/{id}/messages[?wait=true&timeout=60s]`: queue a prompt.
/// 202 with the queued message; with `wait`, 200 once the session answered
/// and is ready again (the message carries `reply`), 504 if it did not in time.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/messages",
    tag = "sessions",
    summary = "Queue a prompt; with wait=true, wait for the reply",
    params(("id" = String, Path, description = "Session id or unique prefix"), MessageQuery),
    request_body = MessageBody,
    responses(
        (status = 202, description = "Queued", body = Message),
        (status = 200, description = "With wait: answered (the message carries reply)", body = Message),
        (status = 400, description = "Invalid body, query or id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "Illegal in the session's state", body = ErrorBody),
        (status = 413, description = "Body larger than server.body_limit", body = ErrorBody),
        (status = 429, description = "The session's queue is full", body = ErrorBody),
        (status = 503, description = "The store cannot take the write; nothing was changed", body = ErrorBody),
        (status = 507, description = "The data dir's disk is full; nothing was changed", body = ErrorBody),
        (status = 504, description = "With wait: no reply in time", body = ErrorBody),
    )
)]
pub async fn send(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<MessageQuery>,
    ApiJson(body): ApiJson<MessageBody>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    let id = app.registry.resolve(&id)?.id();
    let timeout = q.timeout.unwrap_or(DEFAULT_WAIT);
    if timeout > MAX_WAIT || timeout.is_zero() {
        return Err(ApiError::invalid(
            "timeout",
            format!(
                "{}: must be between 1ms and 1h",
                humantime::format_duration(timeout)
            ),
        ));
    }
    if !q.wait {
        let m = app.registry.send(id, body.text).await?;
        return Ok((StatusCode::ACCEPTED, Json(m)));
    }
    let m = app.registry.send_and_wait(id, body.text, timeout).await?;
    if m.state.is_final() {
        return Ok((StatusCode::OK, Json(m)));
    }
    Err(ApiError {
        status: StatusCode::GATEWAY_TIMEOUT,
        code: "timeout",
        message: format!(
            "no reply within {}: message {} is still {}",
            humantime::format_duration(timeout),
            m.id,
            match m.state {
                MessageState::Queued => "queued",
                _ => "being answered",
            }
        ),
    })
}

/// `GET /v1/sessions/{id}/queue`: recent finished messages, then pending ones.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/queue",
    tag = "sessions",
    summary = "Recent finished messages, then pending ones",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    responses(
        (status = 200, description = "The messages", body = Vec<Message>),
        (status = 400, description = "Invalid or ambiguous id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
pub async fn queue(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<Message>>> {
    Ok(Json(app.registry.resolve(&id)?.messages()))
}

/// Body of `POST /v1/sessions/{id}/answer`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// `yes`, `always` (yes, and do not ask again for this) or `no`.
    choice: String,
}

/// `POST /v1/sessions/{id}/answer`: answer the dialog of a `waiting_input`
/// session (a Claude permission dialog: 1. Yes, 2. Yes and always, 3. No).
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/answer",
    tag = "sessions",
    summary = "Answer the permission dialog of a waiting_input session",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    request_body = AnswerBody,
    responses(
        (status = 200, description = "Answered", body = SessionInfo),
        (status = 400, description = "Invalid choice or id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session is not waiting for input", body = ErrorBody),
    )
)]
pub async fn answer(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AnswerBody>,
) -> ApiResult<Json<SessionInfo>> {
    let handle = app.registry.resolve(&id)?;
    let key: &'static [u8] = match body.choice.as_str() {
        "yes" => b"1",
        "always" => b"2",
        "no" => b"3",
        other => {
            return Err(ApiError::invalid(
                "choice",
                format!("{other:?}: expected yes, always or no"),
            ))
        }
    };
    let info = handle.info();
    if info.state != herd_actors::SessionState::WaitingInput {
        return Err(herd_actors::HerdError::Conflict {
            id: info.id.to_string(),
            action: "answer".into(),
            state: info.state,
        }
        .into());
    }
    Ok(Json(
        app.registry
            .input(info.id, bytes::Bytes::from_static(key))
            .await?,
    ))
}

/// `PATCH /v1/sessions/{id}`: name, task, project, restart policy, limits.
#[utoipa::path(
    patch,
    path = "/v1/sessions/{id}",
    tag = "sessions",
    summary = "Change a session's metadata, limits or restart policy",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    request_body = SessionPatch,
    responses(
        (status = 200, description = "The session after the change", body = SessionInfo),
        (status = 400, description = "Invalid patch or id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "Illegal in the session's state", body = ErrorBody),
        (status = 503, description = "The store cannot take the write; nothing was changed", body = ErrorBody),
        (status = 507, description = "The data dir's disk is full; nothing was changed", body = ErrorBody),
    )
)]
pub async fn patch(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<SessionPatch>,
) -> ApiResult<Json<SessionInfo>> {
    let id = app.registry.resolve(&id)?.id();
    Ok(Json(app.registry.patch(id, patch).await?))
}
