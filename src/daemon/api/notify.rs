//! `POST /v1/notify/test`: a test notification to every webhook.

use super::error::{ApiError, ApiResult, ErrorBody};
use super::AppState;
use crate::config::notify::NotifyEvent;
use crate::daemon::notify::Queued;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

/// `POST /v1/notify/test`
#[utoipa::path(
    post,
    path = "/v1/notify/test",
    tag = "daemon",
    summary = "Queue a `test` notification to every `[[notify]]` webhook",
    description = "The notification is stored in the outbox before this answers, then \
        delivered like any other (signed, retried until a 2xx). Answers the delivery ids.",
    responses(
        (status = 202, description = "Queued, one delivery per webhook", body = Vec<Queued>),
        (status = 409, description = "No webhook is configured", body = ErrorBody),
        (status = 507, description = "The outbox cannot take the write", body = ErrorBody),
    )
)]
pub async fn test(State(app): State<AppState>) -> ApiResult<(StatusCode, Json<Vec<Queued>>)> {
    if !app.notifier.has_targets() {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "no_webhooks",
            message: "no [[notify]] webhook is configured".into(),
        });
    }
    let data = serde_json::json!({"message": "a test notification from herd"});
    let queued = app
        .notifier
        .enqueue(NotifyEvent::Test, data)
        .await
        .map_err(|e| ApiError {
            status: StatusCode::INSUFFICIENT_STORAGE,
            code: "store_unavailable",
            message: format!("cannot store the notification: {e}"),
        })?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}
