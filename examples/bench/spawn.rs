//! Spawn (part 2): N sessions created through the API against N bare
//! portable-pty spawns of the same program.

use crate::bare;
use crate::daemon::{self, Daemon};
use crate::report::Row;
use crate::Opts;
use anyhow::{bail, Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::json;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// Requests in flight at once, as a job runner starting a batch would.
pub const CONCURRENCY: usize = 16;

/// Runs the spawn benchmark and appends its rows.
pub async fn run(herd: &Path, opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let n = opts.spawn_n;
    let argv: Vec<String> = vec!["cat".into()];

    eprintln!("spawn: {n} bare portable-pty spawns of `cat`");
    let a = argv.clone();
    let (children, bare_t) = tokio::task::spawn_blocking(move || bare::spawn_many(&a, n)).await??;
    tokio::task::spawn_blocking(move || drop(children)).await?;
    eprintln!("spawn: bare: {:.0} ms", bare_t.as_secs_f64() * 1e3);

    let mut d = Daemon::start(herd, &daemon::config(n + 50, opts.recording, "")).await?;
    eprintln!("spawn: {n} sessions through POST /v1/sessions ({CONCURRENCY} in flight)");
    let t0 = Instant::now();
    let ids: Vec<String> = futures_util::stream::iter(0..n)
        .map(|i| {
            let d = &d;
            let argv = argv.clone();
            async move {
                let v = d
                    .create(&json!({"name": format!("spawn-{i}"), "command": argv}))
                    .await?;
                Ok::<_, anyhow::Error>(v["id"].as_str().context("id")?.to_string())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let created = t0.elapsed();
    let ours: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let with_pid = loop {
        let list = d.get("/v1/sessions").await?;
        let k = list
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| {
                        s["pid"].is_i64() && s["id"].as_str().is_some_and(|id| ours.contains(id))
                    })
                    .count()
            })
            .unwrap_or(0);
        if k == n {
            break t0.elapsed();
        }
        if Instant::now() > deadline {
            bail!("only {k} of {n} sessions got a pid in 120s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!(
        "spawn: herd: all created in {:.0} ms, all with a pid in {:.0} ms",
        created.as_secs_f64() * 1e3,
        with_pid.as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let left = d.shutdown().await;
    eprintln!(
        "spawn: daemon stopped {n} sessions and exited in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let ratio = bare_t.as_secs_f64() / with_pid.as_secs_f64();
    rows.push(
        Row::new("spawn", format!("{n} sessions until all have a pid"))
            .herd(format!("{:.0} ms", with_pid.as_secs_f64() * 1e3))
            .baseline(format!("{:.0} ms", bare_t.as_secs_f64() * 1e3))
            .value(ratio, "x")
            .target("bare/herd >= 0.5", ratio >= 0.5)
            .note(format!(
                "POST /v1/sessions of `cat`, {CONCURRENCY} requests in flight, then GET /v1/sessions every 5 ms; \
                 bare: openpty + spawn one after the other in one thread"
            )),
    );
    rows.push(
        Row::new(
            "spawn",
            format!("{n} sessions until all POSTs answered 201"),
        )
        .herd(format!("{:.0} ms", created.as_secs_f64() * 1e3))
        .baseline(format!("{:.0} ms", bare_t.as_secs_f64() * 1e3))
        .value(bare_t.as_secs_f64() / created.as_secs_f64(), "x"),
    );
    if left > 0 {
        eprintln!("spawn: WARNING: {left} processes outlived the daemon's shutdown");
    }
    Ok(())
}
