//! A worktree session's diff: `GET /v1/sessions/{id}/diff`.

use super::error::{ApiError, ApiResult, ErrorBody};
use super::{ApiPath, AppState};
use crate::daemon::worktree::WorktreeError;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// `GET /v1/sessions/{id}/diff`
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/diff",
    tag = "sessions",
    summary = "The diff of a worktree session",
    description = "Everything the session's branch changed since its base: the commits made \
        on it and the uncommitted changes, untracked files as new files. Cut at 32 MiB.",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    responses(
        (status = 200, description = "A unified diff (empty: no changes)", content_type = "text/plain", body = String),
        (status = 400, description = "Invalid or ambiguous id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session has no worktree, or it is gone", body = ErrorBody),
        (status = 500, description = "Git failed on the worktree", body = ErrorBody),
    )
)]
pub async fn diff(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let info = app.registry.resolve(&id)?.info();
    let Some(w) = info.worktree else {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: format!(
                "session {} has no worktree (start one with `herd new --worktree`)",
                info.id
            ),
        });
    };
    let bytes = crate::daemon::worktree::diff(&w.path, &w.base)
        .await
        .map_err(|e| match e {
            WorktreeError::Gone { .. } => ApiError {
                status: StatusCode::CONFLICT,
                code: "conflict",
                message: format!("session {}: {e}", info.id),
            },
            // The worktree is there and git fails on it: the machine's trouble.
            e => ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "internal",
                message: format!("session {}: {e}", info.id),
            },
        })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response())
}
