//! Test helpers: a real `herd serve` child process on port 0 in a temp data dir.
#![allow(dead_code)]

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod etcd;
pub mod harness;
pub mod webhooks;

/// Path of the built `herd` binary.
pub fn herd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herd")
}

/// A free loopback TCP port for a child that binds it itself (etcd,
/// chromedriver). It lies below the kernel's ephemeral range, so no
/// outgoing connection (an etcd member dialling its peers, say) can take it
/// as its source port between this pick and the child's bind.
pub fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (low.saturating_sub(12_000).max(1024), low);
    // Start at a per-process point so concurrent test binaries spread out.
    let span = u32::from(to - from);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761) ^ nanos;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    for _ in 0..span {
        let step = NEXT.fetch_add(7919, std::sync::atomic::Ordering::Relaxed);
        let port = from + ((seed.wrapping_add(step)) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {from}..{to}");
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until<F: FnMut() -> bool>(timeout: Duration, mut cond: F) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the async condition `f` every 50 ms until it holds or `timeout` passes.
pub async fn poll<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running daemon, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Daemon {
    /// Starts `herd serve` with the given config text (may be empty).
    pub async fn start(config: &str) -> Daemon {
        Self::start_in(tempfile::tempdir().expect("temp dir"), config).await
    }

    /// Starts `herd serve` on an existing directory (a previous daemon's), so
    /// it finds that daemon's store.
    pub async fn start_in(dir: tempfile::TempDir, config: &str) -> Daemon {
        Self::start_logged(dir, config, "warn").await
    }

    /// Like [`Self::start_in`] with a `RUST_LOG` level; the daemon's log goes
    /// to `<dir>/daemon.log` (see [`Self::log`]).
    pub async fn start_logged(dir: tempfile::TempDir, config: &str, level: &str) -> Daemon {
        Self::start_full(dir, config, level, &[], None).await
    }

    /// Starts `herd serve` with a hard limit of `nofile` open files.
    pub async fn start_nofile(config: &str, nofile: u64) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_full(dir, config, "warn", &[], Some(nofile)).await
    }

    /// Starts `herd serve` with extra variables in the daemon's environment.
    pub async fn start_env(config: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_full(dir, config, "warn", env, None).await
    }

    async fn start_full(
        dir: tempfile::TempDir,
        config: &str,
        level: &str,
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Daemon {
        let _ = std::fs::remove_file(dir.path().join("data").join("url"));
        let cfg_path = dir.path().join("herd.toml");
        std::fs::write(&cfg_path, config).expect("write config");
        let data = dir.path().join("data");
        let mut cmd = Command::new(herd_bin());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit (async-signal-safe) runs in the child before exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&cfg_path)
            .arg("--data-dir")
            .arg(&data)
            .env("RUST_LOG", level)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(append_log(&dir.path().join("daemon.log")))
            .spawn()
            .expect("spawn herd serve");
        let url_file = data.join("url");
        let mut d = Daemon {
            child,
            dir,
            url: String::new(),
            token: String::new(),
            http: reqwest::Client::new(),
        };
        let ok = wait_until(Duration::from_secs(20), || url_file.exists()).await;
        assert!(ok, "daemon did not write its url file");
        d.url = std::fs::read_to_string(&url_file)
            .expect("url")
            .trim()
            .to_string();
        // The daemon's token: its file, or the HERD_TOKEN it was given.
        d.token = match std::fs::read_to_string(data.join("token")) {
            Ok(t) => t.trim().to_string(),
            Err(e) => env
                .iter()
                .find(|(k, _)| *k == "HERD_TOKEN")
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| panic!("token: {e}")),
        };
        d
    }

    /// What the daemon(s) of this directory logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// An authenticated request; returns status and parsed JSON (Null if not JSON).
    pub async fn req(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.req(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.req(Method::POST, path, Some(body)).await
    }

    /// Sends `text` to session `id` and waits up to `timeout` (`30s`) for
    /// the answer (`POST …/messages?wait=true`), which must be a 200.
    pub async fn send_wait(&self, id: &str, text: &str, timeout: &str) -> Value {
        let (st, m) = self
            .post(
                &format!("/v1/sessions/{id}/messages?wait=true&timeout={timeout}"),
                serde_json::json!({ "text": text }),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{m}");
        m
    }

    /// Creates a session and returns its id.
    pub async fn create(&self, body: Value) -> String {
        let (st, v) = self.post("/v1/sessions", body).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        v["id"].as_str().expect("id").to_string()
    }

    /// One session's JSON.
    pub async fn session(&self, id: &str) -> Value {
        let (st, v) = self.get(&format!("/v1/sessions/{id}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v
    }

    /// Polls the session until `pred` holds; panics after `timeout`.
    pub async fn wait_session(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.session(id).await;
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on session {id}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls the session's queue until message `mid` is final; returns it.
    pub async fn wait_message(&self, id: &str, mid: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, q) = self.get(&format!("/v1/sessions/{id}/queue")).await;
            let found = q.as_array().into_iter().flatten().find(|m| {
                m["id"] == mid && !matches!(m["state"].as_str(), Some("queued" | "delivering"))
            });
            if let Some(m) = found {
                return m.clone();
            }
            assert!(Instant::now() < deadline, "message {mid} never ended: {q}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls the screen until it contains `text`.
    pub async fn wait_screen(&self, id: &str, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, v) = self.get(&format!("/v1/sessions/{id}/screen")).await;
            let screen = v["text"].as_str().unwrap_or_default().to_string();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {text:?}:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The session `id` as `GET /v1/sessions?all=true` lists it through
    /// this daemon (in a cluster: every node's, with its `node`).
    pub async fn listed(&self, id: &str) -> Option<Value> {
        let (st, v) = self.get("/v1/sessions?all=true").await;
        if st != StatusCode::OK {
            return None;
        }
        v.as_array()?.iter().find(|s| s["id"] == id).cloned()
    }

    /// Number of sessions in the table (all states).
    pub async fn count(&self) -> usize {
        let (_, v) = self.get("/v1/sessions?all=true").await;
        v.as_array().map(Vec::len).unwrap_or(0)
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(herd_bin())
            .args(args)
            .env("HERD_URL", &self.url)
            .env("HERD_TOKEN", &self.token)
            .env_remove("HERD_HOME")
            .stdin(Stdio::null())
            .output()
            .expect("run herd")
    }

    /// SIGKILLs the daemon (its sessions' processes are left behind, as in a crash).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the daemon (gracefully) and hands back its directory.
    pub fn into_dir(mut self) -> tempfile::TempDir {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// Stops the daemon gracefully and waits for it.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id() as i32;
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- daemon log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// True if the process exists and is not a zombie.
pub fn alive(pid: i64) -> bool {
    herd_actors::process::is_alive(pid as i32)
}

/// Writes a file and returns its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// The fields every session's JSON carries, `metrics` included.
pub fn assert_session_fields(v: &Value) {
    let fields = [
        "id",
        "name",
        "state",
        "pid",
        "generation",
        "restarts",
        "exit_code",
        "task_id",
        "project_id",
        "command",
        "cwd",
        "created_at",
    ];
    for field in fields {
        assert!(v.get(field).is_some(), "missing {field} in {v}");
    }
    for field in [
        "cpu_percent",
        "rss_bytes",
        "bytes_in",
        "bytes_out",
        "inputs",
    ] {
        assert!(
            v["metrics"].get(field).is_some(),
            "missing metrics.{field} in {v}"
        );
    }
}

impl Daemon {
    /// Everything a client or an operator can see of a session: its API
    /// answers, the daemon-wide views, the CLI's JSON, the daemon's log and
    /// the session's recordings (waiting for the first one to exist).
    pub async fn everything_visible(&self, id: &str) -> String {
        let mut seen = String::new();
        for path in [
            format!("/v1/sessions/{id}"),
            "/v1/sessions?all=true".to_string(),
            format!("/v1/sessions/{id}/events"),
            format!("/v1/sessions/{id}/queue"),
            "/v1/events".to_string(),
            "/v1/stats".to_string(),
        ] {
            seen.push_str(&self.get(&path).await.1.to_string());
        }
        for path in [
            format!("/v1/sessions/{id}/output"),
            format!("/v1/sessions/{id}/screen"),
            "/metrics".to_string(),
        ] {
            let r = self
                .http
                .get(format!("{}{path}", self.url))
                .bearer_auth(&self.token)
                .send()
                .await
                .expect("request");
            seen.push_str(&r.text().await.unwrap_or_default());
        }
        for args in [
            vec!["show", id, "--json"],
            vec!["ls", "--json"],
            vec!["events"],
        ] {
            seen.push_str(&String::from_utf8_lossy(&self.cli(&args).stdout));
        }
        seen.push_str(&self.log());
        let recordings = self.data_dir().join("recordings").join(id);
        let first = recordings.join("0.cast");
        assert!(
            wait_until(Duration::from_secs(20), || first.exists()).await,
            "no recording of {id}"
        );
        for f in std::fs::read_dir(&recordings)
            .into_iter()
            .flatten()
            .flatten()
        {
            seen.push_str(&String::from_utf8_lossy(
                &std::fs::read(f.path()).unwrap_or_default(),
            ));
        }
        seen
    }
}

/// A small tmpfs mounted for one test (a disk that can be filled), unmounted
/// (by its path) when dropped.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "4m") on `path` (created if absent);
    /// `None`, with a message saying the test is skipped, when not root or
    /// when mounting is not allowed here.
    pub fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).expect("mount point");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: mounting a small tmpfs to fill needs root");
            return None;
        }
        let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
        let target = c(path.to_str().expect("utf-8 path"));
        let opts = c(&format!("size={size},mode=0700"));
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::mount(
                c("tmpfs").as_ptr(),
                target.as_ptr(),
                c("tmpfs").as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        if r != 0 {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs on {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Fills the file system with one file until it is full; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let p = self.path.join("filler");
        let mut f = std::fs::File::create(&p).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        // The last partial chunk: byte by byte until nothing fits.
        while f.write_all(&[0]).is_ok() {}
        let _ = f.sync_all();
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.path.to_str().unwrap_or_default()) {
            // SAFETY: a valid NUL-terminated path; a lazy unmount of the mount we made.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// `sh -c script` in `dir` in an 80x24 PTY, as a user would run the CLI
/// against `d`: `HERD_BIN`, `HERD_URL` and `HERD_TOKEN` set, `HERD_HOME`
/// unset, plus `env`. The slave side is closed here, so the master reads EOF
/// when the script's processes are gone.
pub fn sh_in_pty(
    d: &Daemon,
    dir: &Path,
    script: &str,
    env: &[(&str, &str)],
) -> (
    Box<dyn portable_pty::MasterPty + Send>,
    Box<dyn portable_pty::Child + Send + Sync>,
) {
    use portable_pty::{native_pty_system, CommandBuilder, PtySize};
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new("sh");
    cmd.args(["-c", script]);
    cmd.cwd(dir);
    cmd.env("HERD_BIN", herd_bin());
    cmd.env("HERD_URL", &d.url);
    cmd.env("HERD_TOKEN", &d.token);
    cmd.env_remove("HERD_HOME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    (pair.master, child)
}

/// Reads `reader` (a PTY master's) on a thread of its own until EOF or an
/// error, appending everything to the returned buffer.
pub fn collect_output(
    mut reader: Box<dyn std::io::Read + Send>,
) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    seen
}

/// The stderr of a child process: `log`, created if need be and appended to.
pub fn append_log(log: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("log file {}: {e}", log.display()))
}

/// The first file named `name` under `dir`, searched depth first.
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}
