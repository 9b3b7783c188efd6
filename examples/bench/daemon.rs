//! A real `herd serve` child process on port 0 in a temp data dir, as the
//! integration tests run it, with the HTTP and WebSocket calls the bench needs.

use crate::util;
use anyhow::{anyhow, bail, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket to the daemon.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Finds (and builds, unless given) the `herd` binary the daemon runs.
///
/// With `--herd PATH` (or `HERD_BENCH_BIN`) that binary is used as is.
/// Otherwise `cargo build --release --bin herd` runs first, so the daemon is
/// the code of this tree; if that fails (a tree in the middle of an edit),
/// an existing `target/release/herd` is used with a warning.
pub fn herd_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given.or_else(|| std::env::var_os("HERD_BENCH_BIN").map(PathBuf::from)) {
        if !p.is_file() {
            bail!("herd binary {} does not exist", p.display());
        }
        return Ok(p);
    }
    // target/release/examples/bench -> target/release/herd
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("unexpected bench location {}", exe.display()))?;
    let bin = release.join("herd");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("bench: building the daemon (cargo build --release --bin herd)");
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "herd", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            if bin.is_file() {
                eprintln!(
                    "bench: WARNING: building herd failed ({other:?}); using the existing {}",
                    bin.display()
                );
            } else {
                bail!(
                    "building herd failed ({other:?}) and no {} exists",
                    bin.display()
                );
            }
        }
    }
    Ok(bin)
}

/// A running daemon; stopped (SIGTERM, then SIGKILL) with every process it
/// started when dropped.
pub struct Daemon {
    child: Child,
    ticket: u64,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    token: String,
    /// Shared HTTP client (keep-alive).
    pub http: reqwest::Client,
}

impl Daemon {
    /// Starts `herd serve` with this config text (log level `warn`).
    pub async fn start(herd: &Path, config: &str) -> Result<Daemon> {
        Self::start_logged(herd, config, "warn").await
    }

    /// Starts `herd serve` with this config text and `RUST_LOG` filter; its
    /// log (stderr) is kept in the temp dir, see [`Daemon::log_text`].
    pub async fn start_logged(herd: &Path, config: &str, rust_log: &str) -> Result<Daemon> {
        let dir = tempfile::Builder::new()
            .prefix("herd-bench-")
            .tempdir()
            .context("temp dir")?;
        util::register_dir(dir.path());
        let cfg = dir.path().join("herd.toml");
        std::fs::write(&cfg, config).context("writing the daemon config")?;
        let child = spawn(herd, dir.path(), rust_log)?;
        let ticket = util::register(child.id() as i32, util::Reap::Tree);
        let mut d = Daemon {
            child,
            ticket,
            dir,
            url: String::new(),
            token: String::new(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .context("http client")?,
        };
        d.wait_listening().await?;
        Ok(d)
    }

    /// Waits until the daemon writes its URL (after recovery: it listens
    /// once every stored session is restored), then reads URL and token.
    async fn wait_listening(&mut self) -> Result<()> {
        let data = self.data_dir();
        let url_file = data.join("url");
        let deadline = Instant::now() + Duration::from_secs(120);
        while !url_file.exists() {
            if let Ok(Some(st)) = self.child.try_wait() {
                bail!("herd serve exited ({st}) at start:\n{}", self.log_tail(20));
            }
            if Instant::now() > deadline {
                bail!("herd serve did not start in 120s:\n{}", self.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.url = std::fs::read_to_string(&url_file)?.trim().to_string();
        self.token = std::fs::read_to_string(data.join("token"))?
            .trim()
            .to_string();
        Ok(())
    }

    /// A crash: SIGKILL to the daemon and to the process group of every
    /// session it ran (by pid, checked by start time), then a new daemon on
    /// the same data dir and config. Returns when the new one was spawned;
    /// it has written its URL (recovery done) when this returns.
    pub async fn crash_and_restart(&mut self, herd: &Path) -> Result<Instant> {
        let procs = util::descendants(self.pid());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for &(pid, start) in &procs {
            util::kill_group_if_same(pid, start);
        }
        let gone = Instant::now() + Duration::from_secs(30);
        while procs.iter().any(|&(p, s)| util::outlived(p, s)) {
            if Instant::now() > gone {
                bail!("processes of the killed daemon still run after 30s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        util::forget(self.ticket);
        // A daemon killed with -9 leaves its URL file behind.
        let _ = std::fs::remove_file(self.data_dir().join("url"));
        let t0 = Instant::now();
        self.child = spawn(herd, self.dir.path(), "warn")?;
        self.ticket = util::register(self.child.id() as i32, util::Reap::Tree);
        self.wait_listening().await?;
        Ok(t0)
    }

    /// A crash of the daemon alone: SIGKILL to it and nothing else, as a
    /// power loss of its process would; its sessions and helpers run on
    /// (re-parented to the bench) until something kills them. Returns them
    /// (pid, start time) as they were just before; the caller watches and
    /// kills them ([`Orphans`]).
    pub fn kill9(&mut self) -> Orphans {
        let procs = util::descendants(self.pid());
        let tickets = procs
            .iter()
            .map(|&(pid, _)| util::register(pid, util::Reap::Group))
            .collect();
        let _ = self.child.kill();
        let _ = self.child.wait();
        util::forget(self.ticket);
        Orphans { procs, tickets }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The API token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The daemon's whole log so far ("" if unreadable).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// The last lines of the daemon's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// An authenticated request: status and JSON body (Null if not JSON).
    pub async fn req(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.with_context(|| format!("request {path}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// GET that must succeed.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let (st, v) = self.req(Method::GET, path, None).await?;
        if !st.is_success() {
            bail!("GET {path}: {st} {v}");
        }
        Ok(v)
    }

    /// POST that must succeed.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let (st, v) = self.req(Method::POST, path, Some(body)).await?;
        if !st.is_success() {
            bail!("POST {path}: {st} {v}");
        }
        Ok(v)
    }

    /// Creates a session; returns its JSON.
    pub async fn create(&self, body: &Value) -> Result<Value> {
        let (st, v) = self.req(Method::POST, "/v1/sessions", Some(body)).await?;
        if st != StatusCode::CREATED {
            bail!("POST /v1/sessions: {st} {v}");
        }
        Ok(v)
    }

    /// One session.
    pub async fn session(&self, id: &str) -> Result<Value> {
        self.get(&format!("/v1/sessions/{id}")).await
    }

    /// Polls a session until `pred` holds.
    pub async fn wait_session(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.session(id).await?;
            if pred(&v) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting on session {id}: {v}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Opens a WebSocket on `path` (with its query).
    pub async fn ws(&self, path: &str) -> Result<Ws> {
        let url = format!("{}{path}", self.url.replacen("http://", "ws://", 1));
        let mut req = url.into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {}", self.token).parse()?);
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .with_context(|| format!("websocket {path}"))?;
        Ok(ws)
    }

    /// Stops the daemon gracefully (SIGTERM: it stops every session), then
    /// makes sure nothing it started is left; returns how many of its
    /// processes outlived it (and were killed here).
    pub async fn shutdown(&mut self) -> usize {
        let procs = util::descendants(self.pid());
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill_rest(&procs)
    }

    fn kill_rest(&mut self, procs: &[(i32, u64)]) -> usize {
        if let Ok(None) = self.child.try_wait() {
            eprintln!("bench: the daemon did not exit on SIGTERM; killing it");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let mut left = 0;
        for &(pid, start) in procs {
            if util::outlived(pid, start) {
                left += 1;
            }
            util::kill_group_if_same(pid, start);
        }
        util::forget(self.ticket);
        util::LEFTOVERS.fetch_add(left, std::sync::atomic::Ordering::Relaxed);
        left
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            util::forget(self.ticket);
            return;
        }
        let procs = util::descendants(self.pid());
        // SAFETY: as in `shutdown`.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_rest(&procs);
    }
}

/// `herd serve` on `dir/herd.toml` and `dir/data`, its log appended to
/// `dir/daemon.log`.
fn spawn(herd: &Path, dir: &Path, rust_log: &str) -> Result<Child> {
    let data = dir.join("data");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .context("daemon log")?;
    let mut cmd = Command::new(herd);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.join("herd.toml"))
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", rust_log)
        .env_remove("HERD_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child here.
    // If the bench dies without cleaning up, the daemon gets SIGTERM and
    // stops its sessions. (Spawned from the main thread, which lives as
    // long as the bench.)
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().context("spawning herd serve")
}

/// The config every bench daemon starts from: `max_sessions` raised, a short
/// stop grace so shutdown is quick; `extra` appends sections.
pub fn config(max_sessions: usize, recording: bool, extra: &str) -> String {
    format!(
        "[limits]\nmax_sessions = {max_sessions}\nstop_grace = \"1s\"\n\n\
         [recording]\nenabled = {recording}\ncompress = false\n\n{extra}\n"
    )
}

/// The recordings of one session under `<data>/recordings` (any layout that
/// names the session id in the path), sorted.
pub fn recordings_of(data: &Path, id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![data.join("recordings")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(id) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Whether the daemon wrote any recording file at all.
pub fn any_recording(data: &Path) -> bool {
    recordings_of(data, "").iter().any(|p| {
        let name = p.to_string_lossy();
        name.ends_with(".cast") || name.ends_with(".cast.zst")
    })
}

/// Total bytes of the `"o"` events of an asciicast v2 file (plain text).
pub fn cast_output_bytes(path: &Path) -> Result<u64> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    if path.to_string_lossy().ends_with(".zst") {
        bail!(
            "{} is compressed; the bench sets compress = false",
            path.display()
        );
    }
    let mut total = 0u64;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if i == 0 || line.trim().is_empty() {
            continue; // header
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))?;
        if v.get(1).and_then(Value::as_str) == Some("o") {
            total += v
                .get(2)
                .and_then(Value::as_str)
                .map_or(0, |s| s.len() as u64);
        }
    }
    Ok(total)
}

/// What a daemon killed with [`Daemon::kill9`] left running; every one
/// still alive is killed (process group, checked by start time) on drop.
pub struct Orphans {
    procs: Vec<(i32, u64)>,
    tickets: Vec<u64>,
}

impl Orphans {
    /// How many still run (zombies the bench inherited are reaped here).
    pub fn alive(&self) -> usize {
        self.procs
            .iter()
            .filter(|&&(pid, start)| util::outlived(pid, start))
            .count()
    }

    /// How many there were.
    pub fn total(&self) -> usize {
        self.procs.len()
    }
}

impl Drop for Orphans {
    fn drop(&mut self) {
        for &(pid, start) in &self.procs {
            util::kill_group_if_same(pid, start);
        }
        for &t in &self.tickets {
            util::forget(t);
        }
    }
}
