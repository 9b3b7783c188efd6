//! Restart (part 3): SIGKILL a session's child with `backoff_initial = 0`
//! and time until the next child runs.
//!
//! Measured in-process with the herd-actors library (the session's watch
//! channel wakes the bench the moment the new pid is recorded; the event bus
//! timestamps break the time down), and through the daemon for comparison
//! (the `starting` event on `WS /v1/events`, then `GET /v1/sessions/{id}`
//! polled until the new pid shows).

use crate::daemon::{self, Daemon};
use crate::report::Row;
use crate::util::{median, ms, percentile};
use crate::Opts;
use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use herd_actors::{
    Registry, RestartConfig, RestartPolicy, SessionDefaults, SessionSpec, SessionState,
};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::broadcast::error::TryRecvError;
use tokio_tungstenite::tungstenite::Message;

/// Longest a single restart may take before the run is declared stuck.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two kills, so each restart starts from a settled session.
const PAUSE: Duration = Duration::from_millis(20);

fn kill9(pid: i64) {
    // SAFETY: kill has no memory-safety preconditions; the pid is a live
    // child of herd that the bench was told about a moment ago.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

fn since(t: SystemTime, base: SystemTime) -> f64 {
    t.duration_since(base).map(ms).unwrap_or(0.0)
}

/// In-process: kill → new pid in the session's info, N times.
async fn library(n: usize) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let mut defaults = SessionDefaults {
        restart: RestartConfig {
            policy: RestartPolicy::Always,
            max_restarts: 1_000_000,
            restart_window: Duration::from_secs(60),
            backoff_initial: Duration::ZERO,
            backoff_max: Duration::ZERO,
            backoff_reset_after: Duration::from_secs(60),
        },
        ..Default::default()
    };
    defaults.limits.stop_grace = Duration::from_secs(1);
    let reg = Registry::start(defaults).await?;
    let info = reg.create(SessionSpec::new(["cat"])).await?;
    let id = info.id;
    reg.wait_for(id, STEP_TIMEOUT, |i| i.pid.is_some()).await?;
    let h = reg.get(id).context("session gone")?;
    let mut events = reg.events().subscribe();
    let (mut total, mut detect, mut starting) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        tokio::time::sleep(PAUSE).await;
        let cur = h.info();
        let (pid, gen) = (cur.pid.context("no pid")?, cur.generation);
        let mut rx = h.watch();
        // Forget the previous restart's events.
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = events.try_recv() {}
        let base = SystemTime::now();
        let t0 = Instant::now();
        kill9(pid.into());
        let r = tokio::time::timeout(
            STEP_TIMEOUT,
            rx.wait_for(|i| i.generation > gen && i.pid.is_some()),
        )
        .await
        .map(|r| r.map(|_| ()));
        let t = t0.elapsed();
        if !matches!(r, Ok(Ok(()))) {
            bail!(
                "restart {i}: no new child within {STEP_TIMEOUT:?}: {:?}",
                h.info()
            );
        }
        total.push(ms(t));
        loop {
            match events.try_recv() {
                Ok(e) if e.session_id == id && e.to == SessionState::Restarting => {
                    detect.push(since(e.at, base));
                }
                Ok(e) if e.session_id == id && e.to == SessionState::Starting => {
                    starting.push(since(e.at, base));
                }
                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    }
    reg.shutdown(Duration::from_secs(10)).await;
    Ok((total, detect, starting))
}

/// Through the daemon: kill → `starting` on /v1/events → new pid over HTTP.
async fn through_daemon(herd: &Path, opts: &Opts, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let extra = "[restart]\npolicy = \"always\"\nmax_restarts = 1000000\nrestart_window = \"1m\"\n\
                 backoff_initial = \"0s\"\nbackoff_max = \"0s\"\n";
    let mut d = Daemon::start(herd, &daemon::config(10, opts.recording, extra)).await?;
    let v = d
        .create(&serde_json::json!({"name": "bench-restart", "command": ["cat"]}))
        .await?;
    let id = v["id"].as_str().context("id")?.to_string();
    d.wait_session(&id, STEP_TIMEOUT, |v| v["pid"].is_i64())
        .await?;
    let mut ws = d.ws(&format!("/v1/events?session={id}")).await?;
    let (mut to_pid, mut to_event) = (Vec::new(), Vec::new());
    for i in 0..n {
        tokio::time::sleep(PAUSE).await;
        let cur = d.session(&id).await?;
        let pid = cur["pid"].as_i64().context("no pid")?;
        let gen = cur["generation"].as_u64().unwrap_or(0);
        let t0 = Instant::now();
        kill9(pid);
        let seen = tokio::time::timeout(STEP_TIMEOUT, async {
            while let Some(m) = ws.next().await {
                if let Message::Text(t) = m? {
                    let e: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    if e["to"] == "starting" && e["generation"].as_u64() == Some(gen + 1) {
                        return Ok::<_, anyhow::Error>(t0.elapsed());
                    }
                }
            }
            bail!("events socket closed")
        })
        .await
        .with_context(|| format!("restart {i}: no `starting` event"))??;
        to_event.push(ms(seen));
        let deadline = t0 + STEP_TIMEOUT;
        loop {
            let v = d.session(&id).await?;
            if v["pid"].as_i64().is_some_and(|p| p != pid) && v["generation"].as_u64() > Some(gen) {
                to_pid.push(ms(t0.elapsed()));
                break;
            }
            if Instant::now() > deadline {
                bail!("restart {i}: no new pid: {v}");
            }
        }
    }
    d.shutdown().await;
    Ok((to_pid, to_event))
}

/// Runs the restart benchmark and appends its rows.
pub async fn run(herd: &Path, opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let n = opts.restart_n;
    eprintln!("restart: {n} SIGKILLs of `cat` in-process (herd-actors Registry)");
    let (total, detect, starting) = library(n).await?;
    let (p50, p99) = (median(&total), percentile(&total, 99.0));
    eprintln!("restart: library: median {p50:.2} ms, p99 {p99:.2} ms");
    rows.push(
        Row::new(
            "restart",
            format!("kill -9 -> new child runs, median ({n}x, in-process)"),
        )
        .herd(format!("{p50:.2} ms"))
        .value(p50, "ms")
        .target("<= 20 ms", p50 <= 20.0)
        .note(
            "herd-actors in the bench process: SIGKILL, then the session's watch channel \
                 reports generation+1 with its pid (set once the new child has exec'd)",
        ),
    );
    rows.push(
        Row::new(
            "restart",
            format!("kill -9 -> new child runs, p99 ({n}x, in-process)"),
        )
        .herd(format!(
            "{p99:.2} ms (max {:.2})",
            percentile(&total, 100.0)
        ))
        .value(p99, "ms")
        .target("<= 50 ms", p99 <= 50.0),
    );
    rows.push(
        Row::new(
            "restart",
            "breakdown: kill -> `restarting` / -> `starting` (median)",
        )
        .herd(format!(
            "{:.2} ms / {:.2} ms",
            median(&detect),
            median(&starting)
        ))
        .note("event-bus timestamps: exit detected and reaped; backoff done and spawn begins"),
    );
    let dn = opts.restart_daemon_n;
    eprintln!("restart: {dn} SIGKILLs through the daemon");
    let (to_pid, to_event) = through_daemon(herd, opts, dn).await?;
    rows.push(
        Row::new("restart", format!("kill -9 -> new pid via HTTP, median / p99 ({dn}x, daemon)"))
            .herd(format!(
                "{:.2} / {:.2} ms",
                median(&to_pid),
                percentile(&to_pid, 99.0)
            ))
            .value(median(&to_pid), "ms")
            .note(format!(
                "daemon: `starting` seen on WS /v1/events after {:.2} ms median, then GET /v1/sessions/{{id}} \
                 polled back to back until the new pid shows (includes HTTP round trips)",
                median(&to_event)
            )),
    );
    Ok(())
}
