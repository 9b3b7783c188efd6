//! The cluster parts (issue 16): a real etcd on free loopback ports and
//! clustered `herd serve` daemons, every one stopped by PID.
//!
//! - `cluster-failover` ([`failover`]): kill -9 of a node, time until each
//!   of its sessions runs on another (target ≤ TTL + 2 s).
//! - `cluster-creates` ([`creates`]): creates per second through one node
//!   that places them across three, against one daemon in no cluster.
//! - `cluster-attach` ([`attach`]): an attached viewer's throughput through
//!   a forwarding node against the owner directly (target ≥ 0.8×).
//!
//! Each needs `etcd` (Debian: etcd-server) and a herd built with
//! `--features cluster` (`--herd PATH`); without them its row says why.

pub mod attach;
pub mod creates;
pub mod failover;

use crate::daemon::{self, Daemon};
use crate::report::Row;
use crate::util;
use anyhow::{bail, Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::Method;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// etcd on free loopback ports in a temp dir; killed by PID when dropped.
pub struct Etcd {
    child: Child,
    ticket: u64,
    /// The client URL.
    pub url: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Etcd {
    /// Starts etcd and waits until it is healthy; `None` without the binary.
    pub async fn start() -> Result<Option<Etcd>> {
        if Command::new("etcd").arg("--version").output().is_err() {
            return Ok(None);
        }
        let dir = tempfile::Builder::new()
            .prefix("herd-bench-etcd-")
            .tempdir()?;
        util::register_dir(dir.path());
        let url = format!("http://127.0.0.1:{}", free_port()?);
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "default", "--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url, "--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning etcd")?;
        let ticket = util::register(child.id() as i32, util::Reap::Group);
        let e = Etcd {
            child,
            ticket,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(format!("{}/health", e.url)).send().await {
                if r.text().await.unwrap_or_default().contains("\"true\"") {
                    return Ok(Some(e));
                }
            }
            if Instant::now() > deadline {
                bail!("etcd did not become healthy in 30s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The config of node `node` of this etcd's cluster: `lease_ttl` given,
    /// or left to herd's default (5 s) when `None`.
    pub fn node_config(
        &self,
        node: &str,
        lease_ttl: Option<&str>,
        max_sessions: usize,
        recording: bool,
    ) -> String {
        let ttl = lease_ttl
            .map(|t| format!("lease_ttl = \"{t}\"\n"))
            .unwrap_or_default();
        daemon::config(
            max_sessions,
            recording,
            &format!(
                "[cluster]\netcd = [\"{}\"]\nnode = \"{node}\"\n{ttl}",
                self.url
            ),
        )
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        util::forget(self.ticket);
    }
}

/// Starts a clustered daemon; `None` if the binary lacks the `cluster`
/// feature. A node whose name is still held by a killed predecessor's lease
/// is retried until that lease expires (up to `retry_for`).
pub async fn start_node(herd: &Path, config: &str, retry_for: Duration) -> Result<Option<Daemon>> {
    let deadline = Instant::now() + retry_for;
    loop {
        match Daemon::start(herd, config).await {
            Ok(d) => return Ok(Some(d)),
            Err(e) if format!("{e:#}").contains("without the `cluster` feature") => {
                return Ok(None)
            }
            Err(e)
                if format!("{e:#}").contains("already registered") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Prints why a part is skipped and adds its row.
pub fn skip(part: &'static str, metric: &str, herd: &Path, no_etcd: bool, rows: &mut Vec<Row>) {
    if no_etcd {
        eprintln!("{part}: SKIPPED: no `etcd` binary (apt-get install etcd-server)");
        rows.push(Row::new(part, metric).not_available("no etcd binary"));
    } else {
        eprintln!(
            "{part}: SKIPPED: {} was built without --features cluster (pass --herd PATH)",
            herd.display()
        );
        rows.push(Row::new(part, metric).not_available(
            "herd built without --features cluster: cargo build --release --features cluster, then --herd target/release/herd",
        ));
    }
}

/// Waits until every node lists `n` live nodes (placement needs their load).
pub async fn wait_live(nodes: &[&Daemon], n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for d in nodes {
        loop {
            let live = live_nodes(d).await.unwrap_or_default();
            if live.len() == n {
                break;
            }
            if Instant::now() > deadline {
                bail!("{} lists live nodes {live:?}, not {n}", d.url);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// The names of the nodes `d` lists as live.
pub async fn live_nodes(d: &Daemon) -> Result<Vec<String>> {
    let v = d.get("/v1/nodes").await?;
    Ok(v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["health"] == "live")
        .filter_map(|n| n["node"].as_str().map(String::from))
        .collect())
}

/// Stops the sessions `ids` through `d` (forwarded to their owners), with
/// SIGKILL, `concurrency` at a time: a stop is for good, so neither failover
/// nor a graceful leave moves them afterwards.
///
/// A `502 node_unreachable` is retried once, saying so: the forwarding node
/// may reuse a pooled connection the owner is closing as idle (its
/// `server.header_timeout`, 10 s, is shorter than the client's pool idle
/// time), and a stop is idempotent.
pub async fn stop_all(d: &Daemon, ids: &[String], concurrency: usize) -> Result<()> {
    futures_util::stream::iter(ids)
        .map(|id| async move {
            let path = format!("/v1/sessions/{id}?force=true");
            let (mut st, mut v) = d.req(Method::DELETE, &path, None).await?;
            if st == reqwest::StatusCode::BAD_GATEWAY {
                eprintln!("bench: WARNING: DELETE {path}: {st} {v}; retrying once");
                (st, v) = d.req(Method::DELETE, &path, None).await?;
            }
            if !st.is_success() {
                bail!("DELETE {path}: {st} {v}");
            }
            Ok(())
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The id of a created session's JSON.
pub fn id_of(v: &Value) -> Result<String> {
    Ok(v["id"]
        .as_str()
        .context("no id in the create's answer")?
        .to_string())
}

/// Waits until `d` lists every node with no live session in its last load
/// report, so the next round's placement starts from the same loads.
pub async fn wait_idle(d: &Daemon) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = d.get("/v1/nodes").await?;
        let busy: Vec<String> = v["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["load"]["sessions"].as_u64() != Some(0))
            .map(|n| format!("{} {}", n["node"], n["load"]["sessions"]))
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "nodes still report live sessions after 30 s: {}",
                busy.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
