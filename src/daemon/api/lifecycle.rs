//! Waiting for a session's state (`GET /wait`) and removing a session that
//! ended, with its data (`POST /remove`).

use super::error::{ApiError, ApiResult, ErrorBody};
use super::{ApiPath, ApiQuery, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use herd_actors::{SessionInfo, SessionState};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// Default of `?timeout=`.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Longest wait one request may ask for (clients wait longer in several).
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Query of `GET /v1/sessions/{id}/wait`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// The states to wait for, comma-separated (e.g. `ready,waiting_input`).
    state: String,
    /// How long to wait (humantime, default 60s, at most 1h).
    #[param(value_type = Option<String>, example = "30s")]
    #[serde(default, with = "humantime_serde::option")]
    timeout: Option<Duration>,
}

/// Parses `ready,waiting_input` into states; the error names the value.
fn parse_states(list: &str) -> ApiResult<Vec<SessionState>> {
    let mut out = vec![];
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let state = name.parse::<SessionState>().map_err(|_| {
            let all: Vec<&str> = SessionState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::invalid(
                "state",
                format!("{name:?}: expected one of {}", all.join(", ")),
            )
        })?;
        out.push(state);
    }
    if out.is_empty() {
        return Err(ApiError::invalid("state", "empty: name at least one state"));
    }
    Ok(out)
}

/// `GET /v1/sessions/{id}/wait?state=S[,S...]&timeout=T`
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/wait",
    tag = "sessions",
    summary = "Wait until the session is in one of the given states",
    description = "Answers at once if the session is in one of the states already. A session \
        that ends (stopped, failed) in a state not asked for is answered with 409 at once: \
        it will never get there.",
    params(("id" = String, Path, description = "Session id or unique prefix"), WaitQuery),
    responses(
        (status = 200, description = "Reached: the session in that state", body = SessionInfo),
        (status = 400, description = "Invalid state, timeout or id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session ended in another state", body = ErrorBody),
        (status = 504, description = "Not reached in time", body = ErrorBody),
    )
)]
pub async fn wait(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Json<SessionInfo>> {
    let states = parse_states(&q.state)?;
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
    let handle = app.registry.resolve(&id)?;
    let mut rx = handle.watch();
    let done = |i: &SessionInfo| states.contains(&i.state) || i.state.is_final();
    let reached = tokio::time::timeout(timeout, rx.wait_for(|i| done(i)))
        .await
        .is_ok();
    let info = handle.info();
    if states.contains(&info.state) {
        return Ok(Json(info));
    }
    let wanted: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    if reached && info.state.is_final() {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: format!(
                "session {} ended {} ({}) while waiting for {}",
                info.id,
                info.state,
                info.reason,
                wanted.join(" or ")
            ),
        });
    }
    Err(ApiError {
        status: StatusCode::GATEWAY_TIMEOUT,
        code: "timeout",
        message: format!(
            "session {} is still {} after {}; waited for {}",
            info.id,
            info.state,
            humantime::format_duration(timeout),
            wanted.join(" or ")
        ),
    })
}

/// Query of `POST /v1/sessions/{id}/remove`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Remove the session's worktree even with uncommitted changes.
    #[serde(default)]
    force: bool,
}

/// What became of a removed session's worktree.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorktreeOutcome {
    /// Removed (it was clean, or `force` was given).
    Removed,
    /// Kept: it has uncommitted changes.
    Kept,
    /// Its directory was gone already.
    Gone,
    /// Git could not remove it: see the message.
    Error,
}

/// The answer of `POST /v1/sessions/{id}/remove`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Removed {
    /// The session as it was last.
    #[serde(flatten)]
    pub session: SessionInfo,
    /// What became of its worktree, for a worktree session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree_outcome: Option<WorktreeOutcome>,
    /// What to know about it: where a kept worktree is, how to remove it,
    /// that the branch stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `POST /v1/sessions/{id}/remove`
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/remove",
    tag = "sessions",
    summary = "Remove a session that ended, with its data",
    description = "Deletes a stopped or failed session from the daemon and the store (its \
        events, messages and task mapping) and deletes its recordings. A live session is \
        refused with 409: stop it first. A worktree session's worktree is removed when it \
        has no uncommitted changes, else kept (the answer's `note` says where) unless \
        `force`; its branch is always kept.",
    params(("id" = String, Path, description = "Session id or unique prefix"), RemoveQuery),
    responses(
        (status = 200, description = "Removed: the session as it was last", body = Removed),
        (status = 400, description = "Invalid or ambiguous id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session is live", body = ErrorBody),
    )
)]
pub async fn remove(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> ApiResult<Json<Removed>> {
    let handle = app.registry.resolve(&id)?;
    let info = handle.info();
    let worktree = handle.spec().worktree;
    app.registry.remove(info.id).await?;
    // Gone from the store before the files go: a crash in between leaves
    // files without a session, which retention prunes, never the reverse.
    app.registry
        .journal()
        .flush()
        .await
        .map_err(herd_actors::HerdError::Storage)?;
    // A Claude session's private home (transcripts, settings) is its data too.
    app.claude.discard(info.id);
    app.worktrees.forget(info.id);
    if let Err(e) = app.recordings.delete(info.id).await {
        return Err(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: format!(
                "session {} removed, but its recordings in {} could not be deleted: {e}",
                info.id,
                app.recordings.folder(info.id).display()
            ),
        });
    }
    let (worktree_outcome, note) = match &worktree {
        None => (None, None),
        Some(w) => {
            let (o, n) = remove_worktree(w, q.force).await;
            (Some(o), Some(n))
        }
    };
    Ok(Json(Removed {
        session: info,
        worktree_outcome,
        note,
    }))
}

/// Removes a removed session's worktree if clean (or forced); says what
/// happened. The session is gone already, so a git failure is told, not
/// answered as an error.
async fn remove_worktree(w: &herd_actors::Worktree, force: bool) -> (WorktreeOutcome, String) {
    use crate::daemon::worktree::{remove, Removal};
    let (path, branch, repo) = (w.path.display(), &w.branch, w.repo.display());
    match remove(w, force).await {
        Ok(Removal::Removed) => (
            WorktreeOutcome::Removed,
            format!("worktree {path} removed; branch {branch} is kept in {repo}"),
        ),
        Ok(Removal::Gone) => (
            WorktreeOutcome::Gone,
            format!("worktree {path} was gone already; branch {branch} is kept in {repo}"),
        ),
        Ok(Removal::KeptDirty) => (
            WorktreeOutcome::Kept,
            format!(
                "worktree {path} has uncommitted changes and is kept (branch {branch}); \
                 delete it with `git -C {repo} worktree remove --force {path}` \
                 (or `herd rm --force` next time); the branch stays either way"
            ),
        ),
        Err(e) => (
            WorktreeOutcome::Error,
            format!("worktree {path} could not be removed: {e}; branch {branch} is kept in {repo}"),
        ),
    }
}
