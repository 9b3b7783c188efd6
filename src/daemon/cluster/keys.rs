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
//! Ownership (`owner.rs`):
//! - `/herd/<cluster>/sessions/<id>/spec`: what a node needs to start the
//!   session ([`Placed`](super::owner::Placed) JSON);
//! - `/herd/<cluster>/sessions/<id>/owner`: the owner node's name, bound to
//!   the owner's lease; every write that assumes ownership compares the
//!   owner key's lease with the writer's in the same transaction;
//! - `/herd/<cluster>/tasks/<task>`: the session id of a task;
//! - `/herd/<cluster>/queue/<id>/<message id>`: a message not answered yet;
//! - `/herd/<cluster>/transcripts/<id>/...`: a Claude session's transcript,
//!   zstd-compressed in chunks, copied at each end of turn.

use uuid::Uuid;

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

    /// The prefix of every session key.
    pub fn sessions(&self) -> String {
        format!("{}sessions/", self.root)
    }

    /// The spec key of session `id`.
    pub fn spec(&self, id: &Uuid) -> String {
        format!("{}{id}/spec", self.sessions())
    }

    /// The key that says session `id` ended on its owner (stopped or
    /// failed for good): nobody adopts it when the owner goes.
    pub fn ended(&self, id: &Uuid) -> String {
        format!("{}{id}/ended", self.sessions())
    }

    /// The owner key of session `id`.
    pub fn owner(&self, id: &Uuid) -> String {
        format!("{}{id}/owner", self.sessions())
    }

    /// The key of task `task`.
    pub fn task(&self, task: &str) -> String {
        format!("{}tasks/{task}", self.root)
    }

    /// The prefix of session `id`'s queued messages.
    pub fn queue(&self, id: &Uuid) -> String {
        format!("{}queue/{id}/", self.root)
    }

    /// The key of one queued message.
    pub fn queued(&self, id: &Uuid, message: &Uuid) -> String {
        format!("{}{message}", self.queue(id))
    }

    /// The prefix of session `id`'s transcript copy.
    pub fn transcript(&self, id: &Uuid) -> String {
        format!("{}transcripts/{id}/", self.root)
    }
}

/// What a key under [`Keys::sessions`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKey {
    /// `sessions/<id>/spec`.
    Spec(Uuid),
    /// `sessions/<id>/owner`.
    Owner(Uuid),
    /// `sessions/<id>/ended`.
    Ended(Uuid),
}

impl SessionKey {
    /// Reads a key under `prefix` (the sessions prefix).
    pub fn parse(prefix: &str, key: &str) -> Option<Self> {
        let (id, what) = key.strip_prefix(prefix)?.split_once('/')?;
        let id = Uuid::parse_str(id).ok()?;
        match what {
            "spec" => Some(Self::Spec(id)),
            "owner" => Some(Self::Owner(id)),
            "ended" => Some(Self::Ended(id)),
            _ => None,
        }
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
        let id = Uuid::new_v4();
        assert_eq!(k.owner(&id), format!("/herd/prod/sessions/{id}/owner"));
        assert_eq!(
            SessionKey::parse(&k.sessions(), &k.owner(&id)),
            Some(SessionKey::Owner(id))
        );
        assert_eq!(
            SessionKey::parse(&k.sessions(), &k.spec(&id)),
            Some(SessionKey::Spec(id))
        );
        assert_eq!(SessionKey::parse(&k.sessions(), &k.queue(&id)), None);
    }
}
