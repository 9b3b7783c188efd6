//! Authentication: the bearer token, compared in constant time; else, for the
//! web dashboard, a session cookie with its origin check (see `web::auth`).

use super::error::ApiError;
use super::AppState;
use crate::daemon::web::auth::Refusal;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// How a request was authenticated, for the few routes that care
/// (`POST /v1/login` takes the bearer token only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthBy {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// The dashboard's session cookie.
    Cookie,
}

/// Paths served without the token: liveness, and the dashboard's pages and
/// assets (the page itself logs in; its API calls carry the cookie).
const PUBLIC: &[&str] = &["/healthz", "/", "/index.html", "/login", "/logout"];

/// True for requests the token does not guard: the public paths, the
/// dashboard's assets, and a Claude session's hook route (which checks the
/// session's own secret instead).
fn is_public(req: &Request) -> bool {
    let path = req.uri().path();
    PUBLIC.contains(&path)
        || path.starts_with("/assets/")
        || (req.method() == axum::http::Method::POST
            && path.starts_with("/v1/sessions/")
            && path.ends_with("/hooks")
            && path.matches('/').count() == 4)
}

/// Rejects requests without `Authorization: Bearer <token>` or, when they
/// carry no such header, without a valid dashboard cookie — except to the
/// public paths.
pub async fn require_token(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    if is_public(&req) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let by = match given {
        Some(t) if bool::from(t.as_bytes().ct_eq(app.token.as_bytes())) => AuthBy::Bearer,
        // Another node of the cluster, forwarding a request.
        Some(t)
            if app
                .cluster
                .token()
                .is_some_and(|c| bool::from(t.as_bytes().ct_eq(c.expose().as_bytes()))) =>
        {
            AuthBy::Bearer
        }
        Some(_) => return ApiError::unauthorized("invalid token").into_response(),
        None => match app.web.check(req.method(), req.headers()) {
            Ok(()) => AuthBy::Cookie,
            Err(r @ (Refusal::Missing | Refusal::BadCookie)) => {
                return ApiError::unauthorized(r.to_string()).into_response()
            }
            Err(r @ (Refusal::CrossOrigin { .. } | Refusal::NoCsrfHeader)) => {
                return ApiError {
                    status: StatusCode::FORBIDDEN,
                    code: "forbidden",
                    message: r.to_string(),
                }
                .into_response()
            }
        },
    };
    req.extensions_mut().insert(by);
    next.run(req).await
}
