//! Where a session lives: on this node, on another (its owner key in etcd
//! names the node, the node's record its URL), or nowhere.

use super::Cluster;
use herd_actors::{HerdError, Registry};

/// The answer of [`Cluster::locate`].
// Without the feature only this daemon's sessions are found.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Answer here: the session is on this node, or the id is not one the
    /// registry accepts (its handler then says why).
    Local,
    /// On another node.
    Remote {
        /// The owner node's name.
        node: String,
        /// Its base URL.
        advertise: String,
        /// The session's full id.
        id: String,
    },
    /// On no node.
    NotFound,
}

/// Why a session cannot be located.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// The prefix matches sessions on several nodes (or several here).
    #[error(transparent)]
    Ambiguous(HerdError),
    /// etcd does not answer.
    #[error("cannot locate session {id:?}: {message}")]
    Unavailable {
        /// The id asked for.
        id: String,
        /// etcd's failure.
        message: String,
    },
    /// The owner key names a node that is not registered (its lease expired
    /// and the owner key has not gone yet, or a node is taking over).
    #[error("session {id} is on node {node}, which is not in the cluster now (its lease expired or it is being replaced): try again in a moment")]
    OwnerGone {
        /// The session.
        id: String,
        /// The node its owner key names.
        node: String,
    },
}

impl Cluster {
    /// Where the session `id_or_prefix` is. The local registry answers first
    /// (a full id found here costs no etcd call); otherwise, on a clustered
    /// node, the owner keys under `sessions/<prefix>` do.
    #[cfg_attr(not(feature = "cluster"), allow(clippy::unused_async))]
    pub async fn locate(
        &self,
        registry: &Registry,
        id_or_prefix: &str,
    ) -> Result<Location, LocateError> {
        let local = match registry.resolve(id_or_prefix) {
            Ok(h) => Some(h.id()),
            Err(HerdError::NotFound(_)) => None,
            Err(e @ HerdError::Ambiguous { .. }) => return Err(LocateError::Ambiguous(e)),
            // Not an id: the handler's own error says so.
            Err(_) => return Ok(Location::Local),
        };
        #[cfg(feature = "cluster")]
        if let Some(m) = self.member() {
            let full = uuid::Uuid::parse_str(id_or_prefix).is_ok();
            if local.is_some() && full {
                return Ok(Location::Local);
            }
            return remote::locate(m, id_or_prefix, local).await;
        }
        Ok(match local {
            Some(_) => Location::Local,
            None => Location::NotFound,
        })
    }
}

#[cfg(feature = "cluster")]
mod remote {
    use super::{LocateError, Location};
    use crate::daemon::cluster::info::NodeRecord;
    use crate::daemon::cluster::node::Membership;
    use herd_actors::HerdError;
    use std::collections::BTreeSet;

    /// The etcd half of [`super::Cluster::locate`]; `local` is the session
    /// the registry found here, if any.
    pub(super) async fn locate(
        m: &Membership,
        id_or_prefix: &str,
        local: Option<uuid::Uuid>,
    ) -> Result<Location, LocateError> {
        let (etcd, keys) = m.etcd();
        let prefix = id_or_prefix.to_ascii_lowercase();
        let unavailable = |e: &dyn std::fmt::Display| LocateError::Unavailable {
            id: id_or_prefix.into(),
            message: e.to_string(),
        };
        let found = match etcd.keys(&format!("{}{prefix}", keys.sessions())).await {
            Ok(found) => found,
            // etcd away: sessions here still answer.
            Err(e) if local.is_some() => {
                tracing::debug!("locating {id_or_prefix:?} without etcd ({e}): answered here");
                return Ok(Location::Local);
            }
            Err(e) => return Err(unavailable(&e)),
        };
        let mut ids: BTreeSet<String> = found
            .iter()
            .filter_map(|k| keys.owned_id(k).map(str::to_string))
            .collect();
        if let Some(l) = local {
            ids.insert(l.to_string());
        }
        if ids.len() > 1 {
            return Err(LocateError::Ambiguous(HerdError::Ambiguous {
                prefix: id_or_prefix.into(),
                count: ids.len(),
            }));
        }
        let Some(id) = ids.into_iter().next() else {
            return Ok(Location::NotFound);
        };
        if local.is_some() {
            return Ok(Location::Local);
        }
        let owner = match etcd.get(&keys.owner(&id)).await.map(|v| v.map(|(v, _)| v)) {
            Ok(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
            // Gone since the listing: removed or expired.
            Ok(None) => return Ok(Location::NotFound),
            Err(e) => return Err(unavailable(&e)),
        };
        if owner == m.name() {
            // An owner key of this node without the session here: stale.
            return Ok(Location::NotFound);
        }
        let record = match etcd
            .get(&keys.node(&owner))
            .await
            .map(|v| v.map(|(v, _)| v))
        {
            Ok(Some(v)) => v,
            Ok(None) => return Err(LocateError::OwnerGone { id, node: owner }),
            Err(e) => return Err(unavailable(&e)),
        };
        match serde_json::from_slice::<NodeRecord>(&record) {
            Ok(r) => Ok(Location::Remote {
                node: owner,
                advertise: r.advertise,
                id,
            }),
            Err(e) => {
                tracing::warn!(node = %owner, "unreadable node record in etcd: {e}");
                Err(LocateError::OwnerGone { id, node: owner })
            }
        }
    }
}
