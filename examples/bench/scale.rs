//! Scale (part 4): N live shells under one daemon: its memory per session,
//! its CPU while they idle, `GET /v1/sessions` latency, and how fast an event
//! reaches a `/v1/events` WebSocket.

use crate::daemon::{self, Daemon};
use crate::report::Row;
use crate::spawn::CONCURRENCY;
use crate::util::{self, median, ms, percentile};
use crate::Opts;
use anyhow::{bail, Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use rand::seq::SliceRandom;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use tokio_tungstenite::tungstenite::Message;

const MIB: f64 = 1024.0 * 1024.0;

/// Runs the scale benchmark and appends its rows.
pub async fn run(herd: &Path, opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let n = opts.scale_n;
    let mut d = Daemon::start(herd, &daemon::config(n + 100, opts.recording, "")).await?;
    let pid = d.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = util::rss_bytes(pid).context("daemon VmRSS")?;

    eprintln!("scale: creating {n} `sh` sessions");
    let t0 = Instant::now();
    let ids: Vec<String> = futures_util::stream::iter(0..n)
        .map(|i| {
            let d = &d;
            async move {
                let v = d
                    .create(&json!({"name": format!("scale-{i}"), "command": ["sh"]}))
                    .await?;
                if (i + 1) % 200 == 0 {
                    eprintln!("scale: {} created", i + 1);
                }
                Ok::<_, anyhow::Error>(v["id"].as_str().context("id")?.to_string())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let created = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let list = d.get("/v1/sessions").await?;
        let ready = list
            .as_array()
            .map(|a| a.iter().filter(|s| s["state"] == "ready").count())
            .unwrap_or(0);
        if ready >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {n} sessions became ready in 180s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all_ready = t0.elapsed();
    eprintln!(
        "scale: {n} created in {:.1}s, all ready after {:.1}s; settling",
        created.as_secs_f64(),
        all_ready.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss1 = util::rss_bytes(pid).context("daemon VmRSS")?;
    let threads = util::threads(pid).unwrap_or(0);
    let per = (rss1.saturating_sub(rss0)) as f64 / n as f64 / MIB;
    rows.push(
        Row::new("scale", format!("daemon RSS per live session ({n} x sh)"))
            .herd(format!(
                "{per:.3} MiB ({:.0} -> {:.0} MiB)",
                rss0 as f64 / MIB,
                rss1 as f64 / MIB
            ))
            .value(per, "MiB")
            .target("<= 0.2 MiB", per <= 0.2)
            .note(format!(
                "VmRSS of the daemon after - before, / {n}; {threads} daemon threads; \
                 created in {:.1}s ({CONCURRENCY} in flight), all `ready` after {:.1}s",
                created.as_secs_f64(),
                all_ready.as_secs_f64()
            )),
    );
    rows.push(
        Row::new("scale", format!("daemon threads at {n} sessions"))
            .herd(format!("{threads} threads"))
            .value(threads as f64, "threads")
            .target("<= 64", threads > 0 && threads <= 64)
            .note("`Threads:` of /proc/<daemon>/status once every session is `ready`"),
    );

    let secs = opts.idle_window.unwrap_or(opts.idle_secs);
    eprintln!("scale: daemon CPU while {n} sessions idle, over {secs}s");
    let c0 = util::cpu_ticks(pid).context("daemon stat")?;
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let c1 = util::cpu_ticks(pid).context("daemon stat")?;
    let wall = w0.elapsed().as_secs_f64();
    let cpu = (c1 - c0) as f64 / util::clk_tck() / wall * 100.0;
    rows.push(
        Row::new("scale", format!("daemon CPU, {n} sessions idle"))
            .herd(format!("{cpu:.2} % of one core"))
            .value(cpu, "%")
            .target("<= 1 %", cpu <= 1.0)
            .note(format!(
                "utime+stime of the daemon over {wall:.1}s (metrics sample_interval 2s, the default)"
            )),
    );

    let k = opts.list_n;
    eprintln!("scale: {k} x GET /v1/sessions");
    let mut lat = Vec::with_capacity(k);
    let mut size = 0usize;
    for _ in 0..k {
        let t = Instant::now();
        let resp = d
            .http
            .get(format!("{}/v1/sessions", d.url))
            .bearer_auth(d.token())
            .send()
            .await?;
        let body = resp.bytes().await?;
        lat.push(ms(t.elapsed()));
        size = body.len();
    }
    let p99 = percentile(&lat, 99.0);
    rows.push(
        Row::new(
            "scale",
            format!("GET /v1/sessions latency, p99 ({k}x, {n} sessions)"),
        )
        .herd(format!(
            "p50 {:.2} / p99 {p99:.2} / max {:.2} ms",
            median(&lat),
            percentile(&lat, 100.0)
        ))
        .value(p99, "ms")
        .target("<= 20 ms", p99 <= 20.0)
        .note(format!(
            "sequential requests on a keep-alive connection, body read in full ({:.2} MB each)",
            size as f64 / 1e6
        )),
    );

    let triggers = opts.events_n;
    eprintln!("scale: {triggers} inputs to random sessions, events on WS /v1/events");
    let mut ws = d.ws("/v1/events").await?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(async move {
        let mut lat: Vec<f64> = Vec::new();
        let mut lagged = 0u64;
        loop {
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        let now = SystemTime::now();
                        let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                        if let Some(at) = v["at"].as_str().and_then(|s| humantime::parse_rfc3339(s).ok()) {
                            lat.push(now.duration_since(at).map(ms).unwrap_or(0.0));
                        } else if v["type"] == "lagged" {
                            lagged += v["missed"].as_u64().unwrap_or(0);
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
                _ = stop_rx.changed() => break,
            }
        }
        (lat, lagged)
    });
    let mut order = ids.clone();
    order.shuffle(&mut rand::rng());
    let every = Duration::from_secs(opts.idle_secs) / triggers.max(1) as u32;
    let t_start = Instant::now();
    for (i, id) in order.iter().cycle().take(triggers).enumerate() {
        let due = t_start + every * i as u32;
        tokio::time::sleep_until(due.into()).await;
        d.post(&format!("/v1/sessions/{id}/input"), &json!({"text": "\r"}))
            .await?;
    }
    // The last `ready` comes quiet_after (500 ms) after its output.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stop_tx.send(true);
    let (ev, lagged) = reader.await?;
    let p99 = percentile(&ev, 99.0);
    rows.push(
        Row::new(
            "scale",
            format!("event reaches WS /v1/events, p99 ({} events)", ev.len()),
        )
        .herd(format!(
            "p50 {:.2} / p99 {p99:.2} / max {:.2} ms",
            median(&ev),
            percentile(&ev, 100.0)
        ))
        .value(p99, "ms")
        .target("<= 1 ms", p99 <= 1.0 && !ev.is_empty())
        .note(format!(
            "receive time - the event's `at`; transitions (busy, then ready) caused by {triggers} \
                 inputs to random sessions over {}s; {lagged} events reported lagged",
            opts.idle_secs
        )),
    );

    eprintln!("scale: stopping the daemon and its {n} sessions");
    let t = Instant::now();
    let left = d.shutdown().await;
    eprintln!(
        "scale: stopped in {:.1}s ({left} processes outlived it)",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
