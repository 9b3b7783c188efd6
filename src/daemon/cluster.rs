//! The cluster: several daemons coordinated by etcd (docs/CLUSTER.md).
//!
//! Built so far: membership. A node registers under a lease
//! ([`node`]), keeps it alive, reports its load, and lists the nodes
//! (`GET /v1/nodes`). Ownership, placement, proxying, failover and fencing
//! come next; the etcd key layout for them is in `keys`, and the lost
//! lease's hook in `node::Shared::on_lease_lost`.
//!
//! - `keys`: the etcd key layout, in one place (feature `cluster`);
//! - [`info`]: a node's record, load and health (the wire types);
//! - `etcd`: the thin etcd client wrapper with typed errors (feature `cluster`);
//! - `node`: this node's registration and keep-alive (feature `cluster`);
//! - [`token`]: the cluster token nodes present to each other;
//! - [`locate`]: on which node a session is;
//! - [`proxy`]: forwarding a request for a session to its owner, and
//!   gathering lists and events from every node.
//!
//! Without `[cluster]` the daemon is the single embedded one: [`Cluster`]
//! then answers for this daemon alone.

#[cfg(feature = "cluster")]
mod etcd;
pub mod gather;
pub mod info;
#[cfg(feature = "cluster")]
pub mod keys;
pub mod locate;
#[cfg(feature = "cluster")]
mod node;
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

    /// Records this node as the owner of session `id` (its owner key, bound
    /// to this node's lease), so other nodes find it.
    ///
    /// TODO(issue 16, ownership): the lead replaces this with the create
    /// transaction (spec, task and owner keys at once); keep it one call.
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub async fn record_owner(&self, id: uuid::Uuid) {
        #[cfg(feature = "cluster")]
        if let Some(m) = self.member() {
            let (etcd, keys) = m.etcd();
            let Some(lease) = m.lease() else {
                tracing::warn!(session = %id, "no cluster lease now: other nodes cannot find this session until it is recorded");
                return;
            };
            let key = keys.owner(&id.to_string());
            if let Err(e) = etcd.put(&key, m.name().as_bytes().to_vec(), lease).await {
                tracing::warn!(session = %id, "cannot record the session's owner in etcd ({e}): other nodes cannot find it");
            }
        }
    }

    /// Forgets session `id` in etcd (it was removed).
    #[cfg_attr(not(feature = "cluster"), allow(unused_variables))]
    pub async fn forget(&self, id: uuid::Uuid) {
        #[cfg(feature = "cluster")]
        if let Some(m) = self.member() {
            let (etcd, keys) = m.etcd();
            if let Err(e) = etcd.delete(&keys.owner(&id.to_string())).await {
                tracing::warn!(session = %id, "cannot delete the session's owner key in etcd ({e}): it goes with this node's lease");
            }
        }
    }

    /// Leaves the cluster at once (graceful stop).
    pub async fn leave(&self) {
        match &self.inner {
            Inner::Single(_) => {}
            #[cfg(feature = "cluster")]
            Inner::Member(m) => m.leave().await,
        }
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
