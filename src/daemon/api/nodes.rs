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
