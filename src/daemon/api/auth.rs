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

/// Rejects requests without `Authorization: Bearer <token>` or, when they
/// carry no such header, without a valid dashboard cookie.
pub async fn require_token(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let by = match given {
        Some(t) if bool::from(t.as_bytes().ct_eq(app.token.as_bytes())) => AuthBy::Bearer,
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
