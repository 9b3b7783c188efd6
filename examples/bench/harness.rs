//! The real Claude Code CLI, offline, through `../shared/claude-harness`:
//! its mock Messages API (started by `prepare.sh`, stopped by pid), the
//! environment and seeded HOME it runs the CLI with, and the baseline of the
//! `claude` part — the same CLI started bare in a portable-pty PTY.

use crate::bare::BareChild;
use crate::util;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The idle footer of the CLI (`? for shortcuts`) with every blank removed:
/// the CLI draws the spaces as cursor moves (`?\x1b[5Gfor\x1b[9Gshortcuts`).
pub const READY_MARK: &str = "?forshortcuts";
/// The busy footer (`esc to interrupt`), squashed likewise.
const BUSY_MARK: &str = "esctointerrupt";
/// The API key the CLI sends to the mock (approved in every seeded HOME).
pub const KEY: &str = "sk-bench-herd-0123456789abcdef";
/// Both sides leave a ready CLI idle this long before the prompt, so the
/// prompt meets a CLI done with its start-up work on either side.
pub const IDLE_BEFORE_PROMPT: Duration = Duration::from_secs(1);
/// Longest wait for the CLI to start or a turn to end.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// The bare CLI must be this quiet before a prompt goes in, as herd waits
/// `quiet_after` (500 ms by default) before it calls a screen ready.
const SETTLE: Duration = Duration::from_millis(500);

/// Where the harness and the installed CLI are, or why the part is skipped.
pub fn locate() -> std::result::Result<(PathBuf, PathBuf), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("../shared/claude-harness");
    if !dir.join("prepare.sh").is_file() {
        return Err(format!("{} is absent", dir.display()));
    }
    let prefix = std::env::var_os("CLAUDE_HARNESS_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/claude-npm"));
    if !prefix.join("node_modules/.bin/claude").is_file() {
        return Err(format!(
            "the Claude Code CLI is not installed under {} (CLAUDE_HARNESS_PREFIX; \
             `bash ../shared/claude-harness/install.sh` with that prefix, as .ci/run does)",
            prefix.display()
        ));
    }
    Ok((dir, prefix))
}

/// The mock API and its run dir; the mock is stopped (by pid) and the run
/// dir removed on drop.
pub struct Harness {
    vars: HashMap<String, String>,
    /// The CLI's environment (`CLAUDE_HARNESS_ENV`), HOME excluded: each
    /// bare run gets a fresh seeded HOME, as each herd session does.
    env: Vec<(String, String)>,
    /// The seeded `.claude.json`, before any CLI ran.
    seed: Vec<u8>,
    ticket: Option<u64>,
    homes: usize,
}

impl Harness {
    /// Runs `prepare.sh` with the mock answering at once.
    pub fn start(dir: &Path, prefix: &Path) -> Result<Harness> {
        let script = format!(
            "set -e; eval \"$(bash {:?} --first-delay-ms 0 --delay-ms 0)\"; env -0",
            dir.join("prepare.sh")
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("CLAUDE_HARNESS_PREFIX", prefix)
            .env("MOCK_API_KEY", KEY)
            .stdin(Stdio::null())
            .output()
            .context("running prepare.sh")?;
        let vars: HashMap<String, String> = out
            .stdout
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let mut h = Harness {
            ticket: None,
            env: Vec::new(),
            seed: Vec::new(),
            vars,
            homes: 0,
        };
        if let Ok(pid) = h.var("CLAUDE_HARNESS_MOCK_PID").parse::<i32>() {
            h.ticket = Some(util::register(pid, util::Reap::Group));
        }
        if !out.status.success() || h.ticket.is_none() {
            bail!(
                "prepare.sh failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        h.env = h
            .var("CLAUDE_HARNESS_ENV")
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| *k != "HOME")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let seeded = Path::new(h.var("HOME")).join(".claude.json");
        h.seed = std::fs::read(&seeded)
            .with_context(|| format!("reading the seeded {}", seeded.display()))?;
        Ok(h)
    }

    /// One of prepare.sh's variables ("" if absent).
    pub fn var(&self, k: &str) -> &str {
        self.vars.get(k).map(String::as_str).unwrap_or_default()
    }

    /// The CLI binary.
    pub fn bin(&self) -> PathBuf {
        PathBuf::from(self.var("CLAUDE_BIN"))
    }

    /// The pre-trusted folder the CLI runs in.
    pub fn work_dir(&self) -> PathBuf {
        PathBuf::from(self.var("CLAUDE_HARNESS_WORK_DIR"))
    }

    /// The environment of one bare run: the harness's, with a fresh HOME
    /// seeded exactly as prepare.sh seeds one.
    pub fn bare_env(&mut self) -> Result<Vec<(String, String)>> {
        self.homes += 1;
        let home = Path::new(self.var("CLAUDE_HARNESS_RUN_DIR"))
            .join(format!("bench-home-{}", self.homes));
        std::fs::create_dir_all(&home).with_context(|| format!("mkdir {}", home.display()))?;
        std::fs::write(home.join(".claude.json"), &self.seed).context("seeding a bare HOME")?;
        let mut env = self.env.clone();
        env.push(("HOME".into(), home.display().to_string()));
        Ok(env)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Ok(pid) = self.var("CLAUDE_HARNESS_MOCK_PID").parse::<i32>() {
            if pid > 1 {
                // SAFETY: kill has no memory-safety preconditions; the mock is
                // the process prepare.sh started and told us the pid of (the
                // bench is its subreaper, so the pid is not reused while it is
                // an unreaped zombie).
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        if let Some(t) = self.ticket.take() {
            util::forget(t);
        }
        let run = self.var("CLAUDE_HARNESS_RUN_DIR");
        if run.contains("claude-harness.") {
            let _ = std::fs::remove_dir_all(run);
        }
    }
}

/// Text with escape sequences and every blank removed, for markers.
pub fn squash(raw: &[u8]) -> String {
    String::from_utf8_lossy(&strip_ansi_escapes::strip(raw))
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// The reply the mock gives to `prompt`, squashed.
pub fn expected_reply(prompt: &str) -> String {
    let head: String = prompt.chars().take(40).collect();
    squash(format!("MOCK-REPLY: {head}").as_bytes())
}

/// Resident memory of a process and all its descendants, in bytes.
pub fn tree_rss(pid: i32) -> u64 {
    std::iter::once(pid)
        .chain(util::descendants(pid).into_iter().map(|(p, _)| p))
        .filter_map(util::rss_bytes)
        .sum()
}

/// What one bare run measured (milliseconds, bytes).
#[derive(Debug, Clone, Copy)]
pub struct BareRun {
    /// Spawn → the idle footer on screen.
    pub ready: f64,
    /// Prompt + `\r` written → the first output byte back.
    pub first_byte: f64,
    /// Prompt written → the reply and the idle footer on screen.
    pub reply: f64,
    /// RSS of the CLI's process tree after the turn.
    pub rss: u64,
}

/// The output of a bare child, read on its own thread.
struct Output {
    rx: Receiver<(Instant, Vec<u8>)>,
    raw: Vec<u8>,
}

impl Output {
    /// Reads until `done(squashed text since offset from)` holds; returns
    /// when the chunk that made it hold arrived.
    fn until(&mut self, from: usize, what: &str, done: impl Fn(&str) -> bool) -> Result<Instant> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, chunk) = match self.rx.recv_timeout(left) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) => bail!(
                    "bare CLI: no {what} within {STEP_TIMEOUT:?}; screen text: {}",
                    squash(&self.raw[from.min(self.raw.len())..])
                ),
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "bare CLI: its terminal closed before {what}: {}",
                    squash(&self.raw)
                ),
            };
            self.raw.extend_from_slice(&chunk);
            if done(&squash(&self.raw[from..])) {
                return Ok(at);
            }
        }
    }

    /// Reads until no output came for `quiet`.
    fn settle(&mut self, quiet: Duration) -> Result<()> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while Instant::now() < deadline {
            match self.rx.recv_timeout(quiet) {
                Ok((_, chunk)) => self.raw.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Timeout) => return Ok(()),
                Err(RecvTimeoutError::Disconnected) => bail!("bare CLI: its terminal closed"),
            }
        }
        bail!("bare CLI: output never settled")
    }
}

/// Starts the CLI bare in a PTY (fresh seeded HOME), waits for its idle
/// screen, sends `prompt`, times the first byte back and the reply; the
/// child's process group is killed on return.
pub fn bare_run(
    bin: &Path,
    env: &[(String, String)],
    work: &Path,
    prompt: &str,
) -> Result<BareRun> {
    let argv = [bin.display().to_string()];
    let t0 = Instant::now();
    let child = BareChild::spawn_env(&argv, env, work)?;
    let mut reader = child
        .master
        .try_clone_reader()
        .map_err(|e| anyhow!("reader: {e}"))?;
    let mut writer = child
        .master
        .take_writer()
        .map_err(|e| anyhow!("writer: {e}"))?;
    let (tx, rx) = mpsc::channel();
    // Ends at EIO once the child's process group is gone.
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
    let mut out = Output {
        rx,
        raw: Vec::new(),
    };
    let ready = out.until(0, "idle screen", |t| t.contains(READY_MARK))?;
    out.settle(SETTLE)?;
    std::thread::sleep(IDLE_BEFORE_PROMPT);
    // Whatever the CLI drew while idle is not an answer to the prompt.
    while let Ok((_, chunk)) = out.rx.try_recv() {
        out.raw.extend_from_slice(&chunk);
    }
    let mark = out.raw.len();
    let t_prompt = Instant::now();
    writer
        .write_all(format!("{prompt}\r").as_bytes())
        .context("writing the prompt")?;
    writer.flush().ok();
    let first = out.until(mark, "first byte after the prompt", |_| true)?;
    let want = expected_reply(prompt);
    // The reply is drawn, and the idle footer is back after the last busy one.
    let reply = out.until(mark, "reply", |t| {
        t.contains(&want) && t.rfind(READY_MARK) > t.rfind(BUSY_MARK)
    })?;
    let rss = tree_rss(child.pid());
    drop(writer);
    drop(child);
    Ok(BareRun {
        ready: util::ms(ready - t0),
        first_byte: util::ms(first - t_prompt),
        reply: util::ms(reply - t_prompt),
        rss,
    })
}
