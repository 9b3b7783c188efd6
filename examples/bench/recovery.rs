//! Recovery (part 7): a daemon with N live shells dies (`kill -9`, and every
//! session's process group with it); a new daemon on the same data dir
//! brings them back. Measured from its spawn until it listens (recovery
//! done), until every session runs a new child, and until every one is ready.

use crate::daemon::{self, Daemon};
use crate::report::Row;
use crate::spawn::CONCURRENCY;
use crate::Opts;
use anyhow::{bail, Result};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// How many sessions `pred` holds for in `GET /v1/sessions`.
async fn count(d: &Daemon, pred: impl Fn(&Value) -> bool) -> Result<usize> {
    let list = d.get("/v1/sessions").await?;
    Ok(list
        .as_array()
        .map(|a| a.iter().filter(|s| pred(s)).count())
        .unwrap_or(0))
}

/// Polls until `pred` holds for `n` sessions; returns when it did.
async fn until_all(
    d: &Daemon,
    n: usize,
    what: &str,
    pred: impl Fn(&Value) -> bool + Copy,
) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let k = count(d, pred).await?;
        if k >= n {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("only {k} of {n} sessions {what} after 300s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child runs: a new generation with a pid, in a live state.
fn running(s: &Value) -> bool {
    s["generation"].as_u64() >= Some(1)
        && s["pid"].is_number()
        && matches!(
            s["state"].as_str(),
            Some("starting" | "ready" | "busy" | "waiting_input")
        )
}

/// Runs the recovery benchmark and appends its rows.
pub async fn run(herd: &Path, opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let n = opts.recovery_n;
    let mut d = Daemon::start(herd, &daemon::config(n + 100, opts.recording, "")).await?;
    eprintln!("recovery: creating {n} `sh` sessions");
    let _: Vec<()> = futures_util::stream::iter(0..n)
        .map(|i| {
            let d = &d;
            async move {
                d.create(&json!({"name": format!("rec-{i}"), "command": ["sh"]}))
                    .await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    until_all(&d, n, "ready", |s| s["state"] == "ready").await?;
    eprintln!("recovery: all {n} ready; kill -9 the daemon and its sessions, start again");
    let t0 = d.crash_and_restart(herd).await?;
    let listening = t0.elapsed();
    let all_running = until_all(&d, n, "running", running)
        .await?
        .duration_since(t0);
    let all_ready = until_all(&d, n, "ready", |s| running(s) && s["state"] == "ready")
        .await?
        .duration_since(t0);
    let secs = all_running.as_secs_f64();
    rows.push(
        Row::new(
            "recovery",
            format!("daemon restart -> all {n} sessions running"),
        )
        .herd(format!(
            "{secs:.2} s (listening after {:.2} s, all `ready` after {:.2} s)",
            listening.as_secs_f64(),
            all_ready.as_secs_f64()
        ))
        .value(secs, "s")
        .target("<= 3 s", secs <= 3.0)
        .note(format!(
            "{n} x sh; kill -9 of the daemon and every session's process group, then \
                 `herd serve` on the same data dir: spawn -> GET /v1/sessions shows every \
                 session with generation 1 and a pid (polled every 20 ms)"
        )),
    );
    let left = d.shutdown().await;
    if left > 0 {
        eprintln!("recovery: {left} processes outlived the daemon (killed)");
    }
    Ok(())
}
