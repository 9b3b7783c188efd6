//! Forwarding a request for a session to the node that owns it: plain HTTP
//! (method, path, query, headers and body streamed both ways, so long polls,
//! `send --wait` and SSE work) and WebSockets (frames pumped both ways, the
//! close passed on). The forwarded request carries the cluster token and
//! `X-Herd-Forwarded: <this node>`; a node never forwards a request that
//! already carries it (the loop guard).

use super::locate::Location;
use axum::body::Body;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Request, Response};
use futures_util::{SinkExt, StreamExt};
use herd_actors::Secret;
use std::sync::OnceLock;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

/// The header a forwarded request carries: the forwarding node's name.
pub const FORWARDED: HeaderName = HeaderName::from_static("x-herd-forwarded");

/// How long connecting to another node may take before it counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Headers that belong to one connection, not to the request: never passed
/// on (RFC 9110 §7.6.1), with the credentials, which are replaced.
const HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Where a request goes: the owner of its session.
#[derive(Debug, Clone)]
pub struct Target {
    /// The owner node's name.
    pub node: String,
    /// Its base URL.
    pub advertise: String,
    /// The session's full id.
    pub id: String,
}

impl Target {
    /// The target of a remote location.
    pub fn of(location: Location) -> Option<Self> {
        match location {
            Location::Remote {
                node,
                advertise,
                id,
            } => Some(Self {
                node,
                advertise,
                id,
            }),
            Location::Local | Location::NotFound => None,
        }
    }
}

/// Who forwards: this node's name and the cluster token.
#[derive(Clone, Copy)]
pub struct Via<'a> {
    /// This node's name.
    pub node: &'a str,
    /// The cluster token.
    pub token: &'a Secret,
}

impl Via<'_> {
    /// The credentials and loop guard of a forwarded request.
    fn headers(&self) -> Result<[(HeaderName, HeaderValue); 2], String> {
        let auth = HeaderValue::from_str(&format!("Bearer {}", self.token.expose()))
            .map_err(|_| "the cluster token cannot stand in a header".to_string())?;
        let me = HeaderValue::from_str(self.node)
            .map_err(|_| format!("node name {:?} cannot stand in a header", self.node))?;
        Ok([(header::AUTHORIZATION, auth), (FORWARDED, me)])
    }
}

/// The owner did not answer.
#[derive(Debug, thiserror::Error)]
#[error("session {id} is on node {node} at {advertise}, which does not answer: {why}")]
pub struct Unreachable {
    /// The session.
    pub id: String,
    /// The owner node.
    pub node: String,
    /// Its URL.
    pub advertise: String,
    /// What failed.
    pub why: String,
}

impl Unreachable {
    fn new(t: &Target, why: impl Into<String>) -> Self {
        Self {
            id: t.id.clone(),
            node: t.node.clone(),
            advertise: t.advertise.clone(),
            why: why.into(),
        }
    }
}

/// The client every node-to-node request uses: pooled connections, a
/// connect deadline, no overall one (long polls and streams last).
pub fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // Below the peers' `server.header_timeout` (10 s by default),
            // after which they close an idle connection: a pooled one
            // reused just then fails the request with a 502.
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            // Only a broken TLS backend fails here, and this build has none.
            .unwrap_or_default()
    })
}

/// The error text of a failed request, with its causes (reqwest's own
/// words alone say only "error sending request").
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Forwards a plain HTTP request to `target` and streams its answer back.
pub async fn http(
    req: Request<Body>,
    target: &Target,
    via: Via<'_>,
) -> Result<Response<Body>, Unreachable> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", target.advertise.trim_end_matches('/'));
    let mut headers = parts.headers;
    strip(&mut headers);
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::COOKIE);
    for (k, v) in via.headers().map_err(|e| Unreachable::new(target, e))? {
        headers.insert(k, v);
    }
    let mut out = client().request(parts.method, &url).headers(headers);
    // An empty body stays empty (not a chunked stream of nothing).
    if axum::body::HttpBody::size_hint(&body).exact() != Some(0) {
        out = out.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let answer = out
        .send()
        .await
        .map_err(|e| Unreachable::new(target, describe(&e)))?;
    let mut response = Response::builder().status(answer.status());
    if let Some(h) = response.headers_mut() {
        *h = answer.headers().clone();
        strip(h);
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .map_err(|e| Unreachable::new(target, e.to_string()))
}

fn strip(headers: &mut HeaderMap) {
    for h in HOP {
        headers.remove(h);
    }
}

/// Forwards a WebSocket: connects to the owner first (so its refusal, a 404
/// or 409, reaches the client as is), then completes the client's upgrade
/// and pumps frames both ways until either side closes.
pub async fn websocket(
    upgrade: WebSocketUpgrade,
    path_and_query: &str,
    target: &Target,
    via: Via<'_>,
) -> Result<Response<Body>, Unreachable> {
    let req = ws_request(&target.advertise, path_and_query, via)
        .map_err(|e| Unreachable::new(target, e))?;
    let connect = tokio_tungstenite::connect_async(req);
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT * 2, connect).await {
        Err(_) => {
            return Err(Unreachable::new(
                target,
                format!(
                    "no WebSocket handshake within {}",
                    humantime::format_duration(CONNECT_TIMEOUT * 2)
                ),
            ))
        }
        Ok(Ok((ws, _))) => ws,
        // The owner answered, but not 101: its answer is the answer.
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let (parts, body) = resp.into_parts();
            let mut r = Response::new(Body::from(body.unwrap_or_default()));
            *r.status_mut() = parts.status;
            *r.headers_mut() = parts.headers;
            strip(r.headers_mut());
            return Ok(r);
        }
        Ok(Err(e)) => return Err(Unreachable::new(target, describe(&e))),
    };
    Ok(upgrade.on_upgrade(move |socket| relay(socket, upstream)))
}

/// A WebSocket handshake request to `path_and_query` on the node at
/// `advertise`, with the cluster's credentials.
pub fn ws_request(
    advertise: &str,
    path_and_query: &str,
    via: Via<'_>,
) -> Result<tungstenite::handshake::client::Request, String> {
    let url = match advertise.trim_end_matches('/').split_once("://") {
        Some(("http", rest)) => format!("ws://{rest}{path_and_query}"),
        Some(("https", rest)) => format!("wss://{rest}{path_and_query}"),
        _ => return Err(format!("advertised URL {advertise:?} is not http(s)://")),
    };
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    for (k, v) in via.headers()? {
        req.headers_mut().insert(k, v);
    }
    Ok(req)
}

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Pumps frames between the client and the owner until one side closes or
/// fails; a close frame is passed on with its code and reason. Pings are
/// answered by each hop's own WebSocket layer, not passed on.
async fn relay(client: WebSocket, upstream: Upstream) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut up_tx, mut up_rx) = upstream.split();
    let up = async {
        while let Some(Ok(m)) = client_rx.next().await {
            let Some(m) = to_upstream(m) else { continue };
            let close = m.is_close();
            if up_tx.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = up_tx.close().await;
    };
    let down = async {
        loop {
            match up_rx.next().await {
                Some(Ok(m)) => {
                    let Some(m) = to_client(m) else { continue };
                    let close = matches!(m, ws::Message::Close(_));
                    if client_tx.send(m).await.is_err() || close {
                        break;
                    }
                }
                Some(Err(e)) => {
                    let frame = ws::CloseFrame {
                        code: ws::close_code::ERROR,
                        reason: format!("the owner node's connection failed: {e}").into(),
                    };
                    let _ = client_tx.send(ws::Message::Close(Some(frame))).await;
                    break;
                }
                None => break,
            }
        }
        let _ = client_tx.close().await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

fn to_upstream(m: ws::Message) -> Option<tungstenite::Message> {
    use tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    Some(match m {
        ws::Message::Text(t) => tungstenite::Message::Text(t.as_str().into()),
        ws::Message::Binary(b) => tungstenite::Message::Binary(b),
        ws::Message::Close(f) => tungstenite::Message::Close(f.map(|f| CloseFrame {
            code: CloseCode::from(f.code),
            reason: f.reason.as_str().into(),
        })),
        ws::Message::Ping(_) | ws::Message::Pong(_) => return None,
    })
}

/// An owner's frame as the client's.
pub fn to_client(m: tungstenite::Message) -> Option<ws::Message> {
    Some(match m {
        tungstenite::Message::Text(t) => ws::Message::Text(t.as_str().into()),
        tungstenite::Message::Binary(b) => ws::Message::Binary(b),
        tungstenite::Message::Close(f) => ws::Message::Close(f.map(|f| ws::CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        tungstenite::Message::Ping(_)
        | tungstenite::Message::Pong(_)
        | tungstenite::Message::Frame(_) => return None,
    })
}
