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
/// and is ready again (the message carries `reply`), 504 if it did not in
/// time (a message not typed by then is cancelled: nobody waits for it).
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
        (status = 504, description = "With wait: no reply in time (a message still queued then is cancelled)", body = ErrorBody),
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
    let started = std::time::Instant::now();
    let m = app.registry.send_and_wait(id, body.text, timeout).await?;
    // Cancelled once the wait was over: by the wait itself, for nobody
    // waits for it any more. That is a timeout, not an answer.
    let cancelled_by_timeout = m.state == MessageState::Cancelled && started.elapsed() >= timeout;
    if m.state.is_final() && !cancelled_by_timeout {
        return Ok((StatusCode::OK, Json(m)));
    }
    Err(ApiError {
        status: StatusCode::GATEWAY_TIMEOUT,
        code: "timeout",
        message: format!(
            "no reply within {}: message {} {}",
            humantime::format_duration(timeout),
            m.id,
            match m.state {
                MessageState::Cancelled => "was never typed and is cancelled",
                MessageState::Queued => "is still queued",
                _ => "is still being answered",
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

/// `DELETE /v1/sessions/{id}/messages/{mid}`: cancel a message still queued.
#[utoipa::path(
    delete,
    path = "/v1/sessions/{id}/messages/{mid}",
    tag = "sessions",
    summary = "Cancel a queued message (never one being answered)",
    params(
        ("id" = String, Path, description = "Session id or unique prefix"),
        ("mid" = String, Path, description = "Message id"),
    ),
    responses(
        (status = 200, description = "Cancelled: the message, in state cancelled", body = Message),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 404, description = "No such session or message", body = ErrorBody),
        (status = 409, description = "The message is being answered or finished", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(app): State<AppState>,
    ApiPath((id, mid)): ApiPath<(String, String)>,
) -> ApiResult<Json<Message>> {
    let id = app.registry.resolve(&id)?.id();
    let mid = uuid::Uuid::parse_str(&mid)
        .map_err(|_| ApiError::invalid("mid", format!("{mid:?} is not a message id")))?;
    Ok(Json(app.registry.cancel(id, mid).await?))
}

/// Body of `POST /v1/sessions/{id}/answer`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// `yes`, `always` (yes, and do not ask again for this), `no`, or any
    /// other text: the label of a choice, else typed as a free answer.
    choice: String,
}

/// `POST /v1/sessions/{id}/answer`: answer the dialog of a `waiting_input`
/// session by meaning. herd picks the key from the choices the dialog
/// offers (see the session's `waiting.choices`), never a digit typed blind.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/answer",
    tag = "sessions",
    summary = "Answer the permission dialog of a waiting_input session",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    request_body = AnswerBody,
    responses(
        (status = 200, description = "Answered", body = SessionInfo),
        (status = 400, description = "Invalid choice (the message lists those offered) or id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session is not waiting for input", body = ErrorBody),
    )
)]
pub async fn answer(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AnswerBody>,
) -> ApiResult<Json<SessionInfo>> {
    let id = app.registry.resolve(&id)?.id();
    if body.choice.len() > 4096 {
        return Err(ApiError::invalid(
            "choice",
            format!("{} bytes: at most 4096", body.choice.len()),
        ));
    }
    Ok(Json(app.registry.answer(id, body.choice).await?))
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
