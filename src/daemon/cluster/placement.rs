//! Placement: which node runs a new session, and in which order the nodes
//! are offered an orphan. Pure: it sees the node list and decides.

use super::info::{NodeHealth, NodeInfo};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use utoipa::ToSchema;

/// What a session asks of the node that runs it (`placement` in a create
/// request; `herd new --node NAME --label k=v`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Wants {
    /// Start it on this node (at creation only: after a failover any node
    /// that carries the labels may run it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Labels the node must carry, every one (`zone = "eu"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// No node can take the session; says why, naming what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no node can take the session: {0}")]
pub struct NoRoom(pub String);

/// Whether `n` may run a session that wants `w` (room aside).
fn fits(n: &NodeInfo, w: &Wants) -> bool {
    n.health == NodeHealth::Live
        && !n.load.as_ref().is_some_and(|l| l.draining)
        && w.labels
            .iter()
            .all(|(k, v)| n.record.labels.get(k) == Some(v))
}

/// Live sessions on `n`, counting `extra` placed there since its last load.
fn used(n: &NodeInfo, extra: &HashMap<String, usize>) -> usize {
    n.load.as_ref().map_or(0, |l| l.sessions) + extra.get(&n.record.node).copied().unwrap_or(0)
}

/// The nodes that may run a session that wants `w` and have room, least
/// loaded first (by share of capacity used, then sessions; among equals
/// the node that answers first, as it needs no forwarding, then by name).
/// `extra` counts sessions placed since the loads were written.
pub fn rank<'a>(
    nodes: &'a [NodeInfo],
    w: &Wants,
    extra: &HashMap<String, usize>,
) -> Vec<&'a NodeInfo> {
    let mut out: Vec<&NodeInfo> = nodes
        .iter()
        .filter(|n| fits(n, w) && used(n, extra) < n.record.capacity)
        .collect();
    out.sort_by(|a, b| {
        let share = |n: &NodeInfo| used(n, extra) as f64 / n.record.capacity.max(1) as f64;
        share(a)
            .total_cmp(&share(b))
            .then(used(a, extra).cmp(&used(b, extra)))
            .then(b.this.cmp(&a.this))
            .then(a.record.node.cmp(&b.record.node))
    });
    out
}

/// The node a new session goes to.
pub fn pick<'a>(
    nodes: &'a [NodeInfo],
    w: &Wants,
    extra: &HashMap<String, usize>,
) -> Result<&'a NodeInfo, NoRoom> {
    if let Some(name) = &w.node {
        let Some(n) = nodes.iter().find(|n| &n.record.node == name) else {
            let known: Vec<&str> = nodes.iter().map(|n| n.record.node.as_str()).collect();
            return Err(NoRoom(format!(
                "placement.node = {name:?} is not a live node of the cluster (nodes: {})",
                known.join(", ")
            )));
        };
        if !fits(n, w) {
            return Err(NoRoom(format!(
                "placement.node = {name:?} is {}",
                if n.health != NodeHealth::Live {
                    "not live".to_string()
                } else if n.load.as_ref().is_some_and(|l| l.draining) {
                    "draining".to_string()
                } else {
                    format!("missing the labels {:?}", w.labels)
                }
            )));
        }
        if used(n, extra) >= n.record.capacity {
            return Err(NoRoom(format!(
                "placement.node = {name:?} runs {} sessions, its capacity (limits.max_sessions)",
                n.record.capacity
            )));
        }
        return Ok(n);
    }
    rank(nodes, w, extra).into_iter().next().ok_or_else(|| {
        let fitting = nodes.iter().filter(|n| fits(n, w)).count();
        NoRoom(if fitting == 0 && !w.labels.is_empty() {
            format!("no live node carries the labels {:?}", w.labels)
        } else if fitting == 0 {
            "no live node (all draining or stale)".to_string()
        } else {
            format!("every fitting node ({fitting}) is at its capacity (limits.max_sessions)")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::cluster::info::{NodeLoad, NodeRecord};
    use std::time::SystemTime;

    fn node(name: &str, sessions: usize, capacity: usize, labels: &[(&str, &str)]) -> NodeInfo {
        let mut load = NodeLoad::idle();
        load.sessions = sessions;
        NodeInfo {
            record: NodeRecord {
                node: name.into(),
                advertise: format!("http://{name}:1"),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                capacity,
                started_at: SystemTime::now(),
                version: "0".into(),
            },
            health: NodeHealth::Live,
            load: Some(load),
            this: false,
        }
    }

    #[test]
    fn least_loaded_by_share_then_name_and_placed_since_counts() {
        let nodes = vec![
            node("a", 5, 10, &[]),
            node("b", 2, 10, &[]),
            node("c", 2, 10, &[]),
        ];
        let none = HashMap::new();
        assert_eq!(
            pick(&nodes, &Wants::default(), &none).unwrap().record.node,
            "b"
        );
        let extra = HashMap::from([("b".to_string(), 1)]);
        assert_eq!(
            pick(&nodes, &Wants::default(), &extra).unwrap().record.node,
            "c"
        );
        // A small node half full is more loaded than a big one a third full.
        let nodes = vec![node("small", 1, 2, &[]), node("big", 3, 9, &[])];
        assert_eq!(
            pick(&nodes, &Wants::default(), &none).unwrap().record.node,
            "big"
        );
    }

    #[test]
    fn labels_capacity_draining_and_a_named_node() {
        let mut nodes = vec![
            node("a", 0, 10, &[("zone", "eu")]),
            node("b", 0, 10, &[("zone", "us")]),
            node("c", 1, 1, &[("zone", "eu")]),
        ];
        let none = HashMap::new();
        let eu = Wants {
            node: None,
            labels: BTreeMap::from([("zone".to_string(), "eu".to_string())]),
        };
        assert_eq!(pick(&nodes, &eu, &none).unwrap().record.node, "a");
        nodes[0].load.as_mut().unwrap().draining = true;
        let e = pick(&nodes, &eu, &none).unwrap_err().to_string();
        assert!(e.contains("capacity"), "{e}");
        let asia = Wants {
            node: None,
            labels: BTreeMap::from([("zone".to_string(), "asia".to_string())]),
        };
        let e = pick(&nodes, &asia, &none).unwrap_err().to_string();
        assert!(e.contains("asia"), "{e}");
        let on_c = Wants {
            node: Some("c".into()),
            labels: BTreeMap::new(),
        };
        let e = pick(&nodes, &on_c, &none).unwrap_err().to_string();
        assert!(e.contains("\"c\"") && e.contains("capacity"), "{e}");
        let on_x = Wants {
            node: Some("x".into()),
            labels: BTreeMap::new(),
        };
        let e = pick(&nodes, &on_x, &none).unwrap_err().to_string();
        assert!(e.contains("\"x\"") && e.contains("a, b, c"), "{e}");
        nodes[1].health = NodeHealth::Stale;
        assert!(rank(&nodes, &Wants::default(), &none).is_empty());
    }
}
