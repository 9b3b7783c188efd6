//! The etcd key layout of a cluster, in one place. Every key lives under
//! `/herd/<cluster>/`, so several clusters can share one etcd.
//!
//! Built (membership):
//! - `/herd/<cluster>/nodes/<node>`: [`NodeRecord`](super::info::NodeRecord)
//!   JSON, bound to the node's lease, created by a "create if absent"
//!   transaction (so a name is held by one live process at a time);
//! - `/herd/<cluster>/status/<node>`: [`NodeLoad`](super::info::NodeLoad)
//!   JSON, bound to the same lease, rewritten every TTL/2.
//!
//! Planned (docs/CLUSTER.md; not built yet):
//! - `/herd/<cluster>/sessions/<id>/spec`: the session's spec;
//! - `/herd/<cluster>/sessions/<id>/owner`: the owner node's name, bound to
//!   the owner's lease; every write that assumes ownership compares its
//!   revision in the same transaction;
//! - `/herd/<cluster>/tasks/<task>`: the session id of a task;
//! - `/herd/<cluster>/queue/<id>/<seq>`: a queued message.

/// The keys of one cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// The keys of the cluster `name` (checked by the config: no `/`).
    pub fn new(name: &str) -> Self {
        Self {
            root: format!("/herd/{name}/"),
        }
    }

    /// The prefix of every node key.
    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.root)
    }

    /// The membership key of `node`.
    pub fn node(&self, node: &str) -> String {
        format!("{}{node}", self.nodes())
    }

    /// The prefix of every status key.
    pub fn statuses(&self) -> String {
        format!("{}status/", self.root)
    }

    /// The status (load) key of `node`.
    pub fn status(&self, node: &str) -> String {
        format!("{}{node}", self.statuses())
    }
}

/// The node name at the end of `key` under `prefix`.
pub fn name_under<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(prefix).filter(|n| !n.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("prod");
        assert_eq!(k.node("a"), "/herd/prod/nodes/a");
        assert_eq!(k.status("a"), "/herd/prod/status/a");
        assert_eq!(name_under(&k.nodes(), "/herd/prod/nodes/a"), Some("a"));
        assert_eq!(name_under(&k.nodes(), "/herd/prod/nodes/a/x"), None);
        assert_eq!(name_under(&k.nodes(), "/herd/other/nodes/a"), None);
    }
}
