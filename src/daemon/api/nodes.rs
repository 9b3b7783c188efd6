//! `GET /v1/nodes`: the nodes of the cluster.

use super::error::{ApiError, ApiResult, ErrorBody};
use super::AppState;
use crate::daemon::cluster::info::NodeList;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

/// `GET /v1/nodes`: every node registered in etcd with its health, load,
/// capacity and labels. A daemon in no cluster answers a list of itself
/// (`cluster` absent), so clients need no special case.
#[utoipa::path(
    get,
    path = "/v1/nodes",
    tag = "cluster",
    summary = "The cluster's nodes: health (live, stale), load, capacity, labels; a daemon in no cluster lists itself",
    responses(
        (status = 200, description = "The nodes, by name", body = NodeList),
        (status = 503, description = "etcd cannot be reached now (code `cluster_unavailable`)", body = ErrorBody),
    )
)]
pub async fn nodes(State(app): State<AppState>) -> ApiResult<Json<NodeList>> {
    app.cluster
        .nodes(&app.registry)
        .await
        .map(Json)
        .map_err(|e| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "cluster_unavailable",
            message: format!("cannot list the nodes: {e}"),
        })
}

/// `POST /v1/nodes/{node}/drain`: the node hands every session over to the
/// others (a Claude session's conversation carried) and takes no new ones
/// until it restarts. Answers once each runs elsewhere (or after a minute).
#[utoipa::path(
    post,
    path = "/v1/nodes/{node}/drain",
    tag = "cluster",
    summary = "Move a node's sessions to the other nodes; it takes no new ones",
    params(("node" = String, Path, description = "The node's name")),
    responses(
        (status = 200, description = "What moved where: `moved` (session → node now running it, null while none took it yet) and `failed` (session → why)"),
        (status = 400, description = "This daemon is in no cluster", body = ErrorBody),
        (status = 404, description = "No such live node", body = ErrorBody),
        (status = 502, description = "The node does not answer", body = ErrorBody),
        (status = 503, description = "etcd cannot be reached now", body = ErrorBody),
    )
)]
pub async fn drain(
    State(app): State<AppState>,
    super::ApiPath(node): super::ApiPath<String>,
) -> ApiResult<axum::response::Response> {
    use crate::daemon::cluster::DrainRefused as R;
    app.cluster
        .drain(&node, &app.registry, &app.claude)
        .await
        .map_err(|e| {
            let (status, code) = match &e {
                R::NotClustered => (StatusCode::BAD_REQUEST, "invalid"),
                R::Unknown(_) => (StatusCode::NOT_FOUND, "not_found"),
                R::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable"),
                R::Unreachable(_) => (StatusCode::BAD_GATEWAY, "node_unreachable"),
            };
            ApiError {
                status,
                code,
                message: e.to_string(),
            }
        })
}
