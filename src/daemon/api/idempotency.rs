//! `Idempotency-Key` on the POSTs that create (a session, a message): a
//! retry with the same key gets the first answer, and does not create
//! twice. A retry that arrives while the first is still running waits for
//! its answer, and a request runs to its end even when its client goes
//! away (a killed job runner's retry gets the first answer). Answers of 5xx
//! are not kept (the retry tries again); a key
//! reused with another request is refused (422). Keys live 24 hours, at
//! most 10,000 of them, in the daemon's memory.

use super::error::ApiError;
use super::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How long a key is remembered.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// Keys remembered at most (the oldest go first).
const MAX_KEYS: usize = 10_000;
/// Largest request body fingerprinted (the body limit is smaller).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// The header.
const HEADER: &str = "idempotency-key";

/// A kept answer.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

struct Entry {
    at: Instant,
    /// What the request was: a retry must be the same request.
    request: (Method, String, Bytes),
    answer: Arc<OnceCell<Answer>>,
}

/// The remembered keys.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<String, Entry>>,
}

/// The POSTs that create something.
fn creates(method: &Method, path: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segs.as_slice(),
        ["v1", "sessions"] | ["v1", "projects", _, "sessions"] | ["v1", "sessions", _, "messages"]
    )
}

fn invalid_key(message: &str) -> Response {
    ApiError::invalid("Idempotency-Key", message).into_response()
}

/// The middleware.
pub async fn idempotent(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    if !creates(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let key = match key.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            k.to_string()
        }
        _ => return invalid_key("must be 1 to 255 visible ASCII characters"),
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return invalid_key(&format!("the request body could not be read: {e}")),
    };
    let request = (
        parts.method.clone(),
        parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        body.clone(),
    );
    let cell = {
        let mut entries = app
            .idempotency
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, e| e.at.elapsed() < TTL);
        if entries.len() >= MAX_KEYS && !entries.contains_key(&key) {
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.at)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        let e = entries.entry(key.clone()).or_insert_with(|| Entry {
            at: Instant::now(),
            request: request.clone(),
            answer: Arc::default(),
        });
        if e.request != request {
            return ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "idempotency_key_reused",
                message: "this Idempotency-Key was used for another request".into(),
            }
            .into_response();
        }
        Arc::clone(&e.answer)
    };
    let req = Request::from_parts(parts, Body::from(body));
    // The request runs in a task of its own, to its end even if its client
    // goes away: a create whose client was killed mid-request still
    // finishes, and a retry with the same key gets its answer instead of
    // creating a second time.
    let entries_of = app.clone();
    let run = tokio::spawn(async move {
        let mut ran = false;
        let answer = cell
            .get_or_try_init(|| async {
                ran = true;
                let resp = next.run(req).await;
                let (parts, body) = resp.into_parts();
                let body = axum::body::to_bytes(body, MAX_BODY)
                    .await
                    .unwrap_or_default();
                let answer = Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                };
                if answer.status.is_server_error() {
                    // Not kept: a retry must try again.
                    Err(answer)
                } else {
                    Ok(answer)
                }
            })
            .await
            .cloned();
        if answer.is_err() {
            let mut entries = entries_of
                .idempotency
                .entries
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            entries.remove(&key);
        }
        (answer, ran)
    });
    let (answer, replayed) = match run.await {
        Ok((Ok(a), ran)) => (a, !ran),
        Ok((Err(a), _)) => (a, false),
        Err(e) => {
            tracing::error!(error = %e, "an idempotent request's task failed");
            return ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "internal",
                message: "the request failed; it may be retried with the same key".into(),
            }
            .into_response();
        }
    };
    let mut resp = (answer.status, answer.headers, answer.body).into_response();
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}
