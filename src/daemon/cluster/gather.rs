//! Lists and events from every node: a clustered node answers
//! `GET /v1/sessions` and `/v1/events` for the whole cluster by asking each
//! other node for its own (`?local=true`), in parallel, each with a deadline.

use super::proxy::{client, describe, ws_request, Via};
use super::{Cluster, Unavailable};
use futures_util::StreamExt;
use herd_actors::Registry;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// How long a node may take to answer its part of a list.
pub const PEER_DEADLINE: Duration = Duration::from_secs(3);

/// The response header naming the nodes whose part is missing.
pub const MISSING_NODES: &str = "x-herd-missing-nodes";

/// Another node, to gather from.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its name.
    pub node: String,
    /// Its base URL.
    pub advertise: String,
}

/// What the nodes answered.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Each answering node's items, as it sent them.
    pub items: Vec<(String, Vec<Value>)>,
    /// The nodes that did not answer in time, or not with a list.
    pub missing: Vec<String>,
}

impl Cluster {
    /// The other registered nodes (live or stale: a stale one may still
    /// answer); none when alone.
    pub async fn peers(&self, registry: &Registry) -> Result<Vec<Peer>, Unavailable> {
        if !self.clustered() {
            return Ok(vec![]);
        }
        let list = self.nodes(registry).await?;
        Ok(list
            .nodes
            .into_iter()
            .filter(|n| !n.this)
            .map(|n| Peer {
                node: n.record.node,
                advertise: n.record.advertise,
            })
            .collect())
    }

    /// Who forwards from this node, when clustered.
    pub fn via(&self) -> Option<Via<'_>> {
        Some(Via {
            node: self.node_name()?,
            token: self.token()?,
        })
    }
}

/// `path` with the caller's raw query and `local=true`: "this node only".
pub fn local_path(path: &str, query: Option<&str>) -> String {
    match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{path}?{q}&local=true"),
        None => format!("{path}?local=true"),
    }
}

/// GETs `path_and_query` (a JSON list) from every peer at once, each within
/// [`PEER_DEADLINE`]; a peer that fails is named in `missing` and logged.
pub async fn lists(peers: &[Peer], path_and_query: &str, via: Via<'_>) -> Gathered {
    let asks = peers.iter().map(|p| async move {
        let url = format!("{}{path_and_query}", p.advertise.trim_end_matches('/'));
        let ask = async {
            let r = client()
                .get(&url)
                .bearer_auth(via.token.expose())
                .header(super::proxy::FORWARDED, via.node)
                .send()
                .await
                .map_err(|e| describe(&e))?;
            let status = r.status();
            if !status.is_success() {
                return Err(format!("it answered {status}"));
            }
            r.json::<Vec<Value>>().await.map_err(|e| describe(&e))
        };
        let answer = match tokio::time::timeout(PEER_DEADLINE, ask).await {
            Ok(a) => a,
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(PEER_DEADLINE)
            )),
        };
        (p, answer)
    });
    let mut out = Gathered::default();
    for (p, answer) in futures_util::future::join_all(asks).await {
        match answer {
            Ok(items) => out.items.push((p.node.clone(), items)),
            Err(why) => {
                tracing::warn!(node = %p.node, url = %p.advertise, "left out of a cluster-wide list: {why}");
                out.missing.push(p.node.clone());
            }
        }
    }
    out
}

/// Every peer's live events as text frames (JSON, as each node sends them),
/// on one channel: the WebSocket `path_and_query` (`/v1/events?...&local=true`)
/// of each peer, pumped until the receiver is dropped or the peer leaves.
pub fn event_feeds(peers: &[Peer], path_and_query: &str, via: Via<'_>) -> mpsc::Receiver<String> {
    // Bounded: a slow viewer slows the feeds, and each node's own stream
    // then tells it how many events it missed.
    let (tx, rx) = mpsc::channel(256);
    for p in peers {
        let req = match ws_request(&p.advertise, path_and_query, via) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(node = %p.node, "cannot follow its events: {e}");
                continue;
            }
        };
        let (tx, node) = (tx.clone(), p.node.clone());
        tokio::spawn(async move {
            let connect = tokio_tungstenite::connect_async(req);
            let mut ws = match tokio::time::timeout(PEER_DEADLINE, connect).await {
                Ok(Ok((ws, _))) => ws,
                Ok(Err(e)) => {
                    tracing::warn!(node = %node, "cannot follow its events: {}", describe(&e));
                    return;
                }
                Err(_) => {
                    tracing::warn!(node = %node, "cannot follow its events: no handshake in time");
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = tx.closed() => break,
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            if tx.send(t.as_str().to_string()).await.is_err() {
                                break;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => {
                            tracing::info!(node = %node, "its event stream ended");
                            break;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(node = %node, "its event stream failed: {e}");
                            break;
                        }
                        Some(Ok(_)) => {}
                    }
                }
            }
            let _ = ws.close(None).await;
        });
    }
    rx
}
