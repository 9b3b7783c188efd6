//! The body of a session list, assembled from each session's kept JSON.
//!
//! Serialising thousands of snapshots per request was most of the cost of
//! `GET /v1/sessions` at 4,000 sessions. Each session keeps its snapshot's
//! JSON until the snapshot changes ([`SessionHandle::info_json`]); a list
//! concatenates them, adding only what the daemon knows at list time (the
//! node's name, the screen's last line) as extra fields. A session in a git
//! worktree is serialised afresh: its worktree's status comes from the
//! daemon's cache, and such sessions are few.

use super::error::ApiResult;
use super::AppState;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use herd_actors::{HerdError, ListFilter, SessionHandle};

/// What the daemon adds to every entry of a list.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Extras<'a> {
    /// `node`: this node's name, on a clustered daemon.
    pub node: Option<&'a str>,
    /// `last_line`: read from each screen when asked for.
    pub last_line: bool,
}

/// The JSON array of the sessions matching `filter`, oldest first, each as
/// `GET /v1/sessions/{id}` would show it plus `extras`.
pub(super) fn local_list(
    app: &AppState,
    filter: &ListFilter,
    extras: Extras<'_>,
) -> ApiResult<Response> {
    let handles = app.registry.list_handles(filter);
    // About 1 KiB per session: one allocation for a typical list.
    let mut body = Vec::with_capacity(2 + handles.len() * 1024);
    body.push(b'[');
    for (n, h) in handles.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        entry(app, h, extras, &mut body).map_err(|e| {
            HerdError::Internal(format!("cannot serialise session {}: {e}", h.id()))
        })?;
    }
    body.push(b']');
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// Appends one session's JSON object to `out`.
fn entry(
    app: &AppState,
    h: &SessionHandle,
    extras: Extras<'_>,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    let last_line = if extras.last_line {
        h.last_line()
    } else {
        None
    };
    if !h.in_worktree() {
        let json = h.info_json()?;
        // An object: `{...}`. The extras go before its closing brace (each
        // is absent from the snapshot itself, so none is written twice).
        if let Some(open) = json.strip_suffix(b"}") {
            out.extend_from_slice(open);
            let mut field = |name: &str, value: &str| -> Result<(), serde_json::Error> {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\":");
                serde_json::to_writer(&mut *out, value)
            };
            if let Some(node) = extras.node {
                field("node", node)?;
            }
            if let Some(line) = &last_line {
                field("last_line", line)?;
            }
            out.push(b'}');
            return Ok(());
        }
    }
    let mut info = h.info();
    app.worktrees.fill(std::slice::from_mut(&mut info));
    info.node = extras.node.map(str::to_string);
    info.last_line = last_line;
    serde_json::to_writer(out, &info)
}
