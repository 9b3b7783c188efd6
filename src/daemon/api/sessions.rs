//! Session routes.

use super::error::{ApiError, ApiResult, ErrorBody};
use super::list_json::{local_list, Extras};
use super::{ApiJson, ApiPath, ApiQuery, AppState};
use crate::daemon::cluster::gather;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use herd_actors::{keys, HerdError, ListFilter, SessionInfo, SessionState};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

fn resolve(app: &AppState, id: &str) -> ApiResult<Uuid> {
    Ok(app.registry.resolve(id)?.id())
}

/// Query of `GET /v1/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only sessions in this state.
    #[param(value_type = Option<SessionState>)]
    state: Option<String>,
    /// Only sessions of this task.
    task: Option<String>,
    /// Only sessions of this project.
    project: Option<String>,
    /// Include stopped and failed sessions.
    #[serde(default)]
    all: bool,
    /// Add each session's `last_line`: the last non-blank line of its screen.
    #[serde(default)]
    last_line: bool,
    /// In a cluster: this node's sessions only (by default a node lists
    /// every node's).
    #[serde(default)]
    local: bool,
}

/// `GET /v1/sessions`
#[utoipa::path(
    get,
    path = "/v1/sessions",
    tag = "sessions",
    summary = "List sessions, oldest first",
    params(ListQuery),
    description = "In a cluster, every node's sessions (each other node asked for its own \
        with `local=true`, in parallel, each within 3 s), each with its `node`; the nodes \
        that did not answer are named in the header `X-Herd-Missing-Nodes` and their \
        sessions left out.",
    responses(
        (status = 200, description = "Matching sessions", body = Vec<SessionInfo>,
            headers(("X-Herd-Missing-Nodes" = String, description = "Cluster nodes that did not answer (comma-separated); absent when all did"))),
        (status = 400, description = "Invalid filter", body = ErrorBody),
    )
)]
pub async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<SessionState>()
                .map_err(|e| ApiError::invalid("state", e))?,
        ),
    };
    let filter = ListFilter {
        state,
        task_id: q.task,
        project_id: q.project,
        all: q.all,
    };
    let node = app.cluster.node_name();
    if node.is_none() || q.local {
        let extras = Extras {
            node,
            last_line: q.last_line,
        };
        return local_list(&app, &filter, extras);
    }
    let mut sessions = if q.last_line {
        app.registry.list_with_last_line(&filter)
    } else {
        app.registry.list(&filter)
    };
    app.worktrees.fill(&mut sessions);
    for s in &mut sessions {
        s.node = node.map(str::to_string);
    }
    let (sessions, missing) = everywhere(&app, sessions, raw.as_deref()).await?;
    let mut r = Json(sessions).into_response();
    if !missing.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&missing.join(",")) {
            r.headers_mut().insert(gather::MISSING_NODES, v);
        }
    }
    Ok(r)
}

/// This node's sessions with every other node's, oldest first; and the
/// nodes that did not answer.
async fn everywhere(
    app: &AppState,
    mut sessions: Vec<SessionInfo>,
    query: Option<&str>,
) -> ApiResult<(Vec<SessionInfo>, Vec<String>)> {
    let (Some(via), peers) = (app.cluster.via(), app.cluster.peers(&app.registry).await) else {
        return Ok((sessions, vec![]));
    };
    let peers = peers.map_err(|e| ApiError {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        code: "cluster_unavailable",
        message: format!("cannot list the cluster's nodes: {e}"),
    })?;
    let path = gather::local_path("/v1/sessions", query);
    let mut got = gather::lists(&peers, &path, via).await;
    for (node, items) in got.items {
        for v in items {
            match serde_json::from_value::<SessionInfo>(v) {
                Ok(mut s) => {
                    s.node.get_or_insert_with(|| node.clone());
                    sessions.push(s);
                }
                Err(e) => {
                    tracing::warn!(node = %node, "unreadable session in its list: {e}");
                    if !got.missing.contains(&node) {
                        got.missing.push(node.clone());
                    }
                }
            }
        }
    }
    sessions.sort_by_key(|s| (s.created_at, s.id));
    Ok((sessions, got.missing))
}

/// `GET /v1/sessions/{id}`
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}",
    tag = "sessions",
    summary = "One session",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    responses(
        (status = 200, description = "The session", body = SessionInfo),
        (status = 400, description = "Invalid or ambiguous id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
pub async fn show(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SessionInfo>> {
    let mut info = app.registry.resolve(&id)?.info();
    app.worktrees.fresh(&mut info).await;
    info.node = app.cluster.node_name().map(str::to_string);
    Ok(Json(info))
}

/// `GET /v1/tasks/{task}`: the live session of a task (else its newest one).
#[utoipa::path(
    get,
    path = "/v1/tasks/{task}",
    tag = "sessions",
    summary = "The session of a task: its live one, else its newest",
    params(("task" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The session", body = SessionInfo),
        (status = 404, description = "No session serves the task", body = ErrorBody),
    )
)]
pub async fn task(
    State(app): State<AppState>,
    ApiPath(task): ApiPath<String>,
    headers: axum::http::HeaderMap,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    if let Some(info) = local_task(&app, &task) {
        return Ok(Json(info).into_response());
    }
    // In a cluster the task may be served on another node: etcd maps it.
    if !headers.contains_key(crate::daemon::cluster::FORWARDED_HEADER) {
        if let Some(answer) = app.cluster.task_elsewhere(&task).await {
            return answer.map_err(|e| ApiError {
                status: axum::http::StatusCode::BAD_GATEWAY,
                code: "node_unreachable",
                message: e,
            });
        }
    }
    Err(ApiError::not_found(format!(
        "no session serves task {task:?}"
    )))
}

/// The live session of a task on this node (else its newest one).
fn local_task(app: &AppState, task: &str) -> Option<SessionInfo> {
    let filter = ListFilter {
        task_id: Some(task.to_string()),
        all: true,
        ..Default::default()
    };
    let sessions = app.registry.list(&filter);
    let mut best = sessions
        .iter()
        .rev()
        .find(|s| !s.state.is_final())
        .or_else(|| sessions.last())
        .cloned();
    if let Some(b) = best.as_mut() {
        b.node = app.cluster.node_name().map(str::to_string);
    }
    best
}

/// Query of `DELETE /v1/sessions/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StopQuery {
    /// SIGKILL at once instead of SIGTERM, grace period, SIGKILL.
    #[serde(default)]
    force: bool,
}

/// `DELETE /v1/sessions/{id}?force=`: stop (SIGTERM, grace, SIGKILL).
#[utoipa::path(
    delete,
    path = "/v1/sessions/{id}",
    tag = "sessions",
    summary = "Stop a session (SIGTERM, grace, SIGKILL to the process group)",
    params(("id" = String, Path, description = "Session id or unique prefix"), StopQuery),
    responses(
        (status = 200, description = "The session, stopping or stopped", body = SessionInfo),
        (status = 400, description = "Invalid or ambiguous id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "Illegal in the session's state", body = ErrorBody),
    )
)]
pub async fn stop(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StopQuery>,
) -> ApiResult<Json<SessionInfo>> {
    let handle = app.registry.resolve(&id)?;
    // Stopping what has ended is done already: the same answer every time.
    let info = handle.info();
    if info.state.is_final() {
        return Ok(Json(info));
    }
    Ok(Json(app.registry.stop(handle.id(), q.force).await?))
}

/// Body of `POST /v1/sessions/{id}/input`: exactly one of the fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputBody {
    /// Literal text.
    text: Option<String>,
    /// Key names (`Enter`, `C-c`, ...) and literal words, like tmux send-keys.
    keys: Option<Vec<String>>,
}

/// `POST /v1/sessions/{id}/input`
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/input",
    tag = "sessions",
    summary = "Write raw input (text or key names) to the terminal",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    request_body = InputBody,
    responses(
        (status = 200, description = "The session after the change", body = SessionInfo),
        (status = 400, description = "Invalid body or id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "Illegal in the session's state", body = ErrorBody),
        (status = 413, description = "Body larger than server.body_limit", body = ErrorBody),
        (status = 429, description = "The session's input queue is full", body = ErrorBody),
    )
)]
pub async fn input(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<InputBody>,
) -> ApiResult<Json<SessionInfo>> {
    let id = resolve(&app, &id)?;
    let data = match (body.text, body.keys) {
        (Some(t), None) => t.into_bytes(),
        (None, Some(k)) => keys::parse_keys(&k).map_err(|e| ApiError::invalid("keys", e))?,
        _ => {
            return Err(ApiError::invalid(
                "body",
                "give exactly one of `text` or `keys`",
            ))
        }
    };
    if data.is_empty() {
        return Err(ApiError::invalid("text", "input must not be empty"));
    }
    Ok(Json(app.registry.input(id, Bytes::from(data)).await?))
}

/// Body of `POST /v1/sessions/{id}/resize`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeBody {
    /// Terminal columns (2 to 1000).
    cols: u16,
    /// Terminal rows (1 to 1000).
    rows: u16,
}

/// `POST /v1/sessions/{id}/resize`
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/resize",
    tag = "sessions",
    summary = "Resize the terminal",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    request_body = ResizeBody,
    responses(
        (status = 200, description = "The session after the change", body = SessionInfo),
        (status = 400, description = "Invalid size or id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "Illegal in the session's state", body = ErrorBody),
    )
)]
pub async fn resize(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ResizeBody>,
) -> ApiResult<Json<SessionInfo>> {
    let id = resolve(&app, &id)?;
    Ok(Json(app.registry.resize(id, body.cols, body.rows).await?))
}

/// `POST /v1/sessions/{id}/interrupt`
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/interrupt",
    tag = "sessions",
    summary = "SIGINT to the foreground process group",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    responses(
        (status = 200, description = "The session after the change", body = SessionInfo),
        (status = 400, description = "Invalid or ambiguous id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "Illegal in the session's state", body = ErrorBody),
    )
)]
pub async fn interrupt(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SessionInfo>> {
    let id = resolve(&app, &id)?;
    Ok(Json(app.registry.interrupt(id).await?))
}

/// `POST /v1/sessions/{id}/suspend`
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/suspend",
    tag = "sessions",
    summary = "SIGSTOP the process tree",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    responses(
        (status = 200, description = "The session after the change", body = SessionInfo),
        (status = 400, description = "Invalid or ambiguous id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "Illegal in the session's state", body = ErrorBody),
    )
)]
pub async fn suspend(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SessionInfo>> {
    let id = resolve(&app, &id)?;
    Ok(Json(app.registry.suspend(id).await?))
}

/// `POST /v1/sessions/{id}/resume`
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/resume",
    tag = "sessions",
    summary = "SIGCONT the process tree",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    responses(
        (status = 200, description = "The session after the change", body = SessionInfo),
        (status = 400, description = "Invalid or ambiguous id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "Illegal in the session's state", body = ErrorBody),
    )
)]
pub async fn resume(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SessionInfo>> {
    let id = resolve(&app, &id)?;
    Ok(Json(app.registry.resume(id).await?))
}

/// `POST /v1/sessions/{id}/restart`
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/restart",
    tag = "sessions",
    summary = "Replace the child process now",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    responses(
        (status = 200, description = "The session after the change", body = SessionInfo),
        (status = 400, description = "Invalid or ambiguous id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "Illegal in the session's state", body = ErrorBody),
    )
)]
pub async fn restart(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SessionInfo>> {
    let id = resolve(&app, &id)?;
    Ok(Json(app.registry.restart(id).await?))
}

/// Query of `GET /v1/sessions/{id}/screen`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScreenQuery {
    /// `json` (the default) or `text`.
    format: Option<String>,
}

/// The JSON answer of `GET /v1/sessions/{id}/screen`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScreenJson {
    /// The session id.
    id: Uuid,
    /// Its state.
    state: SessionState,
    /// Terminal columns.
    cols: u16,
    /// Terminal rows.
    rows: u16,
    /// The screen, one line per row.
    text: String,
}

/// `GET /v1/sessions/{id}/screen`: JSON, or plain text with `?format=text`.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/screen",
    tag = "sessions",
    summary = "The current screen as text",
    params(("id" = String, Path, description = "Session id or unique prefix"), ScreenQuery),
    responses(
        (status = 200, description = "The screen", content((ScreenJson = "application/json"), (String = "text/plain"))),
        (status = 400, description = "Invalid format or id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
pub async fn screen(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ScreenQuery>,
) -> ApiResult<Response> {
    let handle = app.registry.resolve(&id)?;
    let text = if handle.is_released() {
        let dir = app.data_dir.clone();
        let h = handle.clone();
        tokio::task::spawn_blocking(move || crate::daemon::replayed::screen_text(&dir, &h))
            .await
            .map_err(|e| HerdError::Internal(format!("reading the recording: {e}")))?
    } else {
        handle.screen_text()
    };
    match q.format.as_deref() {
        Some("text") => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
        }
        None | Some("json") => {
            let info = handle.info();
            Ok(Json(ScreenJson {
                id: info.id,
                state: info.state,
                cols: info.cols,
                rows: info.rows,
                text,
            })
            .into_response())
        }
        Some(other) => Err(ApiError::invalid(
            "format",
            format!("{other:?}: expected text or json"),
        )),
    }
}

/// Query of `GET /v1/sessions/{id}/output`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutputQuery {
    /// Absolute offset to read from (default: the oldest byte held).
    #[serde(default)]
    since: u64,
    /// Most bytes to return.
    limit: Option<usize>,
    /// Long-poll: wait up to this long for output past `since` (e.g. "30s").
    #[param(value_type = Option<String>)]
    #[serde(default, with = "humantime_serde::option")]
    wait: Option<Duration>,
}

/// Longest long-poll a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// `GET /v1/sessions/{id}/output?since=&limit=&wait=`: raw bytes; the headers
/// `herd-output-start`, `herd-output-end` (pass as `since` next) and
/// `herd-output-truncated` locate them, `herd-session-state` tells whether more can come.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/output",
    tag = "sessions",
    summary = "Buffered raw output from an offset, optionally long-polling",
    params(("id" = String, Path, description = "Session id or unique prefix"), OutputQuery),
    responses(
        (
            status = 200,
            description = "Raw bytes",
            content_type = "application/octet-stream",
            body = String,
            headers(
                ("herd-output-start" = u64, description = "Offset of the first byte returned"),
                ("herd-output-end" = u64, description = "Offset after the last byte: pass as `since` next"),
                ("herd-output-truncated" = bool, description = "Whether bytes before the start were dropped"),
                ("herd-session-state" = SessionState, description = "Whether more output can come"),
            )
        ),
        (status = 400, description = "Invalid query or id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
pub async fn output(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<OutputQuery>,
) -> ApiResult<Response> {
    let handle = app.registry.resolve(&id)?;
    let limit = q.limit.unwrap_or(usize::MAX);
    if limit == 0 {
        return Err(ApiError::invalid("limit", "0: must be at least 1"));
    }
    let slice = match q.wait {
        Some(w) if w > MAX_WAIT => {
            return Err(ApiError::invalid(
                "wait",
                format!("{}: at most 5m", humantime::format_duration(w)),
            ))
        }
        // An ended session's output is in its recording, not in memory.
        _ if handle.is_released() => {
            let dir = app.data_dir.clone();
            let h = handle.clone();
            tokio::task::spawn_blocking(move || {
                crate::daemon::replayed::output(&dir, &h, q.since, limit)
            })
            .await
            .map_err(|e| HerdError::Internal(format!("reading the recording: {e}")))?
        }
        Some(w) => handle.wait_output(q.since, limit, w).await,
        None => handle.output(q.since, limit),
    };
    let mut headers = HeaderMap::new();
    let num = |n: u64| HeaderValue::from(n);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert("herd-output-start", num(slice.start));
    headers.insert("herd-output-end", num(slice.end));
    headers.insert(
        "herd-output-truncated",
        HeaderValue::from_static(if slice.truncated { "true" } else { "false" }),
    );
    headers.insert(
        "herd-session-state",
        HeaderValue::from_static(handle.info().state.as_str()),
    );
    Ok((headers, slice.data).into_response())
}
