//! State transitions: `GET /v1/events` (the recent ones as JSON, or every
//! new one over a WebSocket) and `GET /v1/sessions/{id}/events`.

use super::error::{ApiError, ApiResult, ErrorBody};
use super::{ApiPath, ApiQuery, AppState};
use crate::daemon::cluster::gather;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use herd_actors::{Event, EventBus};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use utoipa::IntoParams;

/// Filters of `/v1/events`; all given filters must match.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only the events of sessions whose id starts with this (a full id or a prefix).
    session: Option<String>,
    /// Only the events of sessions of this task.
    task: Option<String>,
    /// Only the events of sessions of this project.
    project: Option<String>,
    /// Only the newest this many recent events (the JSON list, or the WebSocket's replay).
    limit: Option<usize>,
    /// WebSocket only: first replay the recent events that match, then go live.
    #[serde(default)]
    since_recent: bool,
    /// In a cluster: this node's events only (by default a node shows every
    /// node's).
    #[serde(default)]
    local: bool,
}

/// Which events a viewer wants.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Lowercase hex digits without dashes.
    session: Option<String>,
    task: Option<String>,
    project: Option<String>,
}

impl EventFilter {
    fn new(q: &EventQuery) -> ApiResult<Self> {
        let session = match q.session.as_deref() {
            None | Some("") => None,
            Some(s) => {
                let digits: String = s.chars().filter(|c| *c != '-').collect();
                if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(ApiError::invalid(
                        "session",
                        format!("{s:?} is not a session id or id prefix"),
                    ));
                }
                Some(digits.to_ascii_lowercase())
            }
        };
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(Self {
            session,
            task: non_empty(&q.task),
            project: non_empty(&q.project),
        })
    }

    /// Whether the event passes every filter.
    pub fn matches(&self, e: &Event) -> bool {
        self.session.as_ref().is_none_or(|p| {
            e.session_id
                .simple()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .starts_with(p.as_str())
        }) && self
            .task
            .as_ref()
            .is_none_or(|t| e.task_id.as_ref() == Some(t))
            && self
                .project
                .as_ref()
                .is_none_or(|p| e.project_id.as_ref() == Some(p))
    }
}

/// The newest `limit` recent events that match, oldest first.
fn recent(bus: &EventBus, filter: &EventFilter, limit: Option<usize>) -> Vec<Event> {
    let mut list: Vec<Event> = bus
        .recent()
        .into_iter()
        .filter(|e| filter.matches(e))
        .collect();
    if let Some(n) = limit {
        list.drain(..list.len().saturating_sub(n));
    }
    list
}

/// `GET /v1/events`: the recent events as JSON, or a WebSocket of new ones.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    summary = "Recent transitions (JSON), or every new one over a WebSocket",
    description = "A plain GET answers the recent transitions (the daemon keeps the last \
        10,000) that match the filters, oldest first.\n\n\
        With `Upgrade: websocket` the connection becomes a stream of every new transition \
        that matches: one Event per text frame, in order per session. With \
        `since_recent=true` the recent matching transitions are replayed first. A viewer \
        that falls behind is sent `{\"type\":\"lagged\",\"missed\":N}` (N events were \
        skipped, matching or not) and continues; it never slows the daemon down.",
    params(EventQuery),
    responses(
        (status = 200, description = "Matching recent transitions, oldest first", body = Vec<Event>),
        (status = 101, description = "WebSocket: one Event (or lagged notice) per text frame"),
        (status = 400, description = "Invalid filter", body = ErrorBody),
    )
)]
pub async fn events(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventQuery>,
    RawQuery(raw): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let filter = EventFilter::new(&q)?;
    let bus = app.registry.events();
    // In a cluster, unless asked for this node's only: every other node's too.
    let peers = match app.cluster.via() {
        Some(via) if !q.local => {
            let peers = app
                .cluster
                .peers(&app.registry)
                .await
                .map_err(|e| ApiError {
                    status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    code: "cluster_unavailable",
                    message: format!("cannot list the cluster's nodes: {e}"),
                })?;
            Some((via, peers))
        }
        _ => None,
    };
    let path = gather::local_path("/v1/events", raw.as_deref());
    if !headers.contains_key(header::UPGRADE) {
        let mut list = recent(bus, &filter, q.limit);
        let mut missing = vec![];
        if let Some((via, peers)) = peers {
            let got = gather::lists(&peers, &path, via).await;
            for (node, items) in got.items {
                list.extend(items.into_iter().filter_map(|v| {
                    serde_json::from_value::<Event>(v)
                        .inspect_err(|e| tracing::warn!(node = %node, "unreadable event: {e}"))
                        .ok()
                }));
            }
            list.sort_by_key(|e| e.at);
            if let Some(n) = q.limit {
                list.drain(..list.len().saturating_sub(n));
            }
            missing = got.missing;
        }
        let mut r = Json(list).into_response();
        if let Ok(v) = header::HeaderValue::from_str(&missing.join(",")) {
            if !missing.is_empty() {
                r.headers_mut().insert(gather::MISSING_NODES, v);
            }
        }
        return Ok(r);
    }
    let ws = ws.map_err(|r| ApiError::invalid("websocket handshake", r.body_text()))?;
    // Subscribe before the handshake completes: whatever happens after the
    // client sees 101 reaches it.
    let live = bus.subscribe();
    let replay = q
        .since_recent
        .then(|| (bus.recent(), recent(bus, &filter, q.limit)));
    let remote = peers.map(|(via, peers)| gather::event_feeds(&peers, &path, via));
    Ok(ws
        .on_upgrade(move |socket| stream(socket, live, filter, replay, remote))
        .into_response())
}

/// Events of the snapshot that a live subscription may also deliver.
const OVERLAP: usize = 256;

/// Sends matching events until the viewer leaves or the bus closes.
async fn stream(
    socket: WebSocket,
    live: broadcast::Receiver<Event>,
    filter: EventFilter,
    replay: Option<(Vec<Event>, Vec<Event>)>,
    remote: Option<mpsc::Receiver<String>>,
) {
    let (tx, rx) = socket.split();
    pump(tx, rx, live, filter, replay, remote).await;
}

/// The loop of [`stream`], over any sink and stream of WebSocket messages.
/// `replay` is the bus's recent events (taken after subscribing `live`) and
/// the matching ones to send first; `remote`, in a cluster, the other nodes'
/// frames (already filtered by them), sent as they come.
async fn pump<Tx, Rx, E>(
    mut tx: Tx,
    mut rx: Rx,
    mut live: broadcast::Receiver<Event>,
    filter: EventFilter,
    replay: Option<(Vec<Event>, Vec<Event>)>,
    mut remote: Option<mpsc::Receiver<String>>,
) where
    Tx: Sink<Message> + Unpin,
    Rx: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    // Events published between subscribing and the snapshot are in both:
    // skip live ones found in the snapshot's tail until past its newest.
    let mut overlap: Vec<Event> = Vec::new();
    if let Some((snapshot, matching)) = replay {
        overlap = snapshot[snapshot.len().saturating_sub(OVERLAP)..].to_vec();
        for e in &matching {
            if send_json(&mut tx, e).await.is_err() {
                return;
            }
        }
    }
    let newest = overlap.iter().map(|e| e.at).max();
    loop {
        tokio::select! {
            r = live.recv() => match r {
                Ok(e) => {
                    if !overlap.is_empty() {
                        if overlap.contains(&e) {
                            continue;
                        }
                        if newest.is_some_and(|n| e.at > n) {
                            overlap.clear();
                        }
                    }
                    if filter.matches(&e) && send_json(&mut tx, &e).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    let notice = serde_json::json!({"type": "lagged", "missed": missed});
                    if send_json(&mut tx, &notice).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => {
                    let frame = axum::extract::ws::CloseFrame {
                        code: axum::extract::ws::close_code::AWAY,
                        reason: "the daemon is shutting down".into(),
                    };
                    let _ = tx.send(Message::Close(Some(frame))).await;
                    return;
                }
            },
            Some(text) = next_remote(&mut remote) => {
                if tx.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            m = rx.next() => match m {
                None | Some(Ok(Message::Close(_))) => return,
                Some(Err(e)) => {
                    let _ = tx.send(Message::Close(Some(super::attach::close_for(&e.to_string())))).await;
                    return;
                }
                // Pings are answered by the WebSocket layer; anything else is ignored.
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The next frame of the other nodes; never, alone or once they all ended.
async fn next_remote(remote: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match remote {
        Some(r) => match r.recv().await {
            Some(t) => Some(t),
            None => {
                *remote = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

async fn send_json<S, T>(tx: &mut S, value: &T) -> Result<(), ()>
where
    S: SinkExt<Message> + Unpin,
    T: serde::Serialize,
{
    let text = serde_json::to_string(value).map_err(|_| ())?;
    tx.send(Message::Text(text.into())).await.map_err(|_| ())
}

/// `GET /v1/sessions/{id}/events`
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/events",
    tag = "events",
    summary = "A session's transitions (the last 512), oldest first",
    params(("id" = String, Path, description = "Session id or unique prefix")),
    responses(
        (status = 200, description = "The session's transitions, oldest first", body = Vec<Event>),
        (status = 400, description = "Invalid or ambiguous id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
pub async fn session_events(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<Event>>> {
    Ok(Json(app.registry.resolve(&id)?.events()))
}

/// `GET /v1/notices`
#[utoipa::path(
    get,
    path = "/v1/notices",
    tag = "events",
    summary = "Recent notices (budget thresholds, messages done, rate limits), oldest first",
    description = "Notices are what webhooks carry besides transitions: a budget at its \
        warning threshold or spent, a message that reached a final state, a rate limit. \
        The daemon keeps the last 10,000 since it started.",
    params(("session" = Option<String>, Query, description = "Only this session's (id or prefix)")),
    responses((status = 200, description = "Recent notices, oldest first", body = Vec<herd_actors::Notice>))
)]
pub async fn notices(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<NoticeQuery>,
) -> ApiResult<Json<Vec<herd_actors::Notice>>> {
    let all = app.registry.events().recent_notices();
    Ok(Json(match q.session {
        None => all,
        Some(p) => all
            .into_iter()
            .filter(|n| n.session_id.to_string().starts_with(&p))
            .collect(),
    }))
}

/// Filters of `/v1/notices`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeQuery {
    /// Only the notices of sessions whose id starts with this.
    session: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_actors::SessionState;
    use std::time::SystemTime;

    fn event(id: &str, task: Option<&str>) -> Event {
        Event {
            session_id: id.parse().unwrap(),
            task_id: task.map(Into::into),
            project_id: Some("p".into()),
            from: SessionState::Pending,
            to: SessionState::Starting,
            reason: "spawn".into(),
            cause: None,
            at: SystemTime::now(),
            generation: 0,
        }
    }

    fn filter(session: Option<&str>, task: Option<&str>) -> ApiResult<EventFilter> {
        EventFilter::new(&EventQuery {
            session: session.map(Into::into),
            task: task.map(Into::into),
            ..Default::default()
        })
    }

    fn text(m: &Message) -> serde_json::Value {
        match m {
            Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
            other => panic!("not text: {other:?}"),
        }
    }

    /// Runs [`pump`] until the bus closes; returns what it sent.
    async fn run_pump(
        live: broadcast::Receiver<Event>,
        filter: EventFilter,
        replay: Option<(Vec<Event>, Vec<Event>)>,
    ) -> Vec<Message> {
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Message>::new()));
        let sink = {
            let sent = sent.clone();
            futures_util::sink::unfold((), move |(), m: Message| {
                let sent = sent.clone();
                async move {
                    sent.lock().unwrap().push(m);
                    Ok::<(), ()>(())
                }
            })
        };
        let incoming = futures_util::stream::pending::<Result<Message, String>>();
        pump(Box::pin(sink), incoming, live, filter, replay, None).await;
        let out = sent.lock().unwrap().clone();
        out
    }

    fn generations(id: &str, n: u64) -> Vec<Event> {
        (0..n)
            .map(|i| {
                let mut e = event(id, Some("t1"));
                e.generation = i;
                e
            })
            .collect()
    }

    fn generation(m: &Message) -> u64 {
        text(m)["generation"].as_u64().unwrap()
    }

    /// A viewer that fell behind is told how many events it missed and goes
    /// on; the end of the bus closes the socket.
    #[tokio::test]
    async fn lagging_viewer_is_told_and_continues() {
        let (bus, live) = broadcast::channel(4);
        let mut events = generations("1a2b3c4d-5e6f-4a0b-8c0d-0123456789ab", 10);
        events[9].task_id = Some("other".into());
        for e in &events {
            bus.send(e.clone()).unwrap();
        }
        drop(bus);
        let sent = run_pump(live, filter(None, Some("t1")).unwrap(), None).await;
        // 10 published into a capacity of 4: 6 missed, then 6, 7, 8 (9 is another task's).
        assert_eq!(
            text(&sent[0]),
            serde_json::json!({"type": "lagged", "missed": 6})
        );
        let rest: Vec<u64> = sent[1..sent.len() - 1].iter().map(generation).collect();
        assert_eq!(rest, [6, 7, 8]);
        assert!(matches!(sent.last(), Some(Message::Close(Some(f))) if f.code == 1001));
    }

    /// With a replay, events both in the snapshot and on the live
    /// subscription are sent once, in order.
    #[tokio::test]
    async fn replay_then_live_without_duplicates() {
        let (bus, live) = broadcast::channel(16);
        let events = generations("1a2b3c4d-5e6f-4a0b-8c0d-0123456789ab", 5);
        // Published after subscribing: 2, 3, 4; the snapshot was taken after 2.
        for e in &events[2..] {
            bus.send(e.clone()).unwrap();
        }
        drop(bus);
        let snapshot = events[..3].to_vec();
        let sent = run_pump(
            live,
            EventFilter::default(),
            Some((snapshot.clone(), snapshot)),
        )
        .await;
        let got: Vec<u64> = sent[..sent.len() - 1].iter().map(generation).collect();
        assert_eq!(got, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn filters_match_prefixes_and_labels() {
        let e = event("1a2b3c4d-5e6f-4a0b-8c0d-0123456789ab", Some("t1"));
        assert!(filter(None, None).unwrap().matches(&e));
        assert!(filter(Some("1A2B"), None).unwrap().matches(&e));
        assert!(filter(Some("1a2b3c4d-5e"), None).unwrap().matches(&e));
        assert!(filter(Some("1a2b3c4d5e6f"), Some("t1"))
            .unwrap()
            .matches(&e));
        assert!(!filter(Some("1a2c"), None).unwrap().matches(&e));
        assert!(!filter(None, Some("t2")).unwrap().matches(&e));
        assert!(!filter(None, Some("t1"))
            .unwrap()
            .matches(&event("1a2b3c4d-5e6f-4a0b-8c0d-0123456789ab", None)));
        let err = filter(Some("zz"), None).unwrap_err();
        assert!(err.message.contains("session"), "{}", err.message);
    }
}
