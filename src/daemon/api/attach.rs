//! `WS /v1/sessions/{id}/attach`: a live view of a session's terminal that
//! can also type into it and resize it. Any number of viewers at once.
//!
//! # Protocol
//!
//! The upgrade request needs `Authorization: Bearer <token>` like every route.
//! The optional query `?cols=N&rows=M` resizes the session before the first
//! screen is sent, so a client sees it at its own size from the start.
//!
//! Server → client:
//! - **binary** frames: terminal output bytes, to be written as-is to a terminal;
//! - **text** frames: JSON control messages, each with a `type`:
//!   - `{"type":"hello","session":<SessionInfo>}` first, once;
//!   - then one binary frame that redraws the current screen, then live output;
//!   - `{"type":"state","state":"busy","reason":"...","generation":0}` on
//!     every state change;
//!   - `{"type":"resync","reason":"..."}` when the viewer fell behind the
//!     output: skipped output is replaced by a fresh screen redraw (the next
//!     binary frame), then live output continues;
//!   - `{"type":"error","code":"invalid_input","message":"invalid cols: ..."}`
//!     when a client message was rejected (the message names the field); the
//!     connection stays open;
//!   - `{"type":"end","state":"stopped","reason":"...","exit_code":0,"exit_signal":null}`
//!     when the session reached a final state, after its last output; then a
//!     close frame (1000).
//!
//! Client → server:
//! - **binary** frames: input bytes for the program (keys, pastes);
//! - **text** frames: JSON control messages:
//!   `{"type":"resize","cols":120,"rows":40}`.
//!
//! A viewer never slows the session or other viewers: output reaches each
//! viewer through a bounded broadcast channel. A viewer that falls behind gets
//! a `resync`; one whose socket accepts nothing for [`STALL_TIMEOUT`] is
//! dropped with a close frame (1008) saying why (sent if the socket still
//! takes it). Memory per viewer is at most one frame.

use super::error::{ApiError, ApiResult};
use super::{ApiPath, ApiQuery, AppState};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use herd_actors::{HerdError, OutputChunk, SessionHandle};
use herd_actors::{MAX_COLS, MAX_ROWS};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;

/// A send to a viewer that does not complete within this drops the viewer.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Live output is coalesced into binary frames of about this size.
const FRAME_BYTES: usize = 64 * 1024;
/// Largest message a client may send (input paste or control).
const MAX_CLIENT_MESSAGE: usize = 1024 * 1024;
/// Keepalive pings; a peer that stopped reading is found by the send timeout.
const PING_EVERY: Duration = Duration::from_secs(30);
/// How long the close frame to a dropped viewer may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Attempts at a consistent screen + subscription pair while output streams.
const SNAPSHOT_TRIES: usize = 4;

/// Query of `WS /v1/sessions/{id}/attach`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AttachQuery {
    /// Resize the session to this many columns first (with `rows`).
    cols: Option<u16>,
    /// Resize the session to this many rows first (with `cols`).
    rows: Option<u16>,
}

/// `WS /v1/sessions/{id}/attach`: see the module docs for the protocol.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/attach",
    tag = "sessions",
    summary = "Attach over a WebSocket: the screen, then live output; input and resize",
    description = "Upgrade to a WebSocket. The server sends `{\"type\":\"hello\",\"session\":...}`, \
        a binary frame that redraws the current screen, then binary frames of live output, \
        `state` messages on every transition, `resync` (with a fresh redraw) when the viewer \
        lagged, and `end` when the session is over. The client sends binary frames as input \
        and `{\"type\":\"resize\",\"cols\":N,\"rows\":M}` text frames. A viewer that stalls \
        is dropped; it never slows the session or other viewers.",
    params(("id" = String, Path, description = "Session id or unique prefix"), AttachQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket request, bad id or bad size", body = crate::daemon::api::error::ErrorBody),
        (status = 404, description = "No such session", body = crate::daemon::api::error::ErrorBody),
    )
)]
pub async fn attach(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AttachQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let handle = app.registry.resolve(&id)?;
    let ws = ws.map_err(|r| ApiError {
        status: r.status(),
        code: "websocket_required",
        message: format!(
            "this route needs a WebSocket upgrade request: {}",
            r.body_text()
        ),
    })?;
    match (q.cols, q.rows) {
        (Some(cols), Some(rows)) => {
            herd_actors::validate_size(cols, rows)?;
            match app.registry.resize(handle.id(), cols, rows).await {
                // An ended (or ending) session keeps its size; attaching still shows it.
                Ok(_) | Err(HerdError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        (None, None) => {}
        (Some(_), None) => return Err(ApiError::invalid("rows", "missing: give cols and rows")),
        (None, Some(_)) => return Err(ApiError::invalid("cols", "missing: give cols and rows")),
    }
    Ok(ws
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            let id = handle.id();
            let mut viewer = Viewer {
                app,
                handle,
                socket,
            };
            match viewer.serve().await {
                Ok(()) | Err(Stop::Gone) => {}
                Err(Stop::Stalled) => {
                    tracing::info!(session = %id, "dropping a stalled viewer");
                    let reason = format!(
                        "viewer stalled: output not accepted within {}s",
                        STALL_TIMEOUT.as_secs()
                    );
                    viewer.close(close_code::POLICY, &reason).await;
                }
                Err(Stop::Refused(frame)) => {
                    let (code, reason) = (frame.code, frame.reason.to_string());
                    viewer.close(code, &reason).await;
                }
            }
        })
        .into_response())
}

/// The close frame that tells a client why its socket ends, when its own
/// message ended it: too large (1009, with the limit) or not a valid
/// WebSocket frame (1002).
pub(super) fn close_for(error: &str) -> CloseFrame {
    let text = error;
    if text.contains("Space limit exceeded")
        || text.contains("too long")
        || text.contains("too big")
    {
        CloseFrame {
            code: close_code::SIZE,
            reason: Utf8Bytes::from(format!(
                "message too big: at most {} bytes",
                MAX_CLIENT_MESSAGE
            )),
        }
    } else {
        CloseFrame {
            code: close_code::PROTOCOL,
            reason: Utf8Bytes::from("invalid WebSocket frame"),
        }
    }
}

/// Why a viewer's loop ended early.
enum Stop {
    /// The client closed the connection or it broke.
    Gone,
    /// The client's frame was refused (too big, malformed): close with why.
    Refused(CloseFrame),
    /// A send did not complete within [`STALL_TIMEOUT`].
    Stalled,
}

/// One attached client.
struct Viewer {
    app: AppState,
    handle: Arc<SessionHandle>,
    socket: WebSocket,
}

/// The current screen plus a live subscription that continues exactly where
/// the screen leaves off.
///
/// The session counts output (`bytes_out`) before it feeds the screen, and
/// appends to the log after; both count every byte since the session was
/// created. So when the count read after the redraw equals the log end seen at
/// subscription, no chunk was between count and log: the screen reflects
/// exactly the bytes before the subscription starts. While output streams, a
/// few attempts usually find such a moment; otherwise the last attempt is
/// used, and a chunk may show twice.
fn snapshot(handle: &SessionHandle) -> (Vec<u8>, Receiver<OutputChunk>) {
    let mut tries = 1;
    loop {
        let (slice, rx) = handle.subscribe_output(Some(u64::MAX));
        let redraw = handle.screen_redraw();
        let counted = handle.info().metrics.bytes_out;
        if counted == slice.end || tries >= SNAPSHOT_TRIES {
            return (redraw, rx);
        }
        tries += 1;
    }
}

/// A JSON control message as a text frame.
fn control(v: Value) -> Message {
    Message::Text(Utf8Bytes::from(v.to_string()))
}

/// The error frame for a rejected client message.
fn error_frame(e: &HerdError) -> Message {
    control(json!({"type": "error", "code": e.code(), "message": e.to_string()}))
}

/// A control message from the client.
#[derive(Debug, PartialEq, Eq)]
enum ClientControl {
    /// Resize the session's terminal.
    Resize { cols: u16, rows: u16 },
}

/// Parses a client's control message; errors name the offending field.
fn parse_control(text: &str) -> Result<ClientControl, HerdError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| HerdError::invalid("message", format!("not valid JSON: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(HerdError::invalid(
            "message",
            "expected a JSON object such as {\"type\":\"resize\",\"cols\":120,\"rows\":40}",
        ));
    };
    let ty = match obj.get("type") {
        None => return Err(HerdError::invalid("type", "missing")),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(HerdError::invalid(
                "type",
                format!("{other}: expected a string"),
            ))
        }
    };
    match ty {
        "resize" => {
            if let Some(k) = obj
                .keys()
                .find(|k| !matches!(k.as_str(), "type" | "cols" | "rows"))
            {
                return Err(HerdError::invalid(
                    k,
                    "unknown field of a resize message (expected cols and rows)",
                ));
            }
            let cols = dimension(&obj, "cols", MAX_COLS)?;
            let rows = dimension(&obj, "rows", MAX_ROWS)?;
            herd_actors::validate_size(cols, rows)?;
            Ok(ClientControl::Resize { cols, rows })
        }
        other => Err(HerdError::invalid(
            "type",
            format!("unknown message type {other:?}: expected \"resize\""),
        )),
    }
}

fn dimension(obj: &Map<String, Value>, field: &str, max: u16) -> Result<u16, HerdError> {
    let v = obj
        .get(field)
        .ok_or_else(|| HerdError::invalid(field, "missing"))?;
    let n = v
        .as_u64()
        .ok_or_else(|| HerdError::invalid(field, format!("{v}: expected a positive integer")))?;
    u16::try_from(n)
        .map_err(|_| HerdError::invalid(field, format!("{n} is too large (at most {max})")))
}

impl Viewer {
    /// Sends one message, giving up on a viewer that does not take it in time.
    async fn send(&mut self, msg: Message) -> Result<(), Stop> {
        match tokio::time::timeout(STALL_TIMEOUT, self.socket.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => Err(Stop::Stalled),
        }
    }

    /// Best-effort close frame.
    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.socket.send(Message::Close(Some(frame))))
            .await;
    }

    async fn serve(&mut self) -> Result<(), Stop> {
        let mut state = self.handle.watch();
        state.borrow_and_update();
        let info = self.handle.info();
        self.send(control(json!({"type": "hello", "session": info})))
            .await?;
        let (redraw, mut rx) = snapshot(&self.handle);
        self.send(Message::Binary(Bytes::from(redraw))).await?;
        let mut last = (info.state, info.reason.clone(), info.generation);
        if info.state.is_final() {
            return self.end(rx).await;
        }
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(chunk) => {
                        let (frame, lagged) = coalesce(chunk.data, &mut rx);
                        self.send(Message::Binary(frame)).await?;
                        if let Some(n) = lagged {
                            rx = self.resync(n).await?;
                        }
                    }
                    Err(RecvError::Lagged(n)) => rx = self.resync(n).await?,
                    Err(RecvError::Closed) => return self.end(rx).await,
                },
                r = state.changed() => {
                    if r.is_err() {
                        return self.end(rx).await;
                    }
                    let info = state.borrow_and_update().clone();
                    if info.state.is_final() {
                        return self.end(rx).await;
                    }
                    let now = (info.state, info.reason.clone(), info.generation);
                    if now != last {
                        self.send(control(json!({
                            "type": "state",
                            "state": info.state,
                            "reason": info.reason,
                            "generation": info.generation,
                        })))
                        .await?;
                        last = now;
                    }
                }
                m = self.socket.recv() => match m {
                    None | Some(Ok(Message::Close(_))) => return Err(Stop::Gone),
                    Some(Err(e)) => return Err(Stop::Refused(close_for(&e.to_string()))),
                    Some(Ok(msg)) => self.on_client_message(msg).await?,
                },
                _ = ping.tick() => self.send(Message::Ping(Bytes::new())).await?,
            }
        }
    }

    /// Skips to the present: a `resync` message, then a fresh screen.
    async fn resync(&mut self, skipped: u64) -> Result<Receiver<OutputChunk>, Stop> {
        let reason = format!("viewer fell behind by {skipped} output chunks; redrawing the screen");
        self.send(control(json!({"type": "resync", "reason": reason})))
            .await?;
        let (redraw, rx) = snapshot(&self.handle);
        self.send(Message::Binary(Bytes::from(redraw))).await?;
        Ok(rx)
    }

    /// The session reached a final state: deliver the output it wrote before,
    /// then `end` and a close frame.
    async fn end(&mut self, mut rx: Receiver<OutputChunk>) -> Result<(), Stop> {
        loop {
            match rx.try_recv() {
                Ok(chunk) => {
                    let (frame, lagged) = coalesce(chunk.data, &mut rx);
                    self.send(Message::Binary(frame)).await?;
                    if let Some(n) = lagged {
                        rx = self.resync(n).await?;
                    }
                }
                Err(TryRecvError::Lagged(n)) => rx = self.resync(n).await?,
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        let info = self.handle.info();
        self.send(control(json!({
            "type": "end",
            "state": info.state,
            "reason": info.reason,
            "exit_code": info.exit_code,
            "exit_signal": info.exit_signal,
            "generation": info.generation,
        })))
        .await?;
        let reason = format!("session ended: {}", info.state);
        self.close(close_code::NORMAL, &reason).await;
        Ok(())
    }

    /// Handles one message from the client; a bad one gets an error frame.
    async fn on_client_message(&mut self, msg: Message) -> Result<(), Stop> {
        let id = self.handle.id();
        let result = match msg {
            Message::Binary(data) if data.is_empty() => Ok(()),
            Message::Binary(data) => self.app.registry.input(id, data).await.map(drop),
            Message::Text(text) => match parse_control(text.as_str()) {
                Ok(ClientControl::Resize { cols, rows }) => {
                    self.app.registry.resize(id, cols, rows).await.map(drop)
                }
                Err(e) => Err(e),
            },
            _ => Ok(()),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.send(error_frame(&e)).await,
        }
    }
}

/// Joins `first` with whatever output is already queued, up to about
/// [`FRAME_BYTES`]; reports a lag met on the way.
fn coalesce(first: Bytes, rx: &mut Receiver<OutputChunk>) -> (Bytes, Option<u64>) {
    if first.len() >= FRAME_BYTES {
        return (first, None);
    }
    let mut buf: Option<BytesMut> = None;
    let mut lagged = None;
    while buf.as_ref().map_or(first.len(), BytesMut::len) < FRAME_BYTES {
        match rx.try_recv() {
            Ok(chunk) => buf
                .get_or_insert_with(|| BytesMut::from(&first[..]))
                .extend_from_slice(&chunk.data),
            Err(TryRecvError::Lagged(n)) => {
                lagged = Some(n);
                break;
            }
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    (buf.map_or(first, BytesMut::freeze), lagged)
}

#[cfg(test)]
mod tests {
    use super::{parse_control, ClientControl};
    use herd_actors::HerdError;

    fn field(text: &str) -> String {
        match parse_control(text) {
            Err(HerdError::Invalid { field, .. }) => field,
            other => panic!("{text}: expected an invalid-input error, got {other:?}"),
        }
    }

    #[test]
    fn control_messages_parse_and_errors_name_the_field() {
        assert_eq!(
            parse_control(r#"{"type":"resize","cols":100,"rows":30}"#).unwrap(),
            ClientControl::Resize {
                cols: 100,
                rows: 30
            }
        );
        assert_eq!(field("nope"), "message");
        assert_eq!(field("[1]"), "message");
        assert_eq!(field(r#"{"cols":1}"#), "type");
        assert_eq!(field(r#"{"type":7}"#), "type");
        assert_eq!(field(r#"{"type":"jump"}"#), "type");
        assert_eq!(field(r#"{"type":"resize","rows":30}"#), "cols");
        assert_eq!(field(r#"{"type":"resize","cols":0,"rows":0}"#), "cols");
        assert_eq!(field(r#"{"type":"resize","cols":80,"rows":0}"#), "rows");
        assert_eq!(
            field(r#"{"type":"resize","cols":100000,"rows":100000}"#),
            "cols"
        );
        assert_eq!(field(r#"{"type":"resize","cols":80,"rows":-1}"#), "rows");
        assert_eq!(field(r#"{"type":"resize","cols":80,"rows":24,"x":1}"#), "x");
    }
}
