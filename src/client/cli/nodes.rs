//! `herd nodes`: the cluster's nodes, as a table like `herd ls`.

use crate::client::http::Client;
use crate::client::output::{age, Table};
use crate::daemon::cluster::info::{NodeInfo, NodeList};
use anyhow::{Context, Result};
use reqwest::Method;
use serde_json::Value;

/// Runs `herd nodes`.
pub async fn run(c: &Client, json: bool) -> Result<()> {
    let v: Value = c.json(Method::GET, "/v1/nodes", None).await?;
    if json {
        return super::print_json(&v);
    }
    let list: NodeList = serde_json::from_value(v).context("reading the node list")?;
    print!("{}", render(&list));
    Ok(())
}

/// Runs `herd node drain NAME`.
pub async fn drain(c: &Client, name: &str, json: bool) -> Result<()> {
    let path = format!("/v1/nodes/{name}/drain");
    let v: Value = c.json(Method::POST, &path, None).await?;
    if json {
        return super::print_json(&v);
    }
    let moved = v["moved"].as_object().cloned().unwrap_or_default();
    let failed = v["failed"].as_object().cloned().unwrap_or_default();
    println!(
        "node {name}: {} session(s) handed over, {} not",
        moved.len(),
        failed.len()
    );
    for (id, to) in &moved {
        match to.as_str() {
            Some(n) => println!("  {id} -> {n}"),
            None => println!("  {id} -> (waiting for a node to take it)"),
        }
    }
    for (id, why) in &failed {
        println!("  {id}: {}", why.as_str().unwrap_or_default());
    }
    Ok(())
}

/// One row per node; `*` marks the node that answered.
pub fn render(list: &NodeList) -> String {
    let mut t = Table::new([
        "NODE",
        "HEALTH",
        "SESSIONS",
        "BUSY",
        "CPU",
        "MEMORY",
        "UP",
        "ADVERTISE",
        "LABELS",
    ]);
    for n in &list.nodes {
        t.row(row(n));
    }
    let mut out = t.render_fit(crate::client::output::terminal_width());
    if list.cluster.is_none() {
        out.push_str("(not in a cluster: this daemon alone)\n");
    }
    out
}

fn row(n: &NodeInfo) -> [String; 9] {
    let r = &n.record;
    let (sessions, busy, cpu, mem) = match &n.load {
        Some(l) => (
            format!("{}/{}", l.sessions, r.capacity),
            l.busy.to_string(),
            format!("{:.1}%", l.cpu_percent),
            format!("{:.1} MiB", l.rss_bytes as f64 / (1024.0 * 1024.0)),
        ),
        None => (
            format!("-/{}", r.capacity),
            "-".into(),
            "-".into(),
            "-".into(),
        ),
    };
    let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    [
        format!("{}{}", r.node, if n.this { " *" } else { "" }),
        serde_json::to_value(n.health)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        sessions,
        busy,
        cpu,
        mem,
        age(r.started_at),
        r.advertise.clone(),
        labels.join(","),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::cluster::info::{NodeHealth, NodeLoad, NodeRecord};
    use std::time::SystemTime;

    #[test]
    fn table_shows_load_capacity_and_labels() {
        let record = NodeRecord {
            node: "a".into(),
            advertise: "http://10.0.0.1:7777".into(),
            labels: [("zone".to_string(), "eu".to_string())].into(),
            capacity: 10,
            started_at: SystemTime::now(),
            version: "0.1.0".into(),
        };
        let mut load = NodeLoad::idle();
        load.sessions = 3;
        load.busy = 1;
        let list = NodeList {
            cluster: Some("herd".into()),
            nodes: vec![NodeInfo {
                record,
                health: NodeHealth::Live,
                load: Some(load),
                this: true,
            }],
        };
        let text = render(&list);
        let line = text.lines().nth(1).unwrap();
        for want in ["a *", "live", "3/10", "http://10.0.0.1:7777", "zone=eu"] {
            assert!(line.contains(want), "{want} in {line:?}");
        }
    }
}
