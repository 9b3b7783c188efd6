//! The cluster: several daemons coordinated by etcd (docs/CLUSTER.md).
//!
//! - `keys`: the etcd key layout, in one place;
//! - [`info`]: a node's record, load and health (the wire types);
//! - [`placement`]: which node runs a session (pure);
//! - `etcd`: the thin etcd client wrapper with typed errors;
//! - `node`: this node's registration, keep-alive and lost lease;
//! - `owner`: session ownership in etcd, every write guarded by the lease;
//! - `transcript`: Claude transcripts copied to etcd for `--resume`;
//! - `agent`: failover (claim, adopt), fencing and reconciling;
//! - `fence`: the watchdog process that kills a frozen node's sessions;
//! - `sessions`: what the daemon asks (place, record, reclaim, drain);
//! - [`token`]: the cluster token nodes present to each other;
//! - [`locate`]: on which node a session is;
//! - [`proxy`]: forwarding a request for a session to its owner;
//! - [`gather`]: lists and events gathered from every node.
//!
//! `agent`, `etcd`, `fence`, `keys`, `node`, `owner`, `sessions` and `transcript` need the feature `cluster`.
//!
//! Without `[cluster]` the daemon is the single embedded one: [`Cluster`]
//! then answers for this daemon alone.

#[cfg(feature = "cluster")]
mod agent;
#[cfg(feature = "cluster")]
mod etcd;
#[cfg(feature = "cluster")]
pub mod fence;
pub mod gather;
pub mod info;
#[cfg(feature = "cluster")]
pub mod keys;
pub mod locate;
#[cfg(feature = "cluster")]
mod node;
#[cfg(feature = "cluster")]
mod owner;
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub mod placement;
#[cfg(feature = "cluster")]
mod sessions;
#[cfg(feature = "cluster")]
mod transcript;

#[cfg(feature = "cluster")]
pub use agent::Host;
pub mod proxy;
pub mod token;

use crate::config::cluster::{check_url, ClusterConfig};
use herd_actors::Registry;
use info::{NodeInfo, NodeList, NodeLoad, NodeRecord};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What a build without the `cluster` feature says to a `[cluster]` config.
pub const FEATURE_MISSING: &str = "this herd was built without the `cluster` feature: cargo build --release --features cluster (needs protoc: apt-get install protobuf-compiler)";

/// `[cluster]` resolved against this daemon: every default filled in.
// Without the feature it is resolved (the errors are the same) but not used.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
#[derive(Debug, Clone)]
pub struct Settings {
    /// etcd client URLs.
    pub etcd: Vec<String>,
    /// This node's name.
    pub node: String,
    /// The URL others reach this daemon at.
    pub advertise: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The lease TTL.
    pub lease_ttl: Duration,
    /// The cluster's name (the key prefix).
    pub name: String,
    /// `[cluster] token`, if given.
    pub token: Option<herd_actors::Secret>,
}

impl Settings {
    /// Fills in the node name (the host name) and the advertised URL (from
    /// the bound address, unless it is every interface).
    pub fn resolve(c: &ClusterConfig, bound: SocketAddr) -> Result<Self, String> {
        let node = match &c.node {
            Some(n) => n.clone(),
            None => {
                let host = host_name();
                crate::config::cluster::check_name("cluster.node (the host name)", &host)
                    .map_err(|e| format!("{e}: set cluster.node or --node"))?;
                host
            }
        };
        let advertise = match &c.advertise {
            Some(a) => a.clone(),
            None if bound.ip().is_unspecified() => {
                return Err(format!(
                    "cluster.advertise is required when server.listen = \"{bound}\" (every interface): give the URL other nodes reach this one at, such as --advertise http://10.0.0.5:{}",
                    bound.port()
                ))
            }
            None => format!("http://{bound}"),
        };
        check_url("cluster.advertise", &advertise)?;
        Ok(Self {
            etcd: c.etcd.clone(),
            node,
            advertise,
            labels: c.labels.clone(),
            lease_ttl: c.lease_ttl,
            name: c.name.clone(),
            token: c.token.clone(),
        })
    }

    /// The record this node registers.
    #[cfg(feature = "cluster")]
    pub fn record(&self, capacity: usize) -> NodeRecord {
        NodeRecord {
            node: self.node.clone(),
            advertise: self.advertise.clone(),
            labels: self.labels.clone(),
            capacity,
            started_at: SystemTime::now(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The header a request forwarded by another node carries (its name).
pub const FORWARDED_HEADER: axum::http::HeaderName = proxy::FORWARDED;

/// Waits (up to `timeout`) until session `id` reached a final state.
pub async fn wait_final(registry: &Registry, id: uuid::Uuid, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    let Some(h) = registry.get(id) else { return };
    let mut changes = h.watch();
    while !changes.borrow().state.is_final() && std::time::Instant::now() < deadline {
        if tokio::time::timeout(Duration::from_millis(200), changes.changed())
            .await
            .is_ok_and(|r| r.is_err())
        {
            break;
        }
    }
}

/// Removes a session that must not exist after all, once it ended.
pub async fn wait_removed(registry: &Registry, id: uuid::Uuid) {
    wait_final(registry, id, Duration::from_secs(10)).await;
    if let Err(e) = registry.remove(id).await {
        tracing::warn!(session = %id, "cannot remove the refused session: {e}");
    }
}

/// Why a session cannot be placed.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
#[derive(Debug, thiserror::Error)]
pub enum PlaceRefused {
    /// No node fits; says why.
    #[error("no node can take the session: {0}")]
    NoRoom(String),
    /// etcd does not answer.
    #[error("the cluster cannot place the session now: {0}")]
    Unavailable(String),
}

/// Why a drain cannot be done.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
#[derive(Debug, thiserror::Error)]
pub enum DrainRefused {
    /// This daemon is in no cluster.
    #[error("this daemon is in no cluster: there is no node to hand sessions to")]
    NotClustered,
    /// No such node.
    #[error("node {0:?} is not a live node of the cluster (see herd nodes)")]
    Unknown(String),
    /// etcd does not answer.
    #[error("the cluster cannot be reached now: {0}")]
    Unavailable(String),
    /// The node does not answer.
    #[error("{0}")]
    Unreachable(String),
}

/// Why the nodes cannot be listed now.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(String);

/// This daemon's place in the cluster, or alone; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Inner,
    /// What this node presents to others and accepts from them; None alone.
    token: Option<Arc<herd_actors::Secret>>,
}

#[derive(Clone)]
enum Inner {
    /// No `[cluster]`: this daemon alone.
    Single(Arc<NodeRecord>),
    /// A member of an etcd cluster.
    #[cfg(feature = "cluster")]
    Member(node::Membership),
}

impl Cluster {
    /// A daemon that is in no cluster.
    pub fn single(advertise: String, capacity: usize) -> Self {
        let record = NodeRecord {
            node: host_name(),
            advertise,
            labels: BTreeMap::new(),
            capacity,
            started_at: SystemTime::now(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        Self {
            inner: Inner::Single(Arc::new(record)),
            token: None,
        }
    }

    /// Refuses `[cluster]` in a build that cannot act on it: called before
    /// the daemon changes anything.
    pub fn check_supported(wanted: bool) -> anyhow::Result<()> {
        if wanted && !cfg!(feature = "cluster") {
            anyhow::bail!("{FEATURE_MISSING}");
        }
        Ok(())
    }

    /// Joins the cluster: registered when this returns, or an error that
    /// says why not (etcd unreachable, the node name held by a live daemon).
    #[cfg(feature = "cluster")]
    pub async fn join(settings: Settings, capacity: usize) -> anyhow::Result<Self> {
        let record = settings.record(capacity);
        let etcd = settings.etcd.join(", ");
        let given = token::given(std::env::var(token::ENV).ok(), settings.token.as_ref())
            .map_err(anyhow::Error::msg)?;
        let m = node::Membership::join(settings, record)
            .await
            .map_err(|e| match e {
                node::JoinError::Duplicate { .. } => anyhow::anyhow!("{e}"),
                node::JoinError::Etcd(e) => {
                    anyhow::anyhow!("cannot join the cluster through etcd {etcd}: {e}")
                }
            })?;
        let (secret, source) = match given {
            Some(given) => given,
            None => {
                let (etcd, keys) = m.etcd();
                match token::shared(etcd, keys).await {
                    Ok(t) => (t, token::Source::Etcd),
                    Err(e) => {
                        m.leave().await;
                        anyhow::bail!("cannot read the cluster token from etcd: {e}");
                    }
                }
            }
        };
        tracing::info!("cluster token from {source}");
        Ok(Self {
            inner: Inner::Member(m),
            token: Some(Arc::new(secret)),
        })
    }

    /// Joins the cluster: this build cannot.
    #[cfg(not(feature = "cluster"))]
    pub async fn join(_settings: Settings, _capacity: usize) -> anyhow::Result<Self> {
        anyhow::bail!("{FEATURE_MISSING}")
    }

    /// The load reported from now on comes from this registry.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub fn attach(&self, registry: &Registry) {
        match &self.inner {
            Inner::Single(_) => {}
            #[cfg(feature = "cluster")]
            Inner::Member(m) => m.attach(registry.clone()),
        }
    }

    /// The nodes, with their health and load.
    pub async fn nodes(&self, registry: &Registry) -> Result<NodeList, Unavailable> {
        match &self.inner {
            Inner::Single(record) => Ok(NodeList {
                cluster: None,
                nodes: vec![NodeInfo::judge(
                    (**record).clone(),
                    Some(NodeLoad::sample(registry)),
                    Duration::from_secs(1),
                    &record.node,
                )],
            }),
            #[cfg(feature = "cluster")]
            Inner::Member(m) => {
                let nodes = m.nodes().await.map_err(|e| Unavailable(e.to_string()))?;
                Ok(NodeList {
                    cluster: Some(m.cluster().to_string()),
                    nodes,
                })
            }
        }
    }

    /// For `/healthz`: this node's membership (absent when not clustered).
    pub fn health(&self) -> Option<serde_json::Value> {
        match &self.inner {
            Inner::Single(_) => None,
            #[cfg(feature = "cluster")]
            Inner::Member(m) => Some(serde_json::json!({
                "node": m.name(),
                "registered": m.registered(),
                "lease_losses": m.lease_losses(),
            })),
        }
    }

    /// This node's membership, when clustered.
    #[cfg(feature = "cluster")]
    fn member(&self) -> Option<&node::Membership> {
        match &self.inner {
            Inner::Single(_) => None,
            Inner::Member(m) => Some(m),
        }
    }

    /// Whether this daemon is in a cluster.
    pub fn clustered(&self) -> bool {
        !matches!(self.inner, Inner::Single(_))
    }

    /// This node's name in the cluster; None alone.
    pub fn node_name(&self) -> Option<&str> {
        match &self.inner {
            Inner::Single(_) => None,
            #[cfg(feature = "cluster")]
            Inner::Member(m) => Some(m.name()),
        }
    }

    /// The cluster token: what this node presents to others, and accepts
    /// like its own API token. None alone.
    pub fn token(&self) -> Option<&herd_actors::Secret> {
        self.token.as_deref()
    }

    /// Leaves the cluster at once (graceful stop).
    pub async fn leave(&self) {
        match &self.inner {
            Inner::Single(_) => {}
            #[cfg(feature = "cluster")]
            Inner::Member(m) => {
                m.disarm();
                m.leave().await
            }
        }
    }

    /// In a cluster, copies what the journal stores about messages and
    /// removals to etcd (the store reads the returned stream); else the
    /// stream itself.
    pub fn mirror(
        &self,
        records: tokio::sync::mpsc::UnboundedReceiver<herd_actors::Record>,
    ) -> tokio::sync::mpsc::UnboundedReceiver<herd_actors::Record> {
        match &self.inner {
            Inner::Single(_) => records,
            #[cfg(feature = "cluster")]
            Inner::Member(m) => m.mirror(records),
        }
    }

    /// At start, for a stored session that was live: may this node run it
    /// again? (Not if another node took it over meanwhile.)
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub async fn reclaim(&self, id: uuid::Uuid) -> Result<bool, String> {
        match &self.inner {
            Inner::Single(_) => Ok(true),
            #[cfg(feature = "cluster")]
            Inner::Member(m) => m.reclaim(id).await.map_err(|e| e.to_string()),
        }
    }

    /// Removes the local copy of a session that runs elsewhere now.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub async fn drop_moved(&self, registry: &Registry, id: uuid::Uuid) {
        #[cfg(feature = "cluster")]
        if let Inner::Member(m) = &self.inner {
            m.shared.remove_local(registry, id).await;
        }
    }

    /// Starts the cluster agent (failover, fencing, transcripts), after
    /// recovery.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub fn start_agent(
        &self,
        registry: &Registry,
        claude: &Arc<crate::daemon::claude::ClaudeProfile>,
    ) {
        #[cfg(feature = "cluster")]
        if let Inner::Member(m) = &self.inner {
            m.start_agent(Host {
                registry: registry.clone(),
                claude: claude.clone(),
            });
        }
    }

    /// A graceful stop: hands the sessions over to other live nodes (if
    /// any) before the node leaves; without one they stay and come back
    /// here at the next start.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub async fn hand_over(
        &self,
        registry: &Registry,
        claude: &Arc<crate::daemon::claude::ClaudeProfile>,
    ) {
        #[cfg(feature = "cluster")]
        if let Inner::Member(m) = &self.inner {
            if registry.live_count() == 0 || !m.others_live().await {
                return;
            }
            let host = Host {
                registry: registry.clone(),
                claude: claude.clone(),
            };
            let r = m.drain(&host, Duration::from_secs(30)).await;
            tracing::info!(
                moved = r.moved.len(),
                failed = r.failed.len(),
                "handed the sessions over before leaving"
            );
        }
    }

    /// Where a new session goes: `None` for this node (always, when not
    /// clustered, or when `forwarded`: the node that forwarded it chose).
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub async fn place(
        &self,
        wants: &placement::Wants,
        forwarded: bool,
    ) -> Result<Option<NodeRecord>, PlaceRefused> {
        match &self.inner {
            Inner::Single(r) => match &wants.node {
                Some(n) if *n != r.node => Err(PlaceRefused::NoRoom(format!(
                    "placement.node = {n:?}: this daemon is in no cluster (it is {:?})",
                    r.node
                ))),
                _ => Ok(None),
            },
            #[cfg(feature = "cluster")]
            Inner::Member(_) if forwarded => Ok(None),
            #[cfg(feature = "cluster")]
            Inner::Member(m) => match m.place(wants).await {
                Ok(sessions::Target::Here) => Ok(None),
                Ok(sessions::Target::There(r)) => Ok(Some(r)),
                Err(sessions::PlaceError::NoRoom(e)) => Err(PlaceRefused::NoRoom(e.0)),
                Err(sessions::PlaceError::Etcd(e)) => Err(PlaceRefused::Unavailable(e.to_string())),
            },
        }
    }

    /// Records a session created on this node in the cluster (nothing when
    /// not clustered). `spec` is the spec as requested.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub async fn record_created(
        &self,
        id: uuid::Uuid,
        spec: herd_actors::SessionSpec,
        wants: placement::Wants,
    ) -> Result<(), String> {
        match &self.inner {
            Inner::Single(_) => Ok(()),
            #[cfg(feature = "cluster")]
            Inner::Member(m) => m
                .record_created(id, spec, wants)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// `herd node drain NAME`: this node hands its sessions over and stops
    /// taking new ones; another node's drain is forwarded to it.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub async fn drain(
        &self,
        node: &str,
        registry: &Registry,
        claude: &Arc<crate::daemon::claude::ClaudeProfile>,
    ) -> Result<axum::response::Response, DrainRefused> {
        match &self.inner {
            Inner::Single(_) => Err(DrainRefused::NotClustered),
            #[cfg(feature = "cluster")]
            Inner::Member(m) if m.name() == node => {
                let host = Host {
                    registry: registry.clone(),
                    claude: claude.clone(),
                };
                let report = m.drain(&host, Duration::from_secs(60)).await;
                Ok(axum::response::IntoResponse::into_response(axum::Json(
                    report,
                )))
            }
            #[cfg(feature = "cluster")]
            Inner::Member(m) => {
                let nodes = m
                    .nodes()
                    .await
                    .map_err(|e| DrainRefused::Unavailable(e.to_string()))?;
                let Some(n) = nodes.into_iter().find(|n| n.record.node == node) else {
                    return Err(DrainRefused::Unknown(node.to_string()));
                };
                self.forward_json(
                    &n.record,
                    axum::http::Method::POST,
                    &format!("/v1/nodes/{node}/drain"),
                    &serde_json::Value::Null,
                )
                .await
                .map_err(DrainRefused::Unreachable)
            }
        }
    }

    /// `GET /v1/tasks/{task}` for a task this node does not serve: etcd's
    /// mapping names the session, its owner answers. None: not clustered,
    /// or no node serves it.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub async fn task_elsewhere(
        &self,
        task: &str,
    ) -> Option<Result<axum::response::Response, String>> {
        #[cfg(feature = "cluster")]
        if let Inner::Member(m) = &self.inner {
            let id = m.task_session(task).await?;
            let owner = m.owner_record(id).await?;
            return Some(
                self.forward_json(
                    &owner,
                    axum::http::Method::GET,
                    &format!("/v1/sessions/{id}"),
                    &serde_json::Value::Null,
                )
                .await,
            );
        }
        None
    }

    /// Sends a JSON request to another node (with the cluster token) and
    /// returns its answer as it is.
    pub async fn forward_json(
        &self,
        node: &NodeRecord,
        method: axum::http::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<axum::response::Response, String> {
        let via = self
            .via()
            .ok_or_else(|| "this daemon is in no cluster".to_string())?;
        let target = proxy::Target {
            node: node.node.clone(),
            advertise: node.advertise.clone(),
            id: String::new(),
        };
        let body = match body {
            serde_json::Value::Null => axum::body::Body::empty(),
            b => axum::body::Body::from(serde_json::to_vec(b).unwrap_or_default()),
        };
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| e.to_string())?;
        proxy::http(req, &target, via).await.map_err(|e| {
            format!(
                "node {} at {} does not answer: {}",
                e.node, e.advertise, e.why
            )
        })
    }
}

/// The machine's host name, or "localhost" if it has none.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most
    // that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if rc == 0 && !h.is_empty() => h.to_string(),
        _ => "localhost".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_comes_from_the_bound_address_unless_it_is_every_interface() {
        let mut c = ClusterConfig::with_etcd(vec!["http://127.0.0.1:2379".into()]);
        c.node = Some("n1".into());
        let s = Settings::resolve(&c, "127.0.0.1:7000".parse().unwrap()).unwrap();
        assert_eq!(s.advertise, "http://127.0.0.1:7000");
        assert_eq!(s.node, "n1");
        let e = Settings::resolve(&c, "0.0.0.0:7000".parse().unwrap()).unwrap_err();
        assert!(
            e.contains("cluster.advertise is required") && e.contains("0.0.0.0:7000"),
            "{e}"
        );
        c.advertise = Some("http://10.0.0.5:7000".into());
        let s = Settings::resolve(&c, "0.0.0.0:7000".parse().unwrap()).unwrap();
        assert_eq!(s.advertise, "http://10.0.0.5:7000");
        c.node = None;
        let s = Settings::resolve(&c, "0.0.0.0:7000".parse().unwrap());
        // The host name, when it can stand in a key.
        if let Ok(s) = s {
            assert_eq!(s.node, host_name());
        }
    }

    #[test]
    fn a_build_without_the_feature_says_how_to_get_it() {
        assert!(Cluster::check_supported(false).is_ok());
        let r = Cluster::check_supported(true);
        if cfg!(feature = "cluster") {
            assert!(r.is_ok());
        } else {
            let e = r.unwrap_err().to_string();
            assert!(
                e.contains("--features cluster") && e.contains("protobuf-compiler"),
                "{e}"
            );
        }
    }
}
