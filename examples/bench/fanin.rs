//! Fan-in (part 5): N sessions each writing at a steady 1 MB/s for a while,
//! against the same writers in bare PTYs: nothing lost (herd's byte count and
//! every recording against what each child wrote), and no session slower
//! than 0.9 MB/s.
//!
//! The writer is the bench binary itself (`--generate`): it writes fixed
//! 50 ms chunks of text on an absolute schedule, so its rate is steady, and
//! a terminal that is not drained in time blocks it and shows as a lower rate.

use crate::bare;
use crate::daemon::{self, Daemon};
use crate::report::Row;
use crate::spawn::CONCURRENCY;
use crate::Opts;
use anyhow::{bail, Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Chunks per second of the generator.
const CHUNKS_PER_SEC: u64 = 20;
/// A line of generated text: 99 characters and a newline.
const LINE: usize = 100;

/// How long the recordings may take to complete after the sessions stopped.
const RECORDING_SETTLE: Duration = Duration::from_secs(15);

/// Sessions whose recordings are missing or do not hold `expected` output bytes.
fn check_recordings(data: &Path, expected: &[(usize, String, u64)]) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    for (i, id, want) in expected {
        let files = daemon::recordings_of(data, id);
        if files.is_empty() {
            bad.push(format!("#{i}: missing"));
            continue;
        }
        let mut o = 0;
        for f in &files {
            o += daemon::cast_output_bytes(f)?;
        }
        if o != *want {
            bad.push(format!("#{i}: {o}/{want}"));
        }
    }
    Ok(bad)
}

/// What a generator reports when it is done.
#[derive(Debug, Serialize, Deserialize)]
pub struct GenReport {
    /// Bytes written to stdout.
    pub bytes: u64,
    /// Newlines among them (the terminal turns each into CR LF).
    pub newlines: u64,
    /// Seconds from the first write to the end of the last.
    pub secs: f64,
}

/// The generator: writes `rate` bytes/s for `secs` to stdout, then its
/// report (JSON) to `report`.
pub fn generate(rate: u64, secs: f64, report: &Path) -> Result<()> {
    let chunk = (rate / CHUNKS_PER_SEC).max(1) as usize;
    let chunks = ((secs * CHUNKS_PER_SEC as f64).round() as u64).max(1);
    let mut buf = Vec::with_capacity(chunk);
    let mut c = 0u8;
    while buf.len() < chunk {
        if buf.len() % LINE == LINE - 1 {
            buf.push(b'\n');
        } else {
            buf.push(b'a' + c % 26);
            c = c.wrapping_add(1);
        }
    }
    let newlines_per_chunk = buf.iter().filter(|b| **b == b'\n').count() as u64;
    let mut out = std::io::stdout().lock();
    let interval = Duration::from_secs(1) / CHUNKS_PER_SEC as u32;
    let t0 = Instant::now();
    for i in 0..chunks {
        let due = t0 + interval * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        out.write_all(&buf)?;
        out.flush()?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let r = GenReport {
        bytes: chunk as u64 * chunks,
        newlines: newlines_per_chunk * chunks,
        secs,
    };
    std::fs::write(report, serde_json::to_vec(&r)?)?;
    Ok(())
}

/// The baseline: the same generators in bare PTYs, each drained by its own
/// thread with a 64 KiB buffer. Returns the slowest child's own rate (MB/s)
/// and the children whose output was not read in full.
fn bare_fanin(exe: &Path, n: usize, rate: u64, secs: u64) -> Result<(f64, Vec<String>)> {
    let reports = tempfile::Builder::new()
        .prefix("herd-bench-fanin-bare-")
        .tempdir()?;
    crate::util::register_dir(reports.path());
    let mut children = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for i in 0..n {
        let argv = vec![
            exe.display().to_string(),
            "--generate".into(),
            rate.to_string(),
            secs.to_string(),
            reports
                .path()
                .join(format!("{i}.json"))
                .display()
                .to_string(),
        ];
        let c = bare::BareChild::spawn(&argv)?;
        let mut r = c
            .master
            .try_clone_reader()
            .map_err(|e| anyhow::anyhow!("reader: {e}"))?;
        // Kept open until the end: dropping it sends EOF to the child.
        let w = c
            .master
            .take_writer()
            .map_err(|e| anyhow::anyhow!("writer: {e}"))?;
        readers.push(
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut total = 0u64;
                    loop {
                        match std::io::Read::read(&mut r, &mut buf) {
                            Ok(0) => break,
                            Ok(k) => total += k as u64,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(_) => break,
                        }
                    }
                    total
                })?,
        );
        children.push((c, w));
    }
    let mut min_rate = f64::MAX;
    let mut short = Vec::new();
    for (i, t) in readers.into_iter().enumerate() {
        let got = t
            .join()
            .map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
        let g: GenReport = serde_json::from_slice(
            &std::fs::read(reports.path().join(format!("{i}.json")))
                .with_context(|| format!("bare generator {i} left no report"))?,
        )?;
        min_rate = min_rate.min(g.bytes as f64 / g.secs / 1e6);
        if got != g.bytes + g.newlines {
            short.push(format!("#{i}: {got}/{}", g.bytes + g.newlines));
        }
    }
    drop(children);
    Ok((min_rate, short))
}

/// Runs the fan-in benchmark and appends its rows.
pub async fn run(herd: &Path, opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let n = opts.fanin_n;
    let secs = opts.fanin_secs;
    let rate: u64 = 1_000_000;
    let exe = std::env::current_exe()?;
    eprintln!(
        "fanin: baseline: {n} bare PTYs x {} MB/s for {secs}s",
        rate / 1_000_000
    );
    let bare_load = crate::util::loadavg();
    let e = exe.clone();
    let (bare_min, bare_short) =
        tokio::task::spawn_blocking(move || bare_fanin(&e, n, rate, secs)).await??;
    eprintln!(
        "fanin: baseline: slowest child {bare_min:.3} MB/s, {} short",
        bare_short.len()
    );
    let reports = tempfile::Builder::new()
        .prefix("herd-bench-fanin-")
        .tempdir()?;
    crate::util::register_dir(reports.path());
    let mut d = Daemon::start(herd, &daemon::config(n + 10, opts.recording, "")).await?;
    eprintln!(
        "fanin: {n} sessions x {} MB/s for {secs}s",
        rate / 1_000_000
    );
    let ids: Vec<(usize, String)> = futures_util::stream::iter(0..n)
        .map(|i| {
            let d = &d;
            let report = reports.path().join(format!("{i}.json"));
            let argv = vec![
                exe.display().to_string(),
                "--generate".into(),
                rate.to_string(),
                secs.to_string(),
                report.display().to_string(),
            ];
            async move {
                let v = d
                    .create(&json!({
                        "name": format!("fanin-{i}"),
                        "command": argv,
                        "restart": {"policy": "never"},
                    }))
                    .await?;
                Ok::<_, anyhow::Error>((i, v["id"].as_str().context("id")?.to_string()))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let c0 = crate::util::cpu_ticks(d.pid()).unwrap_or(0);
    let w0 = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(secs + 120);
    let mut next_note = Instant::now() + Duration::from_secs(5);
    let finals: Vec<Value> = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let list = d.get("/v1/sessions?all=true").await?;
        let all: Vec<Value> = list.as_array().cloned().unwrap_or_default();
        let done = all
            .iter()
            .filter(|s| s["state"] == "stopped" || s["state"] == "failed")
            .count();
        if done >= n {
            break all;
        }
        if Instant::now() > next_note {
            let bytes: u64 = all
                .iter()
                .map(|s| s["metrics"]["bytes_out"].as_u64().unwrap_or(0))
                .sum();
            eprintln!(
                "fanin: {done}/{n} done, {:.0} MB read so far, load {}",
                bytes as f64 / 1e6,
                crate::util::loadavg()
            );
            next_note += Duration::from_secs(5);
        }
        if Instant::now() > deadline {
            bail!("fan-in sessions did not finish in {}s", secs + 120);
        }
    };
    let load = crate::util::loadavg();
    let daemon_cpu = crate::util::cpu_ticks(d.pid())
        .unwrap_or(0)
        .saturating_sub(c0) as f64
        / crate::util::clk_tck()
        / w0.elapsed().as_secs_f64()
        * 100.0;
    let by_id = |id: &str| finals.iter().find(|s| s["id"] == id).cloned();

    let mut herd_lost = Vec::new();
    let mut min_rate = f64::MAX;
    let mut min_child_rate = f64::MAX;
    let mut total = 0u64;
    let mut expected_of: Vec<(usize, String, u64)> = Vec::new();
    // What herd read of each child: the recorder has caught up when every
    // recording holds that much.
    let mut read_of: Vec<(usize, String, u64)> = Vec::new();
    for (i, id) in &ids {
        let s = by_id(id).with_context(|| format!("session {id} not listed"))?;
        if s["state"] != "stopped" || s["exit_code"] != 0 {
            bail!("fan-in session {i} ended badly: {s}");
        }
        let report = reports.path().join(format!("{i}.json"));
        let g: GenReport = serde_json::from_slice(
            &std::fs::read(&report).with_context(|| format!("generator {i} left no report"))?,
        )?;
        let expected = g.bytes + g.newlines;
        let got = s["metrics"]["bytes_out"].as_u64().unwrap_or(0);
        expected_of.push((*i, id.clone(), expected));
        read_of.push((*i, id.clone(), got));
        total += got;
        if got != expected {
            herd_lost.push(format!("#{i}: {got}/{expected}"));
        }
        let started = s["started_at"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok());
        let ended = s["updated_at"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok());
        if let (Some(a), Some(b)) = (started, ended) {
            let dt = b.duration_since(a).unwrap_or_default().as_secs_f64();
            min_rate = min_rate.min(g.bytes as f64 / dt / 1e6);
        }
        min_child_rate = min_child_rate.min(g.bytes as f64 / g.secs / 1e6);
    }
    // The recorder writes off the actor: give it a moment after the last
    // session stopped, and note how long it needed.
    let has_rec = daemon::any_recording(&d.data_dir());
    let all_stopped = Instant::now();
    let mut settled = None;
    if has_rec {
        while all_stopped.elapsed() < RECORDING_SETTLE {
            if check_recordings(&d.data_dir(), &read_of)?.is_empty() {
                settled = Some(all_stopped.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let left = d.shutdown().await;
    if left > 0 {
        eprintln!("fanin: WARNING: {left} processes outlived the daemon's shutdown");
    }
    // After the daemon's graceful exit every recording is complete.
    let rec_bad = if has_rec {
        check_recordings(&d.data_dir(), &expected_of)?
    } else {
        Vec::new()
    };

    let mut row = Row::new(
        "fanin",
        format!("{n} x 1 MB/s for {secs}s: slowest session"),
    )
    .herd(format!("{min_rate:.3} MB/s"))
    .baseline(format!("{bare_min:.3} MB/s"))
    .value(min_rate, "MB/s")
    .target(">= 0.9 MB/s", min_rate >= 0.9)
    .note(format!(
        "herd: bytes the child wrote / (session stopped_at - child started_at) (the child's own \
         rate: {min_child_rate:.3} MB/s; a terminal not drained in time blocks its writes); \
         {:.0} MB read in all; daemon CPU {daemon_cpu:.0} % of one core meanwhile. Baseline: the \
         same {n} writers in bare PTYs, one reader thread each, slowest child's own rate \
         ({} short reads), load before it {bare_load}",
        total as f64 / 1e6,
        bare_short.len()
    ));
    row.load = load.clone();
    rows.push(row);
    let mut row = Row::new("fanin", "herd read every byte (bytes_out)")
        .herd(if herd_lost.is_empty() {
            format!("{n}/{n} exact")
        } else {
            format!("{} short: {}", herd_lost.len(), herd_lost.join(" "))
        })
        .target("= written (+1 CR per LF)", herd_lost.is_empty())
        .note("each child's report: bytes written + newlines (the terminal turns LF into CR LF)");
    row.load = load.clone();
    rows.push(row);
    let mut row = Row::new("fanin", "nothing lost in any recording");
    row.load = load;
    if has_rec {
        let ok = rec_bad.is_empty();
        let shown: Vec<&str> = rec_bad.iter().take(5).map(String::as_str).collect();
        rows.push(
            row.herd(if ok {
                format!("{n}/{n} exact")
            } else {
                format!("{} wrong: {}", rec_bad.len(), shown.join(" "))
            })
            .target("\"o\" bytes = written", ok)
            .note(match settled {
                Some(t) => format!(
                    "compared with what each child wrote, after the daemon's graceful stop; every \
                     recording held what herd had read {:.1}s after the last session stopped",
                    t.as_secs_f64()
                ),
                None => format!(
                    "compared with what each child wrote, after the daemon's graceful stop; {}s after \
                     the last session stopped some recordings still held less than herd had read",
                    RECORDING_SETTLE.as_secs()
                ),
            }),
        );
    } else {
        rows.push(
            row.target("\"o\" bytes = written", false)
                .not_available(if opts.recording {
                    "n/a (no recorder): no file appeared under <data>/recordings"
                } else {
                    "n/a: recording disabled (--no-recording)"
                }),
        );
    }
    Ok(())
}
