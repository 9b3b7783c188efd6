//! Bearer-token authentication, compared in constant time.

use super::error::ApiError;
use super::AppState;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// Paths served without the token.
const PUBLIC: &[&str] = &["/healthz"];

/// Rejects requests without `Authorization: Bearer <token>`, except to the
/// public paths.
pub async fn require_token(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if PUBLIC.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        None => {
            ApiError::unauthorized("missing Authorization: Bearer <token> header").into_response()
        }
        Some(t) if bool::from(t.as_bytes().ct_eq(app.token.as_bytes())) => next.run(req).await,
        Some(_) => ApiError::unauthorized("invalid token").into_response(),
    }
}
