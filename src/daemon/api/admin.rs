//! Maintenance: `POST /v1/backup` (an online copy of the store) and
//! `POST /v1/gc` (forget ended sessions beyond the retention).

use super::error::{ApiError, ApiResult, ErrorBody};
use super::{ApiJson, ApiQuery, AppState};
use crate::daemon::retention::{self, GcReport};
use crate::daemon::store::{self, StoreError, STORE_FILE};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use utoipa::{IntoParams, ToSchema};

/// Where to write a backup.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// Absolute path of the copy, on the daemon's machine.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// Replace an existing file.
    #[serde(default)]
    pub overwrite: bool,
}

/// A backup written.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupReport {
    /// Where it is.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// `POST /v1/backup`: copies the live store with SQLite's online backup.
#[utoipa::path(
    post,
    path = "/v1/backup",
    tag = "daemon",
    summary = "Copy the store to a file with SQLite's online backup (a consistent snapshot while the daemon runs)",
    request_body = BackupRequest,
    responses(
        (status = 201, description = "Written and checked", body = BackupReport),
        (status = 400, description = "Invalid path", body = ErrorBody),
        (status = 409, description = "The file exists (overwrite not set)", body = ErrorBody),
        (status = 503, description = "The copy could not be made", body = ErrorBody),
    )
)]
pub async fn backup(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<BackupRequest>,
) -> ApiResult<(StatusCode, Json<BackupReport>)> {
    if !req.path.is_absolute() {
        return Err(ApiError::invalid(
            "path",
            format!(
                "{:?} is not an absolute path",
                req.path.display().to_string()
            ),
        ));
    }
    if !req.overwrite && req.path.exists() {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "exists",
            message: format!(
                "{} exists already; set overwrite (herd backup --force) to replace it",
                req.path.display()
            ),
        });
    }
    let src = app.data_dir.join(STORE_FILE);
    let dest = req.path.clone();
    let r = tokio::task::spawn_blocking(move || store::backup(&src, &dest, req.overwrite)).await;
    match r {
        Ok(Ok(bytes)) => Ok((
            StatusCode::CREATED,
            Json(BackupReport {
                path: req.path,
                bytes,
            }),
        )),
        Ok(Err(e)) => Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "backup_failed",
            message: backup_message(e),
        }),
        Err(e) => Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "backup_failed",
            message: format!("the backup did not finish: {e}"),
        }),
    }
}

fn backup_message(e: StoreError) -> String {
    format!("backup failed: {e}")
}

/// Overrides of the retention for one collection.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GcQuery {
    /// Forget ended sessions older than this (default: `store.retention`).
    #[param(value_type = Option<String>, example = "1h")]
    older_than: Option<String>,
    /// Keep at most this many ended sessions (default: `store.keep_ended`).
    keep: Option<usize>,
}

/// `POST /v1/gc`: forgets ended sessions beyond the retention.
#[utoipa::path(
    post,
    path = "/v1/gc",
    tag = "daemon",
    summary = "Forget stopped and failed sessions beyond the retention (count and age), with their events, messages and recordings",
    params(GcQuery),
    responses(
        (status = 200, description = "What was removed", body = GcReport),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 503, description = "The store cannot take the removal", body = ErrorBody),
        (status = 507, description = "The disk is full", body = ErrorBody),
    )
)]
pub async fn gc(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<GcQuery>,
) -> ApiResult<Json<GcReport>> {
    let mut policy = app.retention;
    if let Some(t) = q.older_than {
        policy.max_age = humantime::parse_duration(&t)
            .map_err(|e| ApiError::invalid("older_than", format!("{t:?}: {e}")))?;
    }
    if let Some(k) = q.keep {
        policy.keep = k;
    }
    match retention::gc(&app.registry, &app.recordings, policy).await {
        Ok(report) => Ok(Json(report)),
        Err((_, e)) => Err(e.into()),
    }
}
