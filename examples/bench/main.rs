//! herd's benchmark suite: every figure of issue 7 beside its baseline, in one run.
//!
//! 1. `throughput`: one session draining a child that writes 200 MB of text,
//!    through the daemon (PtyActor, ring buffer, screen, recording, one
//!    attached WebSocket viewer), against a bare portable-pty read loop of the
//!    same child; recording on against off; the library alone for context.
//!    `--compare OTHER_HERD` adds a daemon of another build to every round,
//!    before the `--herd` one in even rounds and after it in odd ones, and
//!    reports their per-round ratio: an A/B of a change on the same machine
//!    state, finer than the spread between rounds.
//! 2. `spawn`: 500 sessions through `POST /v1/sessions` against 500 bare
//!    portable-pty spawns.
//! 3. `restart`: SIGKILL a child with `backoff_initial = 0`, time until the
//!    next child runs (in-process with herd-actors, and through the daemon).
//! 4. `scale`: 1,000 live shells: daemon RSS per session, daemon CPU while
//!    idle, `GET /v1/sessions` latency, event delivery on `/v1/events`.
//! 5. `recovery`: 1,000 live shells, the daemon and their process groups
//!    killed with -9, a new daemon on the same data dir: time until every
//!    session runs again (target ≤ 3 s).
//! 6. `fanin`: 100 sessions each writing 1 MB/s for 30 s, against the same
//!    writers in bare PTYs: nothing lost,
//!    no session below 0.9 MB/s.
//! 7. `claude`: the real Claude Code CLI through herd against the same CLI
//!    bare in a PTY (offline, `../shared/claude-harness`): end of turn →
//!    `ready` and → `send --wait` answered, start → ready, prompt → first
//!    byte, memory per session. Skipped, saying so, without the harness.
//! 8. `cluster-attach`: an attached viewer's throughput through a node that
//!    forwards the WebSocket to the session's owner, against the owner
//!    directly (target ≥ 0.8×); two daemons and a real etcd. Needs `etcd`
//!    and a herd built with `--features cluster` (`--herd PATH`); skipped,
//!    saying so, otherwise.
//! 9. `cluster-failover`: three daemons and a real etcd; K sessions on
//!    node b, b killed with SIGKILL: time until each runs on a or c
//!    (p50/p99/max, target ≤ TTL + 2 s), with a 2 s and the default 5 s
//!    lease, several rounds; also when the killed node's processes are gone.
//! 10. `cluster-creates`: creates per second through one node of three,
//!     placed by herd, against one daemon in no cluster; the spread.
//!     Both need what `cluster-attach` needs, and skip the same way.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example bench                 # everything (~5-6 min)
//! cargo run --release --example bench -- --quick      # shorter (< 3 min)
//! cargo run --release --example bench -- --only restart,scale --json
//! ```
//!
//! Progress goes to stderr; the table (or the JSON document) to stdout. The
//! daemon is the `herd` binary of this tree, built first with
//! `cargo build --release --bin herd` (or `--herd PATH`). Every process the
//! bench starts is killed by pid or process group when its part ends, also
//! on errors and on Ctrl-C.

mod bare;
mod claude;
mod cluster;
mod daemon;
mod fanin;
mod harness;
mod recovery;
mod report;
mod restart;
mod scale;
mod spawn;
mod throughput;
mod util;

use anyhow::{bail, Result};
use report::{Row, Verdict};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// The parts, in the order they run.
const BENCHES: [&str; 10] = [
    "throughput",
    "spawn",
    "restart",
    "scale",
    "recovery",
    "fanin",
    "claude",
    "cluster-attach",
    "cluster-failover",
    "cluster-creates",
];

/// What to run and how big.
#[derive(Debug, Clone)]
pub struct Opts {
    /// `--quick`: shorter runs.
    pub quick: bool,
    /// `--json`: JSON on stdout instead of the table.
    pub json: bool,
    /// `--markdown`: a Markdown table on stdout instead of the text table.
    pub markdown: bool,
    /// `--only a,b`: these parts only.
    pub only: Vec<String>,
    /// Recording on in the daemons of spawn, restart, scale and fan-in
    /// (`--no-recording` turns it off, to see what it costs there).
    pub recording: bool,
    /// `--herd PATH`: the daemon binary.
    pub herd: Option<PathBuf>,
    /// `--compare PATH`: a second daemon binary whose recorded drain runs in
    /// the same rounds as `--herd`'s, the order alternating (throughput).
    pub compare: Option<PathBuf>,
    /// Megabytes of text per throughput run.
    pub throughput_mb: u64,
    /// Throughput rounds (each: bare, herd with and without recording,
    /// the library); the best round is judged, the median shown.
    pub runs: usize,
    /// Sessions of the spawn benchmark.
    pub spawn_n: usize,
    /// Kills of the in-process restart benchmark.
    pub restart_n: usize,
    /// Kills of the restart benchmark through the daemon.
    pub restart_daemon_n: usize,
    /// Live sessions of the scale benchmark.
    pub scale_n: usize,
    /// Stored live sessions the recovery benchmark brings back.
    pub recovery_n: usize,
    /// Seconds of idle CPU measurement (also the span of the event triggers).
    pub idle_secs: u64,
    /// Seconds of the scale part's idle CPU window alone (`--idle-secs`;
    /// default `idle_secs`): idle sessions are sampled every 20 s, so a
    /// window shorter than that measures partly where the samples fall.
    pub idle_window: Option<u64>,
    /// `GET /v1/sessions` requests.
    pub list_n: usize,
    /// Inputs that trigger transitions for the event latency.
    pub events_n: usize,
    /// Sessions of the fan-in benchmark.
    pub fanin_n: usize,
    /// Seconds each fan-in session writes.
    pub fanin_secs: u64,
    /// Fresh Claude sessions (and bare CLIs) for start → ready, first byte, memory.
    pub claude_runs: usize,
    /// `send --wait` turns on one Claude session.
    pub claude_turns: usize,
    /// Live Claude sessions for the daemon's memory per session.
    pub claude_mem_n: usize,
    /// Kills of a node per lease TTL in the failover part.
    pub failover_rounds: usize,
    /// Sessions on the killed node in each failover round.
    pub failover_sessions: usize,
    /// Creates per round through the cluster (and to one daemon).
    pub creates_n: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Opts {
            quick: false,
            json: false,
            markdown: false,
            only: Vec::new(),
            recording: true,
            herd: None,
            compare: None,
            throughput_mb: 200,
            runs: 5,
            spawn_n: 500,
            restart_n: 100,
            restart_daemon_n: 50,
            scale_n: 1000,
            recovery_n: 1000,
            idle_secs: 10,
            idle_window: None,
            list_n: 200,
            events_n: 200,
            fanin_n: 100,
            fanin_secs: 30,
            claude_runs: 10,
            claude_turns: 20,
            claude_mem_n: 5,
            failover_rounds: 5,
            failover_sessions: 20,
            creates_n: 300,
        };
        let mut claude_runs: Option<usize> = None;
        let mut rounds: Option<usize> = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let (key, inline) = match a.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (a.as_str(), None),
            };
            let mut value = |name: &str| -> Result<String> {
                match inline.clone().or_else(|| it.next().cloned()) {
                    Some(v) => Ok(v),
                    None => bail!("{name} needs a value"),
                }
            };
            match key {
                "--quick" => o.quick = true,
                "--json" => o.json = true,
                "--markdown" => o.markdown = true,
                "--no-recording" => o.recording = false,
                "--only" => {
                    for name in value("--only")?.split(',').map(str::trim) {
                        if !BENCHES.contains(&name) {
                            bail!(
                                "--only: unknown benchmark {name:?} (expected one of {BENCHES:?})"
                            );
                        }
                        o.only.push(name.to_string());
                    }
                }
                "--herd" => o.herd = Some(PathBuf::from(value("--herd")?)),
                "--compare" => {
                    let p = PathBuf::from(value("--compare")?);
                    if !p.is_file() {
                        bail!("--compare {}: no such file", p.display());
                    }
                    o.compare = Some(p);
                }
                "--rounds" => rounds = Some(positive("--rounds", &value("--rounds")?)?),
                "--fanin-secs" => o.fanin_secs = value("--fanin-secs")?.parse()?,
                "--scale" => o.scale_n = value("--scale")?.parse()?,
                "--recovery" => o.recovery_n = value("--recovery")?.parse()?,
                "--idle-secs" => o.idle_window = Some(value("--idle-secs")?.parse()?),
                "--claude-runs" => claude_runs = Some(value("--claude-runs")?.parse()?),
                "--claude-turns" => o.claude_turns = value("--claude-turns")?.parse()?,
                "--failover-rounds" => {
                    o.failover_rounds = positive("--failover-rounds", &value("--failover-rounds")?)?
                }
                "--failover-sessions" => {
                    o.failover_sessions =
                        positive("--failover-sessions", &value("--failover-sessions")?)?
                }
                "--creates" => o.creates_n = positive("--creates", &value("--creates")?)?,
                "-h" | "--help" => {
                    println!(
                        "usage: cargo run --release --example bench -- [--quick] [--json|--markdown] \
                         [--only {}] [--herd PATH] [--compare PATH] [--rounds N] [--scale N] [--idle-secs S] [--recovery N] [--fanin-secs S] [--no-recording] \
                         [--claude-runs N] [--claude-turns N] [--failover-rounds N] [--failover-sessions K] [--creates N]",
                        BENCHES.join(",")
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?} (try --help)"),
            }
        }
        if o.quick {
            o.throughput_mb = o.throughput_mb.min(100);
            o.runs = 2;
            o.restart_n = 50;
            o.restart_daemon_n = 20;
            o.idle_secs = 5;
            o.list_n = 100;
            o.events_n = 100;
            o.fanin_secs = o.fanin_secs.min(5);
            o.claude_runs = 5;
            o.claude_mem_n = 3;
            o.failover_rounds = o.failover_rounds.min(2);
            o.creates_n = o.creates_n.min(150);
        }
        if let Some(n) = rounds {
            o.runs = n;
        }
        if let Some(n) = claude_runs {
            if n == 0 {
                bail!("--claude-runs 0: must be at least 1");
            }
            o.claude_runs = n;
        }
        if o.claude_turns == 0 {
            bail!("--claude-turns 0: must be at least 1");
        }
        Ok(o)
    }

    fn wants(&self, bench: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|b| b == bench)
    }
}

/// A count that must be at least 1: `flag`'s value parsed.
fn positive(flag: &str, v: &str) -> Result<usize> {
    match v.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => bail!("{flag} {v:?}: expected a whole number of at least 1"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Internal: the steady writer of the fan-in benchmark.
    if args.first().map(String::as_str) == Some("--generate") {
        let r = (|| -> Result<()> {
            let [_, rate, secs, report] = &args[..] else {
                bail!("--generate RATE SECS REPORT");
            };
            fanin::generate(rate.parse()?, secs.parse()?, report.as_ref())
        })();
        return match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("generator: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    util::become_subreaper();
    let (before, after) = util::raise_nofile();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ok = rt.block_on(run(opts, (before, after)));
    drop(rt);
    let left = util::final_sweep();
    if left > 0 {
        eprintln!("bench: killed {left} processes left at the end");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the selected parts and prints the results; false if a part failed.
async fn run(opts: Opts, nofile: (u64, u64)) -> bool {
    util::install_signal_reaper();
    let machine = util::Machine::read();
    let started = std::time::SystemTime::now();
    eprintln!(
        "bench: {} x {}, {:.1} GiB, kernel {}; load {}; RLIMIT_NOFILE raised {} -> {}{}",
        machine.nproc,
        machine.cpu_model,
        machine.mem_gib,
        machine.kernel,
        util::loadavg(),
        nofile.0,
        nofile.1,
        if opts.quick { "; --quick" } else { "" }
    );
    let herd = match daemon::herd_binary(opts.herd.clone()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("bench: {e:#}");
            return false;
        }
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut parts: Vec<serde_json::Value> = Vec::new();
    let mut ok = true;
    let t_all = Instant::now();
    for bench in BENCHES {
        if !opts.wants(bench) {
            continue;
        }
        let load_before = util::loadavg();
        let busy = util::machine_busy(std::time::Duration::from_secs(1)).await;
        eprintln!(
            "== {bench} (load {load_before}; machine {busy:.0} % busy with other work over 1s)"
        );
        let t = Instant::now();
        let r = match bench {
            "throughput" => throughput::run(&herd, &opts, &mut rows).await,
            "spawn" => spawn::run(&herd, &opts, &mut rows).await,
            "restart" => restart::run(&herd, &opts, &mut rows).await,
            "scale" => scale::run(&herd, &opts, &mut rows).await,
            "recovery" => recovery::run(&herd, &opts, &mut rows).await,
            "fanin" => fanin::run(&herd, &opts, &mut rows).await,
            "claude" => claude::run(&herd, &opts, &mut rows).await,
            "cluster-attach" => cluster::attach::run(&herd, &opts, &mut rows).await,
            "cluster-failover" => cluster::failover::run(&herd, &opts, &mut rows).await,
            "cluster-creates" => cluster::creates::run(&herd, &opts, &mut rows).await,
            _ => unreachable!("BENCHES lists every part"),
        };
        if let Err(e) = r {
            ok = false;
            eprintln!("== {bench}: FAILED: {e:#}");
            let mut row = Row::new(bench, "error").note(format!("{e:#}"));
            row.verdict = Verdict::Miss;
            rows.push(row);
        }
        // Whatever the part left (it should be nothing) goes now.
        let stray = util::final_sweep();
        if stray > 0 {
            eprintln!("== {bench}: killed {stray} stray processes");
            util::LEFTOVERS.fetch_add(stray, std::sync::atomic::Ordering::Relaxed);
        }
        eprintln!("== {bench} done in {:.0}s", t.elapsed().as_secs_f64());
        parts.push(serde_json::json!({
            "name": bench,
            "load_before": load_before,
            "busy_before_percent": busy,
            "load_after": util::loadavg(),
            "seconds": t.elapsed().as_secs_f64(),
        }));
    }
    let left = util::LEFTOVERS.load(std::sync::atomic::Ordering::Relaxed);
    rows.push(
        Row::new("cleanup", "processes outliving a daemon's graceful stop")
            .herd(left.to_string())
            .value(left as f64, "")
            .target("0", left == 0)
            .note("descendants of each daemon still alive after it exited on SIGTERM (the bench kills them)"),
    );
    let elapsed = t_all.elapsed().as_secs_f64();
    if opts.json {
        let doc = serde_json::json!({
            "machine": machine,
            "started_at": humantime::format_rfc3339_seconds(started).to_string(),
            "seconds": elapsed,
            "quick": opts.quick,
            "load_at_end": util::loadavg(),
            "rlimit_nofile": {"before": nofile.0, "after": nofile.1},
            "parts": parts,
            "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if opts.markdown {
        print!("{}", report::markdown(&rows));
    } else {
        println!(
            "herd bench: {} x {}, {:.1} GiB, kernel {}; {:.0}s; load at end {}{}\n",
            machine.nproc,
            machine.cpu_model,
            machine.mem_gib,
            machine.kernel,
            elapsed,
            util::loadavg(),
            if opts.quick { " (--quick)" } else { "" }
        );
        print!("{}", report::table(&rows));
        println!(
            "\nper part: CPU busy with other work just before it (1s, % of all cores), \
             load (1/5/15 min) before and after (the bench's own processes count in the load):"
        );
        for p in &parts {
            println!(
                "  {:<10} {:>4.0}s  busy {:>3.0} %  load before {}  after {}",
                p["name"].as_str().unwrap_or(""),
                p["seconds"].as_f64().unwrap_or(0.0),
                p["busy_before_percent"].as_f64().unwrap_or(0.0),
                p["load_before"].as_str().unwrap_or(""),
                p["load_after"].as_str().unwrap_or("")
            );
        }
    }
    ok
}
