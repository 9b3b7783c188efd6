//! A job runner on herd's HTTP API: each task of a file gets a session of
//! its own, is asked its prompt, and its reply (with the turn's token usage)
//! is written to a result file. Failures are retried by policy: rate limits,
//! API errors and sessions that ended under a prompt are tried again with
//! exponential backoff; a spent budget, a missing login or a full context are
//! not. Kill it at any moment (kill -9 included) and start it again: it
//! continues where it stopped, with no second session for a task and no
//! prompt typed twice.
//!
//! ```text
//! cargo run --example jobs -- tasks.jsonl [--url URL] [--state STATE_FILE] [--out DIR]
//! ```
//!
//! The tasks file is JSON lines, one task per line, or TOML with `[[task]]`
//! tables (a `.toml` name):
//!
//! ```text
//! {"id": "fix-42", "prompt": "Fix issue 42", "cwd": "repo", "budget": {"tokens": 200000}}
//! {"id": "doc-7", "prompt": "Document the parser", "max_attempts": 5}
//! ```
//!
//! Fields: `id` (the session's `task_id`: letters, digits, `.`, `_`, `-`),
//! `prompt`, and optionally `cwd` (relative to the file), `profile`
//! (`claude` unless given), `template`, `budget`, `max_attempts`, and
//! `session` (further fields of `POST /v1/sessions`).
//!
//! The daemon is `--url` / `HERD_URL`, else the one whose data dir
//! (`--data-dir` / `HERD_HOME`, else `~/.local/share/herd`) holds a `url`
//! file, else `http://127.0.0.1:7777`; the token is `HERD_TOKEN`, else the
//! data dir's `token` file. It prints one line per step; exit status 0 when
//! every task is done, 1 when some failed, 2 when it could not start, 3 when
//! it stopped with tasks left (run it again to continue).

mod client;
mod policy;
mod runner;
mod state;
mod tasks;

use anyhow::{Context, Result};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

/// Runs the tasks of a file in herd sessions, restart-safe.
#[derive(Parser, Debug)]
#[command(name = "jobs")]
struct Args {
    /// The tasks: JSON lines, or TOML (`[[task]]`) for a `.toml` file.
    file: PathBuf,
    /// The daemon's URL.
    #[arg(long, env = "HERD_URL")]
    url: Option<String>,
    /// The daemon's data dir (for its `url` and `token` files).
    #[arg(long, env = "HERD_HOME")]
    data_dir: Option<PathBuf>,
    /// The runner's state file [default: FILE.state.json].
    #[arg(long)]
    state: Option<PathBuf>,
    /// Where results go, one `<task>.json` each [default: FILE.results/].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tasks run at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    parallel: u32,
    /// Attempts per task, the first included (a task's `max_attempts` wins).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
    /// Wait before the second attempt, doubled for each further one.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    backoff: Duration,
    /// The longest wait between attempts.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    backoff_max: Duration,
    /// Failure kinds tried again (the message's `failure.kind`, or
    /// `interrupted`, `cancelled`, `lost`, `timeout`).
    #[arg(long, value_delimiter = ',', default_value = policy::DEFAULT_RETRY_ON)]
    retry_on: Vec<String>,
    /// How long one attempt waits for its reply.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// How often a pending prompt is looked at.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    poll: Duration,
    /// How long a daemon that does not answer is waited for.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    patience: Duration,
    /// Leave each task's session running once the task ended.
    #[arg(long)]
    keep_sessions: bool,
}

fn data_dir(args: &Args) -> Option<PathBuf> {
    args.data_dir
        .clone()
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/herd")))
}

fn beside(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn setup(args: &Args) -> Result<(Vec<tasks::Task>, runner::Runner)> {
    let tasks = tasks::load(&args.file)?;
    let dir = data_dir(args);
    let url = match (&args.url, &dir) {
        (Some(u), _) => u.clone(),
        (None, Some(d)) => std::fs::read_to_string(d.join("url"))
            .map(|u| u.trim().to_string())
            .unwrap_or_else(|_| "http://127.0.0.1:7777".into()),
        (None, None) => "http://127.0.0.1:7777".into(),
    };
    let token = match std::env::var("HERD_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => {
            let path = dir
                .map(|d| d.join("token"))
                .context("no HERD_TOKEN and no data dir to find the token in")?;
            std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "reading the token from {} (or set HERD_TOKEN)",
                        path.display()
                    )
                })?
                .trim()
                .to_string()
        }
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| beside(&args.file, ".results"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let state_path = args
        .state
        .clone()
        .unwrap_or_else(|| beside(&args.file, ".state.json"));
    let runner = runner::Runner {
        api: client::Api::new(&url, token, args.patience)?,
        state: state::StateFile::open(&state_path)?,
        policy: policy::Policy {
            max_attempts: args.max_attempts,
            backoff: args.backoff,
            backoff_max: args.backoff_max.max(args.backoff),
            retry_on: args.retry_on.iter().map(|k| k.trim().to_string()).collect(),
        },
        out,
        timeout: args.timeout,
        poll: args.poll,
        keep_sessions: args.keep_sessions,
        total: tasks.len(),
        done: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    };
    println!(
        "jobs: {} tasks from {}, daemon {url}, state {}, results in {}",
        tasks.len(),
        args.file.display(),
        state_path.display(),
        runner.out.display()
    );
    Ok((tasks, runner))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let (tasks, runner) = match setup(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("jobs: {e:#}");
            std::process::exit(2);
        }
    };
    let runner = Arc::new(runner);
    let slots = Arc::new(tokio::sync::Semaphore::new(args.parallel as usize));
    let mut set = tokio::task::JoinSet::new();
    for task in tasks {
        let (runner, slots) = (runner.clone(), slots.clone());
        set.spawn(async move {
            // Never closed: acquiring cannot fail.
            let _slot = slots.acquire_owned().await;
            let r = runner.run(&task).await;
            (task.id, r)
        });
    }
    let (mut done, mut failed, mut stuck) = (0, 0, 0);
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((_, Ok(state::Status::Done))) => done += 1,
            Ok((_, Ok(_))) => failed += 1,
            Ok((id, Err(e))) => {
                stuck += 1;
                eprintln!("jobs: {id}: stopped, left for the next run: {e:#}");
            }
            Err(e) => {
                stuck += 1;
                eprintln!("jobs: a task panicked: {e}");
            }
        }
    }
    println!(
        "jobs: {} tasks: {done} done, {failed} failed, {stuck} left",
        runner.total
    );
    std::process::exit(if stuck > 0 {
        3
    } else if failed > 0 {
        1
    } else {
        0
    });
}
