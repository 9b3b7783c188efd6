//! `POST /v1/sessions/{id}/hooks`: where a Claude session's hooks report.
//!
//! Not behind the API token: each session's hooks carry that session's own
//! secret (`X-Herd-Hook-Token`, compared in constant time), so a hook can
//! move only its own session. The body is capped, and the answer is
//! immediate (`{}`: no decision for the CLI) — the event goes to the
//! session's mailbox and Claude is never slowed down by herd.

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::daemon::claude::hooks::{TOKEN_ENV, TOKEN_HEADER};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use herd_actors::ClaudeHook;
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// Largest hook body taken (a tool's input can be a whole file).
pub const MAX_HOOK_BODY: usize = 1024 * 1024;

/// `POST /v1/sessions/{id}/hooks`: one hook event of a Claude session.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/hooks",
    tag = "sessions",
    summary = "Report a Claude Code hook event (the session's own secret, not the API token)",
    security(("hook_token" = [])),
    params(
        ("id" = Uuid, Path, description = "Session id"),
        ("x-herd-hook-token" = String, Header, description = "The session's hook secret"),
    ),
    request_body(content = serde_json::Value, description = "The hook event JSON, as Claude Code posts it"),
    responses(
        (status = 200, description = "Taken (no decision for the CLI)", body = serde_json::Value),
        (status = 400, description = "Not a hook event", body = ErrorBody),
        (status = 401, description = "Unknown session or wrong secret", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
    )
)]
pub async fn hook(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    // One answer for an unknown session and a wrong secret: nothing to probe.
    let refused = || ApiError::unauthorized("unknown session or wrong hook secret");
    let id: Uuid = id.parse().map_err(|_| refused())?;
    let handle = app.registry.get(id).ok_or_else(refused)?;
    let given = headers
        .get(TOKEN_HEADER)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let spec = handle.spec();
    let expected = spec.secret_env.get(TOKEN_ENV).ok_or_else(refused)?;
    if given.is_empty() || !bool::from(given.as_slice().ct_eq(expected.expose().as_bytes())) {
        return Err(refused());
    }
    if body.len() > MAX_HOOK_BODY {
        return Err(ApiError {
            status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_large",
            message: format!("hook body of {} bytes: at most {MAX_HOOK_BODY}", body.len()),
        });
    }
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid("body", format!("not JSON: {e}")))?;
    let hook = ClaudeHook::from_json(&value)?;
    tracing::debug!(session = %id, event = hook.name(), "hook");
    // A session that is ending takes no more events; the CLI need not know.
    if let Err(e) = app.registry.hook(id, hook) {
        tracing::debug!(session = %id, "hook not delivered: {e}");
    }
    Ok(Json(serde_json::json!({})))
}
