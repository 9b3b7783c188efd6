//! Creates through the cluster (`--only cluster-creates`, issue 16 point
//! 2): N `POST /v1/sessions` to node a of three, placement left to herd
//! (so about two thirds are forwarded to b or c), against the same N to one
//! daemon in no cluster. Both rates, the latency of one create, and how the
//! sessions spread over the nodes. Alternating rounds, median reported.

use super::{id_of, skip, start_node, stop_all, wait_idle, wait_live, Etcd};
use crate::daemon::{self, Daemon};
use crate::report::Row;
use crate::util::{median, ms, percentile};
use crate::Opts;
use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Requests in flight at once.
const CONCURRENCY: usize = 8;

/// The part's name.
const PART: &str = "cluster-creates";

/// One batch of creates.
struct Batch {
    ids: Vec<String>,
    /// Creates per second over the batch.
    rate: f64,
    /// Milliseconds each create took.
    latencies: Vec<f64>,
}

/// Sends `n` creates to `d`, [`CONCURRENCY`] in flight.
async fn batch(d: &Daemon, n: usize) -> Result<Batch> {
    let t0 = Instant::now();
    let done: Vec<(String, f64)> = futures_util::stream::iter(0..n)
        .map(|_| async move {
            let t = Instant::now();
            let v = d
                .create(&json!({"command": ["sleep", "3600"], "restart": {"policy": "never"}}))
                .await?;
            Ok::<_, anyhow::Error>((id_of(&v)?, ms(t.elapsed())))
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let secs = t0.elapsed().as_secs_f64();
    let (ids, latencies) = done.into_iter().unzip();
    Ok(Batch {
        ids,
        rate: n as f64 / secs,
        latencies,
    })
}

/// Runs the part and appends its rows.
pub async fn run(herd: &Path, opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let n = opts.creates_n;
    let metric = format!("{n} creates through node a, placed by herd over 3 nodes");
    let Some(etcd) = Etcd::start().await? else {
        skip(PART, &metric, herd, true, rows);
        return Ok(());
    };
    let cap = n + 10;
    let cfg = |node: &str| etcd.node_config(node, None, cap, opts.recording);
    let Some(mut a) = start_node(herd, &cfg("a"), Duration::ZERO).await? else {
        skip(PART, &metric, herd, false, rows);
        return Ok(());
    };
    let mut b = start_node(herd, &cfg("b"), Duration::ZERO)
        .await?
        .context("node b: no cluster feature")?;
    let mut c = start_node(herd, &cfg("c"), Duration::ZERO)
        .await?
        .context("node c: no cluster feature")?;
    wait_live(&[&a, &b, &c], 3).await?;
    let (mut single, mut cluster) = (Vec::new(), Vec::new());
    let (mut single_lat, mut cluster_lat) = (Vec::new(), Vec::new());
    let mut spreads: Vec<String> = Vec::new();
    for round in 1..=opts.runs {
        let mut d = Daemon::start(herd, &daemon::config(cap, opts.recording, "")).await?;
        let s = batch(&d, n).await?;
        d.shutdown().await;

        let cl = batch(&a, n).await?;
        let mut on: BTreeMap<String, usize> = BTreeMap::new();
        let list = a.get("/v1/sessions").await?;
        for s in list.as_array().into_iter().flatten() {
            if s["id"]
                .as_str()
                .is_some_and(|id| cl.ids.iter().any(|i| i == id))
            {
                let node = s["node"].as_str().unwrap_or("?").to_string();
                *on.entry(node).or_default() += 1;
            }
        }
        let spread: Vec<String> = on.iter().map(|(n, k)| format!("{n} {k}")).collect();
        eprintln!(
            "{PART}: round {round}/{}: single daemon {:.0}/s (p50 {:.1} ms); cluster through a {:.0}/s (p50 {:.1} ms), on {}",
            opts.runs,
            s.rate,
            median(&s.latencies),
            cl.rate,
            median(&cl.latencies),
            spread.join(", ")
        );
        // Stopped for good (so no hand-over at the end moves them).
        stop_all(&a, &cl.ids, CONCURRENCY).await?;
        wait_idle(&a).await?;
        single.push(s.rate);
        cluster.push(cl.rate);
        single_lat.extend(s.latencies);
        cluster_lat.extend(cl.latencies);
        spreads.push(spread.join(" / "));
    }
    c.shutdown().await;
    b.shutdown().await;
    a.shutdown().await;
    drop(etcd);
    let (cr, sr) = (median(&cluster), median(&single));
    rows.push(
        Row::new(PART, metric)
            .herd(format!(
                "{cr:.0}/s (p50 {:.1} ms, p99 {:.1} ms)",
                median(&cluster_lat),
                percentile(&cluster_lat, 99.0)
            ))
            .baseline(format!(
                "{sr:.0}/s one daemon, no cluster (p50 {:.1} ms, p99 {:.1} ms)",
                median(&single_lat),
                percentile(&single_lat, 99.0)
            ))
            .value(if sr > 0.0 { cr / sr } else { 0.0 }, "x")
            .note(format!(
                "POST /v1/sessions of `sleep 3600`, {CONCURRENCY} in flight, lease_ttl 5 s (default); \
                 median of {} alternating rounds; sessions per node each round: {}",
                opts.runs,
                spreads.join("; ")
            )),
    );
    Ok(())
}
