//! What the cluster knows of a node: its record (who it is), its load (how
//! busy it is) and, put together for `GET /v1/nodes`, its health.

use herd_actors::{ListFilter, Registry, SessionState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use utoipa::ToSchema;

/// Who a node is: written once per registration (the node key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeRecord {
    /// The node's name, unique in the cluster.
    pub node: String,
    /// The URL its API is reached at.
    pub advertise: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Live sessions it accepts (`limits.max_sessions`).
    pub capacity: usize,
    /// When the daemon started.
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "humantime_serde")]
    pub started_at: SystemTime,
    /// herd version.
    pub version: String,
}

/// How busy a node is: rewritten every TTL/2 (the status key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeLoad {
    /// Live sessions (not stopped or failed).
    pub sessions: usize,
    /// Sessions busy now.
    pub busy: usize,
    /// Sessions waiting for a person.
    pub waiting_input: usize,
    /// CPU of every session's process tree, in percent of one core.
    pub cpu_percent: f64,
    /// Resident memory of every session's process tree.
    pub rss_bytes: u64,
    /// The node is handing its sessions over (`herd node drain`, leaving):
    /// no session is placed on it.
    #[serde(default)]
    pub draining: bool,
    /// When these figures were taken.
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "humantime_serde")]
    pub updated_at: SystemTime,
}

impl NodeLoad {
    /// The load of this daemon's sessions now.
    pub fn sample(registry: &Registry) -> Self {
        let mut load = Self::idle();
        for s in registry.list(&ListFilter::default()) {
            if s.state.is_final() {
                continue;
            }
            load.sessions += 1;
            load.busy += usize::from(s.state == SessionState::Busy);
            load.waiting_input += usize::from(s.state == SessionState::WaitingInput);
            load.cpu_percent += f64::from(s.metrics.cpu_percent);
            load.rss_bytes += s.metrics.rss_bytes;
        }
        load
    }

    /// No sessions (before the registry runs).
    pub fn idle() -> Self {
        Self {
            sessions: 0,
            busy: 0,
            waiting_input: 0,
            cpu_percent: 0.0,
            rss_bytes: 0,
            draining: false,
            updated_at: SystemTime::now(),
        }
    }
}

/// A listed node's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeHealth {
    /// Its lease is alive and its load is recent.
    Live,
    /// Its lease is alive but its load is older than twice the TTL (or
    /// missing): the process may hang, or its clock is off.
    Stale,
}

/// One node in `GET /v1/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    /// Who it is.
    #[serde(flatten)]
    pub record: NodeRecord,
    /// `live` or `stale`.
    pub health: NodeHealth,
    /// Its last reported load (absent if it never reported one).
    pub load: Option<NodeLoad>,
    /// The node that answered this request.
    pub this: bool,
}

impl NodeInfo {
    /// Judges a node's health from its load's age against the lease TTL.
    pub fn judge(record: NodeRecord, load: Option<NodeLoad>, ttl: Duration, this: &str) -> Self {
        let now = SystemTime::now();
        let fresh = load.as_ref().is_some_and(|l| {
            // A clock ahead of ours counts as fresh: skew is not death.
            now.duration_since(l.updated_at).unwrap_or_default() <= 2 * ttl
        });
        Self {
            this: record.node == this,
            record,
            health: if fresh {
                NodeHealth::Live
            } else {
                NodeHealth::Stale
            },
            load,
        }
    }
}

/// `GET /v1/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    /// The cluster's name; absent for a daemon that is not in a cluster
    /// (the list then holds this daemon alone).
    pub cluster: Option<String>,
    /// The nodes, by name.
    pub nodes: Vec<NodeInfo>,
}
