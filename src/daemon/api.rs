//! The HTTP API (v1, JSON), on axum.

mod admin;
mod attach;
pub mod auth;
mod create;
pub mod error;
mod events;
mod forward;
mod guard;
mod hooks;
mod idempotency;
mod lifecycle;
mod list_json;
mod messages;
mod metrics;
mod nodes;
mod notify;
pub mod openapi;
mod recording;
mod sessions;
pub mod stats;
mod worktree;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts};
use axum::{middleware, Json, Router};
use error::ApiError;
use herd_actors::Registry;
use std::sync::Arc;
use std::time::Instant;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The actor system.
    pub registry: Registry,
    /// The API token.
    pub token: Arc<String>,
    /// When the daemon started (for /healthz and stats).
    pub started: Instant,
    /// Builds Claude sessions.
    pub claude: Arc<crate::daemon::claude::ClaudeProfile>,
    /// The daemon's data dir (recordings live under it).
    pub data_dir: std::path::PathBuf,
    /// Whether the store takes writes (shown by `/healthz`).
    pub store_health: crate::daemon::store::StoreHealth,
    /// The webhooks' outbox.
    pub notifier: crate::daemon::notify::Notifier,
    /// The web dashboard's logins: tickets and session cookies.
    pub web: Arc<crate::daemon::web::WebAuth>,
    /// `[server] public_url`: the base of login links, when set.
    pub public_url: Option<Arc<str>>,
    /// How many ended sessions are kept, and how long (`POST /v1/gc`).
    pub retention: crate::daemon::retention::Policy,
    /// The recordings, and the one way to delete a session's.
    pub recordings: crate::daemon::recorder::Recordings,
    /// Answers kept for `Idempotency-Key` retries.
    pub idempotency: Arc<idempotency::Cache>,
    /// The daemon listens on loopback: only loopback Host names are served.
    pub loopback_only: bool,
    /// `[templates.NAME]`: what `template` in a create request names.
    pub templates: Arc<std::collections::BTreeMap<String, crate::config::template::Template>>,
    /// Worktree status for lists, refreshed in the background.
    pub worktrees: crate::daemon::worktree::StatusCache,
    /// This daemon's cluster membership, or this daemon alone.
    pub cluster: crate::daemon::cluster::Cluster,
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

/// Every route behind the token, each with its OpenAPI operation: the one
/// list of what the API serves. `routes!` takes a handler's method and path
/// from its `#[utoipa::path]`, so the router and the document cannot drift.
/// To add a route: annotate the handler with `#[utoipa::path(...)]` (method,
/// path, params, body, responses) and add `.routes(routes!(module::handler))`
/// here. Never `.route(...)`: clippy denies it (see clippy.toml).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(create::create, sessions::list))
        .routes(routes!(create::create_in_project))
        .routes(routes!(sessions::show, sessions::stop, messages::patch))
        .routes(routes!(messages::send))
        .routes(routes!(messages::cancel))
        .routes(routes!(lifecycle::wait))
        .routes(routes!(lifecycle::remove))
        .routes(routes!(messages::queue))
        .routes(routes!(messages::answer))
        .routes(routes!(sessions::input))
        .routes(routes!(sessions::resize))
        .routes(routes!(sessions::interrupt))
        .routes(routes!(sessions::suspend))
        .routes(routes!(sessions::resume))
        .routes(routes!(sessions::restart))
        .routes(routes!(sessions::screen))
        .routes(routes!(sessions::output))
        .routes(routes!(worktree::diff))
        .routes(routes!(recording::recording))
        .routes(routes!(recording::list))
        .routes(routes!(events::session_events))
        .routes(routes!(sessions::task))
        .routes(routes!(events::events))
        .routes(routes!(events::notices))
        .routes(routes!(notify::test))
        .routes(routes!(attach::attach))
        .routes(routes!(stats::stats))
        .routes(routes!(nodes::nodes))
        .routes(routes!(nodes::drain))
        .routes(routes!(metrics::metrics))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(crate::daemon::web::pages::login_link))
        .routes(routes!(admin::backup))
        .routes(routes!(admin::gc))
}

/// Routes without the token (documented with `security(())`).
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(hooks::hook))
}

/// The whole router.
pub fn router(state: AppState, body_limit: usize, body_timeout: std::time::Duration) -> Router {
    let (v1, _) = routes().split_for_parts();
    let (public, _) = public_routes().split_for_parts();
    let app = Router::new()
        .merge(public)
        .merge(v1)
        .merge(crate::daemon::web::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                message: "method not allowed on this route".into(),
            }
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotent,
        ));
    // Inside the token check (only what it let in is forwarded), outside the
    // idempotency cache (the owner keeps the answers of its sessions).
    let app = if state.cluster.clustered() {
        app.layer(middleware::from_fn_with_state(
            state.clone(),
            forward::forward,
        ))
    } else {
        app
    };
    app
        // Outside the routing: a request without the token is 401 whatever
        // its path or method, so a stranger cannot map the routes.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::check_request,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        // A client that trickles its body cannot hold a connection forever.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .with_state(state)
}

/// `GET /healthz`: liveness, without the token.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "daemon",
    summary = "Liveness (no token needed)",
    security(()),
    responses((
        status = 200,
        description = "status (`ok`, or `degraded` with `store` saying why while the store cannot be written), version, uptime_seconds, live sessions; in a cluster, `cluster`: node, registered, lease_losses",
        body = serde_json::Value
    ))
)]
async fn healthz(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> Json<serde_json::Value> {
    let mut body = serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "commit": crate::version::COMMIT,
        "uptime_seconds": app.started.elapsed().as_secs(),
        "sessions": app.registry.live_count(),
    });
    if let Some(c) = app.cluster.health() {
        body["cluster"] = c;
    }
    // Degraded, not down: running sessions go on; new ones are refused.
    if let Some(f) = app.store_health.failure() {
        body["status"] = "degraded".into();
        body["store"] = serde_json::json!({
            "writable": false,
            "full": f.fault == herd_actors::StoreFault::Full,
            "error": f.message,
        });
    }
    Json(body)
}
