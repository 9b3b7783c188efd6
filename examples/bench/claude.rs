//! Claude (part 6): herd's overhead on a real Claude Code session, against
//! the same CLI started bare in a portable-pty PTY, both offline against the
//! harness's mock API answering at once (`prepare.sh --first-delay-ms 0
//! --delay-ms 0`).
//!
//! 1. Turns: `send --wait` (`POST .../messages?wait=true`) N times on one
//!    fresh session. Each turn's end is the arrival of the CLI's Stop hook at
//!    the daemon, read from the daemon's debug log line
//!    (`RUST_LOG=herd::daemon::api::hooks=debug`, the `hook ... event="Stop"`
//!    line with its microsecond timestamp); from there to the `ready` event
//!    (its `at`, reason `hook: Stop`) and to the answer of `send --wait`.
//! 2. Start → ready: `POST /v1/sessions` → the session's first `ready` event,
//!    against spawn → the idle footer `? for shortcuts` in the bare PTY's
//!    output (escapes stripped), runs interleaved.
//! 3. Prompt → first byte: `POST .../messages` → the first output frame on an
//!    attached `WS /v1/sessions/{id}/attach` (after its redraw), against
//!    writing the prompt and `\r` to the bare PTY → the first byte back.
//! 4. Memory: RSS of the CLI's process tree after one turn (/proc, both
//!    sides), and the daemon's RSS growth per live Claude session.
//!
//! Skipped, saying so, where `../shared/claude-harness` or the installed CLI
//! is absent.

use crate::daemon::{self, Daemon};
use crate::harness::{self, BareRun, Harness, IDLE_BEFORE_PROMPT, KEY, READY_MARK, STEP_TIMEOUT};
use crate::report::Row;
use crate::util::{median, ms, percentile};
use crate::Opts;
use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use tokio_tungstenite::tungstenite::Message;

/// The log filter that shows hook arrivals and nothing else below `warn`.
const HOOK_LOG: &str = "warn,herd::daemon::api::hooks=debug";
/// Between two looks at a starting session.
const POLL: Duration = Duration::from_millis(25);

/// What one herd run measured (milliseconds, bytes).
#[derive(Debug, Clone, Copy)]
struct HerdRun {
    /// `POST /v1/sessions` sent → the first `ready` event's `at`.
    ready: f64,
    /// The same, as the bench's polling saw it.
    ready_seen: f64,
    /// `POST /v1/sessions` sent → the idle footer in the session's output
    /// (long-polled `GET .../output`), as the bare side detects ready.
    marker: f64,
    /// `POST .../messages` sent → the first output frame on the attach socket.
    first_byte: f64,
    /// `POST .../messages?wait=true` sent → answered.
    reply: f64,
    /// RSS of the CLI's process tree after the turn (/proc).
    rss: u64,
    /// The Stop hook's arrival → the answer, for this first turn.
    stop: Option<Turn>,
}

/// One turn's end, measured from the Stop hook's arrival at the daemon.
#[derive(Debug, Clone, Copy)]
struct Turn {
    /// → the `ready` event (reason `hook: Stop`).
    to_ready: f64,
    /// → `send --wait` answered.
    to_answer: f64,
}

fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => ms(d),
        Err(e) => -ms(e.duration()),
    }
}

fn parse_at(v: &Value) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(v.as_str()?).ok()
}

/// Arrival times of the Stop hooks of session `id`, from the daemon log.
fn stop_hooks(log: &str, id: &str) -> Vec<SystemTime> {
    let needle = format!("session={id}");
    log.lines()
        .map(|l| String::from_utf8_lossy(&strip_ansi_escapes::strip(l)).into_owned())
        .filter(|l| {
            l.contains(&needle)
                && (l.contains("event=\"Stop\"") || l.split_whitespace().any(|w| w == "event=Stop"))
        })
        .filter_map(|l| {
            let ts = l.split_whitespace().next()?;
            humantime::parse_rfc3339_weak(ts).ok()
        })
        .collect()
}

/// The end of the turn that ran between `sent` and `answered`: the last
/// Stop hook in that span, and the first `hook: Stop` ready event after it.
fn turn_end(
    hooks: &[SystemTime],
    events: &[Value],
    sent: SystemTime,
    answered: SystemTime,
) -> Option<Turn> {
    let hook = *hooks
        .iter()
        .filter(|h| **h >= sent && **h <= answered)
        .max()?;
    let ready = events
        .iter()
        .filter(|e| e["to"] == "ready" && e["reason"] == "hook: Stop")
        .filter_map(|e| parse_at(&e["at"]))
        .filter(|at| *at >= hook && *at <= answered)
        .min()?;
    Some(Turn {
        to_ready: ms_between(hook, ready),
        to_answer: ms_between(hook, answered),
    })
}

/// `POST .../messages?wait=true`; returns when it was sent and answered.
async fn send_wait(
    http: reqwest::Client,
    url: String,
    token: String,
    text: String,
) -> Result<(SystemTime, SystemTime, Value)> {
    let sent = SystemTime::now();
    let resp = http
        .post(format!("{url}?wait=true&timeout=60s"))
        .bearer_auth(token)
        .json(&json!({ "text": text }))
        .send()
        .await
        .context("POST messages")?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let answered = SystemTime::now();
    if !status.is_success() || body["state"] != "done" {
        bail!("send --wait {text:?}: {status} {body}");
    }
    Ok((sent, answered, body))
}

/// The session body of every Claude session of the bench.
fn new_session(work: &Path) -> Value {
    json!({"profile": "claude", "cwd": work, "claude": {"api_key": KEY}})
}

/// Waits until session `id` is in a state that `pred` accepts.
async fn wait_state(d: &Daemon, id: &str, pred: impl Fn(&str) -> bool) -> Result<Value> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let v = d.session(id).await?;
        if pred(v["state"].as_str().unwrap_or("")) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!(
                "session {id}: still {} after {STEP_TIMEOUT:?}: {v}",
                v["state"]
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Stops a session and waits until it and its CLI are gone.
async fn stop(d: &Daemon, id: &str) -> Result<()> {
    let pid = d.session(id).await?["pid"].as_i64();
    d.req(reqwest::Method::DELETE, &format!("/v1/sessions/{id}"), None)
        .await?;
    wait_state(d, id, |s| s == "stopped" || s == "failed").await?;
    if let Some(pid) = pid {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while crate::util::rss_bytes(pid as i32).is_some() && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

/// Long-polls a session's output from its first byte until the idle footer
/// shows (as the bare side detects it); returns when that output arrived.
async fn watch_marker(http: reqwest::Client, url: String, token: String) -> Result<Instant> {
    let (mut since, mut raw) = (0u64, Vec::new());
    let deadline = Instant::now() + STEP_TIMEOUT;
    while Instant::now() < deadline {
        let resp = http
            .get(format!("{url}?since={since}&wait=10s"))
            .bearer_auth(&token)
            .send()
            .await
            .context("GET output")?;
        let at = Instant::now();
        let end = resp
            .headers()
            .get("herd-output-end")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .context("no herd-output-end header")?;
        raw.extend_from_slice(&resp.bytes().await?);
        since = end;
        if harness::squash(&raw).contains(READY_MARK) {
            return Ok(at);
        }
    }
    bail!("no idle footer in the output within {STEP_TIMEOUT:?}")
}

/// One fresh session: start → ready, one prompt (first byte on an attached
/// socket, the answer), the tree's RSS; then stopped.
async fn herd_run(d: &Daemon, work: &Path, prompt: &str) -> Result<HerdRun> {
    let s0 = SystemTime::now();
    let t0 = Instant::now();
    let v = d.create(&new_session(work)).await?;
    let id = v["id"].as_str().context("no id")?.to_string();
    let marker = tokio::spawn(watch_marker(
        d.http.clone(),
        format!("{}/v1/sessions/{id}/output", d.url),
        d.token().to_string(),
    ));
    let s = wait_state(d, &id, |s| s == "ready").await?;
    let ready_seen = ms(t0.elapsed());
    let events = d.get(&format!("/v1/sessions/{id}/events")).await?;
    let ready_at = events
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["to"] == "ready")
        .and_then(|e| parse_at(&e["at"]))
        .context("no ready event")?;
    let pid = s["pid"].as_i64().context("no pid")? as i32;
    let marker = match tokio::time::timeout(STEP_TIMEOUT, marker).await {
        Ok(Ok(Ok(t))) => ms(t - t0),
        other => bail!("session {id}: the idle footer never showed in its output: {other:?}"),
    };
    tokio::time::sleep(IDLE_BEFORE_PROMPT).await;

    // An attached viewer: hello, the redraw, then live output only.
    let mut ws = d.ws(&format!("/v1/sessions/{id}/attach")).await?;
    let mut binaries = 0;
    while binaries == 0 {
        match tokio::time::timeout(STEP_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(Message::Binary(_)))) => binaries += 1,
            Ok(Some(Ok(_))) => {}
            other => bail!("attach {id}: no redraw: {other:?}"),
        }
    }
    let t_prompt = Instant::now();
    let send = tokio::spawn(send_wait(
        d.http.clone(),
        format!("{}/v1/sessions/{id}/messages", d.url),
        d.token().to_string(),
        prompt.to_string(),
    ));
    let first = loop {
        match tokio::time::timeout(STEP_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(Message::Binary(_)))) => break t_prompt.elapsed(),
            Ok(Some(Ok(_))) => {}
            other => bail!("attach {id}: no output after the prompt: {other:?}"),
        }
    };
    drop(ws);
    let (sent, answered, _) = send.await.context("send task")??;
    let rss = harness::tree_rss(pid);
    let events = d.get(&format!("/v1/sessions/{id}/events")).await?;
    let hooks = stop_hooks(&d.log_text(), &id);
    let stop_end = turn_end(
        &hooks,
        events.as_array().map(Vec::as_slice).unwrap_or_default(),
        sent,
        answered,
    );
    stop(d, &id).await?;
    Ok(HerdRun {
        ready: ms_between(s0, ready_at),
        ready_seen,
        marker,
        first_byte: ms(first),
        reply: ms_between(sent, answered),
        rss,
        stop: stop_end,
    })
}

/// What the turns on one session gave.
struct Turns {
    /// `send --wait` end to end, per turn (ms).
    e2e: Vec<f64>,
    /// The end of each turn that had a Stop hook and a `ready` event.
    ends: Vec<Turn>,
    /// Turns without that pair.
    missing: usize,
    /// Turns whose reply was not exactly the mock's answer to their prompt.
    wrong: Vec<String>,
}

/// N turns on one fresh session. A wrong reply is counted (with the screen
/// at that moment on stderr), not fatal: it is a finding of the bench.
async fn turns(d: &Daemon, work: &Path, n: usize) -> Result<Turns> {
    let v = d.create(&new_session(work)).await?;
    let id = v["id"].as_str().context("no id")?.to_string();
    wait_state(d, &id, |s| s == "ready").await?;
    let url = format!("{}/v1/sessions/{id}/messages", d.url);
    let (mut spans, mut wrong) = (Vec::with_capacity(n), Vec::new());
    for i in 0..n {
        let (sent, answered, m) = send_wait(
            d.http.clone(),
            url.clone(),
            d.token().to_string(),
            format!("bench turn {i}"),
        )
        .await?;
        let reply = m["reply"].as_str().unwrap_or_default().to_string();
        if reply != format!("MOCK-REPLY: bench turn {i}") {
            let screen = d
                .http
                .get(format!("{}/v1/sessions/{id}/screen?format=text", d.url))
                .bearer_auth(d.token())
                .send()
                .await?
                .text()
                .await
                .unwrap_or_default();
            eprintln!("claude: turn {i}: WRONG reply {reply:?}; the screen now:\n{screen}");
            wrong.push(format!("turn {i}: {reply:?}"));
        }
        spans.push((sent, answered));
    }
    let events = d.get(&format!("/v1/sessions/{id}/events")).await?;
    let events = events.as_array().cloned().unwrap_or_default();
    let hooks = stop_hooks(&d.log_text(), &id);
    let ends: Vec<Turn> = spans
        .iter()
        .filter_map(|(s, a)| turn_end(&hooks, &events, *s, *a))
        .collect();
    stop(d, &id).await?;
    Ok(Turns {
        e2e: spans.iter().map(|(s, a)| ms_between(*s, *a)).collect(),
        missing: n - ends.len(),
        ends,
        wrong,
    })
}

/// M live sessions after one turn each: the daemon's RSS growth per session.
async fn daemon_memory(d: &Daemon, work: &Path, m: usize) -> Result<(f64, Vec<u64>)> {
    let before = crate::util::rss_bytes(d.pid()).unwrap_or(0);
    let mut ids = Vec::new();
    for _ in 0..m {
        let v = d.create(&new_session(work)).await?;
        ids.push(v["id"].as_str().context("no id")?.to_string());
    }
    let mut trees = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let s = wait_state(d, id, |s| s == "ready").await?;
        send_wait(
            d.http.clone(),
            format!("{}/v1/sessions/{id}/messages", d.url),
            d.token().to_string(),
            format!("memory {i}"),
        )
        .await?;
        if let Some(pid) = s["pid"].as_i64() {
            trees.push(harness::tree_rss(pid as i32));
        }
    }
    let after = crate::util::rss_bytes(d.pid()).unwrap_or(0);
    for id in &ids {
        stop(d, id).await?;
    }
    Ok((after.saturating_sub(before) as f64 / m.max(1) as f64, trees))
}

fn mib(b: f64) -> f64 {
    b / (1024.0 * 1024.0)
}

fn p50_p99(v: &[f64]) -> String {
    format!("{:.1} / {:.1} ms", median(v), percentile(v, 99.0))
}

/// Runs the Claude benchmark and appends its rows (one `n/a` row, saying
/// why, where the harness or the CLI is absent).
pub async fn run(herd: &Path, opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let (dir, prefix) = match harness::locate() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("claude: skipped: {why}");
            rows.push(
                Row::new("claude", "every Claude figure").not_available(format!("skipped: {why}")),
            );
            return Ok(());
        }
    };
    let mut h = tokio::task::spawn_blocking(move || Harness::start(&dir, &prefix))
        .await
        .context("harness task")??;
    let (bin, work) = (h.bin(), h.work_dir());
    let config = daemon::config(
        50,
        opts.recording,
        &format!(
            "[claude]\nbinary = {:?}\n\n[claude.env]\nANTHROPIC_BASE_URL = {:?}\n",
            bin.display().to_string(),
            h.var("ANTHROPIC_BASE_URL")
        ),
    );
    let mut d = Daemon::start_logged(herd, &config, HOOK_LOG).await?;
    let n = opts.claude_runs;

    // One untimed pair first: the CLI's 200 MB binary into the page cache.
    eprintln!("claude: warm-up (one bare run, one herd session)");
    let bare_one = |h: &mut Harness, prompt: String| -> Result<_> {
        let (bin, work, env) = (bin.clone(), work.clone(), h.bare_env()?);
        Ok(tokio::task::spawn_blocking(move || {
            harness::bare_run(&bin, &env, &work, &prompt)
        }))
    };
    bare_one(&mut h, "warm up".into())?
        .await
        .context("bare task")??;
    herd_run(&d, &work, "warm up").await?;

    eprintln!("claude: {n} fresh sessions through herd and {n} bare CLIs, interleaved");
    let (mut herd_runs, mut bare_runs): (Vec<HerdRun>, Vec<BareRun>) = (vec![], vec![]);
    for i in 0..n {
        let r = herd_run(&d, &work, &format!("first prompt {i}"))
            .await
            .with_context(|| format!("herd run {i}"))?;
        let b = bare_one(&mut h, format!("first prompt {i}"))?
            .await
            .context("bare task")?
            .with_context(|| format!("bare run {i}"))?;
        eprintln!(
            "claude: run {i}: start->ready herd {:.0} ms (footer {:.0} ms) / bare {:.0} ms; first byte {:.1} / {:.1} ms",
            r.ready, r.marker, b.ready, r.first_byte, b.first_byte
        );
        herd_runs.push(r);
        bare_runs.push(b);
    }

    let t = opts.claude_turns;
    eprintln!("claude: {t} turns of send --wait on one fresh session");
    let Turns {
        e2e,
        ends,
        missing,
        wrong,
    } = turns(&d, &work, t).await?;
    let m = opts.claude_mem_n;
    eprintln!("claude: {m} live sessions for the daemon's memory per session");
    let (per_session, trees) = daemon_memory(&d, &work, m).await?;
    d.shutdown().await;
    drop(h);

    let col = |f: fn(&HerdRun) -> f64| herd_runs.iter().map(f).collect::<Vec<f64>>();
    let bcol = |f: fn(&BareRun) -> f64| bare_runs.iter().map(f).collect::<Vec<f64>>();
    let to_ready: Vec<f64> = ends.iter().map(|e| e.to_ready).collect();
    let to_answer: Vec<f64> = ends.iter().map(|e| e.to_answer).collect();
    let p99 = percentile(&to_ready, 99.0);
    rows.push(
        Row::new("claude", format!("end of turn (Stop hook) -> `ready` event, p50 / p99 ({} turns)", ends.len()))
            .herd(p50_p99(&to_ready))
            .value(p99, "ms")
            .target("p99 <= 50 ms", p99 <= 50.0 && missing == 0 && !ends.is_empty())
            .note(format!(
                "one fresh session, mock answering at once; the Stop hook's arrival is the daemon's debug \
                 log line (`{HOOK_LOG}`), the `ready` event's `at` comes from GET /v1/sessions/{{id}}/events; \
                 {missing} of {t} turns had no Stop hook/ready pair; with 20 turns the p99 is the slowest"
            )),
    );
    let p99 = percentile(&to_answer, 99.0);
    rows.push(
        Row::new("claude", "end of turn (Stop hook) -> `send --wait` answered, p50 / p99")
            .herd(p50_p99(&to_answer))
            .value(p99, "ms")
            .target("p99 <= 1000 ms", p99 <= 1000.0 && missing == 0 && !ends.is_empty())
            .note("the answer waits for the reply in the CLI's transcript (bounded reads after the Stop hook)"),
    );
    rows.push(
        Row::new(
            "claude",
            format!("turns answered with exactly their own reply ({t} turns)"),
        )
        .herd(format!("{} of {t}", t - wrong.len()))
        .value((t - wrong.len()) as f64, "")
        .target(format!("{t} of {t}"), wrong.is_empty())
        .note(if wrong.is_empty() {
            "each reply is `MOCK-REPLY: <its prompt>`".to_string()
        } else {
            format!("wrong: {}", wrong.join("; "))
        }),
    );
    rows.push(
        Row::new(
            "claude",
            format!("send --wait end to end, p50 / p99 ({t} turns)"),
        )
        .herd(p50_p99(&e2e))
        .value(median(&e2e), "ms")
        .note(
            "POST .../messages?wait=true until the response, on the session of the two rows above",
        ),
    );
    let firsts: Vec<Turn> = herd_runs.iter().filter_map(|r| r.stop).collect();
    let (hp, bp) = (col(|r| r.reply), bcol(|b| b.reply));
    rows.push(
        Row::new("claude", format!("first prompt of a fresh CLI -> reply, median / p99 ({n}x)"))
            .herd(p50_p99(&hp))
            .baseline(p50_p99(&bp))
            .value(median(&hp) - median(&bp), "ms")
            .note(format!(
                "herd: send --wait answered; bare: prompt written -> the reply and the idle footer on screen. \
                 In herd's runs the Stop hook -> `ready` took {:.1} ms and -> answered {:.1} ms (medians, {} of {n} turns \
                 paired with their hook)",
                median(&firsts.iter().map(|e| e.to_ready).collect::<Vec<_>>()),
                median(&firsts.iter().map(|e| e.to_answer).collect::<Vec<_>>()),
                firsts.len()
            )),
    );
    let (hr, br) = (col(|r| r.ready), bcol(|b| b.ready));
    let diff = median(&hr) - median(&br);
    rows.push(
        Row::new("claude", format!("start -> ready, median / p99 ({n} fresh, vs bare CLI)"))
            .herd(p50_p99(&hr))
            .baseline(p50_p99(&br))
            .value(diff, "ms")
            .target("<= +100 ms", diff <= 100.0)
            .note(format!(
                "herd: POST /v1/sessions -> first `ready` event (bench saw it {:.0} ms median by polling); \
                 bare: spawn in a PTY -> `? for shortcuts` in the output. Herd's own output showed \
                 `? for shortcuts` after {:.0} ms median (long-polled GET .../output); it calls the screen \
                 ready after [limits] quiet_after (500 ms by default) of quiet; value = difference of the medians",
                median(&col(|r| r.ready_seen)),
                median(&col(|r| r.marker))
            )),
    );
    let hm = col(|r| r.marker);
    rows.push(
        Row::new("claude", "breakdown: start -> `? for shortcuts` in the output, median / p99")
            .herd(p50_p99(&hm))
            .baseline(p50_p99(&br))
            .value(median(&hm) - median(&br), "ms")
            .note("the same marker on both sides: herd's session output (long-polled GET .../output) against the bare PTY; the rest of herd's start -> ready is the quiet wait"),
    );
    let (hf, bf) = (col(|r| r.first_byte), bcol(|b| b.first_byte));
    rows.push(
        Row::new("claude", format!("prompt -> first byte on screen, median / p99 ({n}x)"))
            .herd(p50_p99(&hf))
            .baseline(p50_p99(&bf))
            .value(median(&hf) - median(&bf), "ms")
            .note("herd: POST .../messages -> first output frame on WS /v1/sessions/{id}/attach; bare: write(prompt + \\r) -> first byte read"),
    );
    let (ht, bt) = (col(|r| r.rss as f64), bcol(|b| b.rss as f64));
    rows.push(
        Row::new("claude", "CLI process tree RSS after one turn, median")
            .herd(format!("{:.1} MiB", mib(median(&ht))))
            .baseline(format!("{:.1} MiB", mib(median(&bt))))
            .value(mib(median(&ht) - median(&bt)), "MiB")
            .note("VmRSS summed over the CLI and its descendants (/proc), herd's session vs the bare CLI"),
    );
    let live: Vec<f64> = trees.iter().map(|b| *b as f64).collect();
    rows.push(
        Row::new("claude", format!("daemon RSS growth per live Claude session ({m} sessions)"))
            .herd(format!("{:.2} MiB", mib(per_session)))
            .value(mib(per_session), "MiB")
            .note(format!(
                "daemon VmRSS with {m} sessions ready after one turn each, minus before them, per session \
                 (their CLI trees: {:.1} MiB median each, not counted)",
                mib(median(&live))
            )),
    );
    Ok(())
}
