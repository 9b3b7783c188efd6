//! A session's recordings: `GET /recordings` lists the generations,
//! `GET /recording` streams one as asciicast (decompressed on the fly) or as
//! stored.

use super::error::{ApiError, ApiResult, ErrorBody};
use super::{ApiPath, ApiQuery, AppState};
use crate::formats::files::{self, Stored};
use crate::formats::source::EndAtTruncation;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use herd_actors::HerdError;
use serde::{Deserialize, Serialize};
use std::io::Read;
use utoipa::{IntoParams, ToSchema};

/// Media type of asciicast v2.
pub const ASCIICAST: &str = "application/x-asciicast";
/// Media type of a zstd-compressed file.
pub const ZSTD: &str = "application/zstd";
/// Response header naming the generation served.
pub const GENERATION_HEADER: &str = "herd-recording-generation";

/// Bytes read from disk per chunk of the response.
const CHUNK: usize = 64 * 1024;
/// Chunks buffered between the reading thread and the connection.
const CHUNKS_IN_FLIGHT: usize = 4;

/// One stored generation's recording.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordingFile {
    /// The generation (restart count) it records.
    pub generation: u64,
    /// File name in the session's recordings folder, e.g. `0.cast.zst`.
    #[schema(example = "0.cast")]
    pub file: String,
    /// Path of the file on the daemon's machine.
    pub path: String,
    /// Size of the file as stored.
    pub bytes: u64,
    /// Whether it is zstd-compressed.
    pub compressed: bool,
}

impl From<Stored> for RecordingFile {
    fn from(s: Stored) -> Self {
        Self {
            generation: s.generation,
            file: s.file,
            path: s.path.display().to_string(),
            bytes: s.bytes,
            compressed: s.compressed,
        }
    }
}

/// The bytes of a file, as stored.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
// Only its schema is used: the bytes are streamed, never held in one.
#[allow(dead_code)]
pub struct Binary(Vec<u8>);

/// Query of `GET /v1/sessions/{id}/recording`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordingQuery {
    /// The generation (default: the newest).
    generation: Option<u64>,
    /// The file as stored (zstd when compressed) instead of asciicast.
    #[serde(default)]
    raw: bool,
}

/// The session's folder name: a session the registry knows, else a unique
/// prefix of a folder in the recordings dir (a session forgotten since).
fn session_folder(app: &AppState, id: &str) -> ApiResult<String> {
    match app.registry.resolve(id) {
        Ok(h) => Ok(h.id().to_string()),
        Err(HerdError::NotFound(_)) => {
            let found = files::sessions_with_prefix(&app.data_dir, id)
                .map_err(|e| internal("listing recordings", e))?;
            match found.len() {
                1 => Ok(found.into_iter().next().unwrap_or_default()),
                0 => Err(HerdError::NotFound(id.to_string()).into()),
                n => Err(HerdError::Ambiguous {
                    prefix: id.to_string(),
                    count: n,
                }
                .into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn internal(what: &str, e: std::io::Error) -> ApiError {
    tracing::error!("{what}: {e}");
    ApiError {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: format!("{what}: {e}"),
    }
}

fn stored(app: &AppState, folder: &str) -> ApiResult<Vec<Stored>> {
    files::list(&app.data_dir, folder).map_err(|e| internal("listing recordings", e))
}

/// `GET /v1/sessions/{id}/recordings`: the recorded generations, oldest first.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/recordings",
    operation_id = "list_recordings",
    tag = "sessions",
    summary = "The session's recorded generations, oldest first",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    responses(
        (status = 200, description = "One entry per generation (empty when nothing was recorded)", body = Vec<RecordingFile>),
        (status = 400, description = "Invalid or ambiguous id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
pub async fn list(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<RecordingFile>>> {
    let folder = session_folder(&app, &id)?;
    let list = stored(&app, &folder)?;
    Ok(Json(list.into_iter().map(RecordingFile::from).collect()))
}

/// `GET /v1/sessions/{id}/recording[?generation=N][&raw=true]`: one
/// generation's recording, streamed in chunks.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/recording",
    operation_id = "get_recording",
    tag = "sessions",
    summary = "Stream a generation's recording (asciicast v2; the newest by default)",
    params(("id" = String, Path, description = "Session id or unique prefix"), RecordingQuery),
    responses(
        (status = 200, description = "The recording: asciicast v2, or with raw=true the stored bytes (zstd when compressed). The herd-recording-generation header names the generation.",
            content((String = "application/x-asciicast"), (Binary = "application/zstd"))),
        (status = 400, description = "Invalid query or id", body = ErrorBody),
        (status = 404, description = "No such session, or no recording of that generation", body = ErrorBody),
    )
)]
pub async fn recording(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RecordingQuery>,
) -> ApiResult<Response> {
    let folder = session_folder(&app, &id)?;
    let list = stored(&app, &folder)?;
    let found = match q.generation {
        Some(g) => list.into_iter().find(|s| s.generation == g),
        None => list.into_iter().next_back(),
    };
    let Some(file) = found else {
        return Err(ApiError::not_found(match q.generation {
            Some(g) => format!("session {id} has no recording of generation {g}"),
            None => format!("session {id} has no recording"),
        }));
    };
    let f = std::fs::File::open(&file.path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            ApiError::not_found(format!("the recording {} is gone", file.file))
        }
        _ => internal("opening the recording", e),
    })?;
    let (reader, content_type): (Box<dyn Read + Send>, &str) = match (file.compressed, q.raw) {
        (true, true) => (Box::new(f), ZSTD),
        (true, false) => {
            let decoder = zstd::stream::read::Decoder::new(f)
                .map_err(|e| internal("starting the zstd decoder", e))?;
            (Box::new(EndAtTruncation(decoder)), ASCIICAST)
        }
        (false, _) => (Box::new(f), ASCIICAST),
    };
    let mut resp = Body::from_stream(chunks(reader)).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(GENERATION_HEADER, HeaderValue::from(file.generation));
    Ok(resp)
}

/// The reader's bytes as a stream of chunks, read on a blocking thread that
/// stays at most [`CHUNKS_IN_FLIGHT`] chunks ahead of the connection and stops
/// when the client goes away.
fn chunks(
    mut reader: Box<dyn Read + Send>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || loop {
        let mut buf = vec![0u8; CHUNK];
        let item = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                Ok(Bytes::from(buf))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading a recording: {e}");
                Err(e)
            }
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}
