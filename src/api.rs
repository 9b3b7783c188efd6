//! The HTTP API (v1, JSON), on axum.

mod auth;
pub mod error;
mod messages;
mod sessions;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use error::ApiError;
use herd_actors::Registry;
use std::sync::Arc;
use std::time::Instant;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The actor system.
    pub registry: Registry,
    /// The API token.
    pub token: Arc<String>,
    /// When the daemon started (for /healthz and stats).
    pub started: Instant,
}

/// JSON body whose rejections become [`ApiError`]s naming the field.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Query string whose rejections become [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Path parameters whose rejections become [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// The whole router.
pub fn router(state: AppState, body_limit: usize) -> Router {
    let v1 = Router::new()
        .route("/v1/sessions", post(sessions::create).get(sessions::list))
        .route(
            "/v1/projects/{project}/sessions",
            post(sessions::create_in_project),
        )
        .route(
            "/v1/sessions/{id}",
            get(sessions::show)
                .delete(sessions::stop)
                .patch(messages::patch),
        )
        .route("/v1/sessions/{id}/messages", post(messages::send))
        .route("/v1/sessions/{id}/queue", get(messages::queue))
        .route("/v1/sessions/{id}/input", post(sessions::input))
        .route("/v1/sessions/{id}/resize", post(sessions::resize))
        .route("/v1/sessions/{id}/interrupt", post(sessions::interrupt))
        .route("/v1/sessions/{id}/suspend", post(sessions::suspend))
        .route("/v1/sessions/{id}/resume", post(sessions::resume))
        .route("/v1/sessions/{id}/restart", post(sessions::restart))
        .route("/v1/sessions/{id}/screen", get(sessions::screen))
        .route("/v1/sessions/{id}/output", get(sessions::output))
        .route("/v1/tasks/{task}", get(sessions::task))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(v1)
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                message: "method not allowed on this route".into(),
            }
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn healthz(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": app.started.elapsed().as_secs(),
        "sessions": app.registry.live_count(),
    }))
}
