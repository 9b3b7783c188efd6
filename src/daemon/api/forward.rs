//! One API, any node: on a clustered node, a request for a session another
//! node owns (`/v1/sessions/{id}` and everything under it, WebSockets
//! included) is forwarded to that node (`cluster::proxy`). Installed only
//! when clustered, inside the token check: only an authenticated request is
//! forwarded, with the cluster token instead of the caller's credentials.

use super::auth::AuthBy;
use super::error::ApiError;
use super::AppState;
use crate::daemon::cluster::locate::LocateError;
use crate::daemon::cluster::proxy::{self, Target, FORWARDED};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The session id (or prefix) of a path under `/v1/sessions/{id}`.
fn session_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/sessions/")?;
    let id = rest.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

fn is_websocket(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Forwards requests for sessions owned elsewhere; everything else (and a
/// request already forwarded once: the loop guard) is answered here.
pub async fn forward(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(id) = session_of(req.uri().path()) else {
        return next.run(req).await;
    };
    if req.extensions().get::<AuthBy>().is_none() || req.headers().contains_key(FORWARDED) {
        return next.run(req).await;
    }
    let Some(via) = app.cluster.via() else {
        return next.run(req).await;
    };
    let target = match app.cluster.locate(&app.registry, id).await {
        Ok(l) => match Target::of(l) {
            Some(t) => t,
            None => return next.run(req).await,
        },
        Err(LocateError::Ambiguous(e)) => return ApiError::from(e).into_response(),
        Err(e @ LocateError::Unavailable { .. }) => {
            return ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "cluster_unavailable",
                message: e.to_string(),
            }
            .into_response()
        }
        Err(e @ LocateError::OwnerGone { .. }) => return unreachable(e.to_string()),
    };
    tracing::debug!(session = %target.id, node = %target.node, path = %req.uri().path(), "forwarding to the owner");
    let answer = if is_websocket(&req) {
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
        let (mut parts, _) = req.into_parts();
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(u) => u,
            Err(r) => {
                return ApiError::invalid("websocket handshake", r.body_text()).into_response()
            }
        };
        proxy::websocket(upgrade, &path, &target, via).await
    } else {
        proxy::http(req, &target, via).await
    };
    answer.unwrap_or_else(|e| {
        tracing::warn!(session = %e.id, node = %e.node, "cannot forward: {e}");
        unreachable(e.to_string())
    })
}

fn unreachable(message: String) -> Response {
    ApiError {
        status: StatusCode::BAD_GATEWAY,
        code: "node_unreachable",
        message,
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_routes_are_recognised() {
        assert_eq!(session_of("/v1/sessions/1a2b"), Some("1a2b"));
        assert_eq!(session_of("/v1/sessions/1a2b/attach"), Some("1a2b"));
        assert_eq!(session_of("/v1/sessions/1a2b/messages/m1"), Some("1a2b"));
        assert_eq!(session_of("/v1/sessions"), None);
        assert_eq!(session_of("/v1/sessions/"), None);
        assert_eq!(session_of("/v1/events"), None);
    }
}
