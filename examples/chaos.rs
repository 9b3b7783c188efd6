//! herd's fault suite: injects faults into a real daemon and counts what
//! was lost, duplicated or left running. (Over 600 lines: one scenario per
//! function, each short; splitting them would scatter one table.)
//!
//! ```text
//! cargo run --release --example chaos            # every scenario (~2-3 min)
//! cargo run --release --example chaos -- --only kill9,escape
//! ```
//!
//! Scenarios: `kill9` (20 daemon kill -9 in a row under load), `storm`
//! (child kill storms), `sigstop` (SIGSTOP of the daemon), `escape` (double
//! forks with setsid, a fork storm of detached processes), `disk` (a full
//! disk on a small tmpfs; needs root, skipped with a message otherwise),
//! `fds` (descriptor exhaustion), `slow` (a slow-client flood while
//! `/healthz` is timed), `corrupt` (a damaged store).
//!
//! It prints a table: faults injected, survived, sessions and messages
//! lost, duplicated, processes escaped, and notes. Every daemon it starts
//! is stopped by pid at the end of its scenario; every session process by
//! its daemon (and checked by the session's marker in the environment).
//! The daemon is this tree's `herd`, built first (`--herd PATH` to pick one).

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One line of the table.
#[derive(Default)]
struct Row {
    scenario: &'static str,
    faults: usize,
    survived: bool,
    sessions_lost: usize,
    messages_lost: usize,
    duplicated: usize,
    escaped: usize,
    note: String,
}

/// A daemon on port 0 in a temp dir; killed by pid when dropped.
struct Daemon {
    bin: PathBuf,
    child: Child,
    dir: PathBuf,
    config: String,
    url: String,
    token: String,
    http: reqwest::Client,
    nofile: Option<u64>,
}

impl Daemon {
    async fn start(bin: &Path, dir: &Path, config: &str, nofile: Option<u64>) -> Result<Self> {
        std::fs::create_dir_all(dir.join("data"))?;
        let child = spawn(bin, dir, config, nofile)?;
        let mut d = Self {
            bin: bin.to_path_buf(),
            child,
            dir: dir.to_path_buf(),
            config: config.to_string(),
            url: String::new(),
            token: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            nofile,
        };
        d.wait_ready().await?;
        Ok(d)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let data = self.dir.join("data");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let (Ok(url), Ok(token)) = (
                std::fs::read_to_string(data.join("url")),
                std::fs::read_to_string(data.join("token")),
            ) {
                self.url = url.trim().to_string();
                self.token = token.trim().to_string();
                if self
                    .http
                    .get(format!("{}/healthz", self.url))
                    .send()
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                bail!("the daemon exited at start: {st}: {}", tail.join(" / "));
            }
            if Instant::now() > deadline {
                bail!("the daemon did not start in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// kill -9, then a new daemon on the same data dir.
    async fn crash_and_restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.dir.join("data").join("url"));
        self.child = spawn(&self.bin, &self.dir, &self.config, self.nofile)?;
        self.wait_ready().await
    }

    async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn post(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.req(reqwest::Method::POST, path, Some(body)).await
    }

    async fn sessions(&self) -> Result<Vec<Value>> {
        let (_, v) = self
            .req(reqwest::Method::GET, "/v1/sessions?all=true", None)
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Stops the daemon (SIGTERM, 20 s, then SIGKILL): it stops its sessions.
    fn stop(&mut self) {
        signal(self.pid(), libc::SIGCONT);
        signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn spawn(bin: &Path, dir: &Path, config: &str, nofile: Option<u64>) -> Result<Child> {
    let cfg = dir.join("herd.toml");
    std::fs::write(&cfg, config)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))?;
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(n) = nofile {
        use std::os::unix::process::CommandExt;
        // SAFETY: only setrlimit (async-signal-safe) runs before exec.
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
    cmd.spawn().context("starting herd serve")
}

fn signal(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: kill has no memory-safety preconditions; the pid is ours.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Live processes carrying one of these session ids in their environment.
fn survivors(ids: &BTreeSet<String>) -> Vec<i32> {
    herd_actors::process::find_by_env("HERD_SESSION_ID")
        .into_iter()
        .filter(|(id, _)| ids.contains(id))
        .flat_map(|(_, p)| p)
        .collect()
}

/// Waits (up to `t`) until no process of `ids` is left; returns how many are.
async fn escaped_after(ids: &BTreeSet<String>, t: Duration) -> usize {
    let deadline = Instant::now() + t;
    loop {
        let left = survivors(ids);
        if left.is_empty() || Instant::now() > deadline {
            for p in &left {
                signal(*p, libc::SIGKILL);
            }
            return left.len();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids_of(list: &[Value]) -> BTreeSet<String> {
    list.iter()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect()
}

fn panicked(log: &str) -> bool {
    log.contains("panicked")
}

/// 20 daemon kill -9 in a row, each under a load of creates and messages:
/// every acknowledged session and message must be there after each restart,
/// once.
async fn kill9(bin: &Path, work: &Path) -> Result<Row> {
    let config = "[limits]\nmax_sessions = 1000\n[restart]\nbackoff_initial = \"10ms\"\n";
    let mut d = Daemon::start(bin, &work.join("kill9"), config, None).await?;
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let mut messages: BTreeMap<String, String> = BTreeMap::new();
    let mut row = Row {
        scenario: "kill -9 of the daemon under load (x20)",
        ..Default::default()
    };
    for round in 0..20 {
        // Load: creates and messages in flight while the daemon dies.
        let url = d.url.clone();
        let token = d.token.clone();
        let http = d.http.clone();
        let targets: Vec<String> = acked.keys().take(5).cloned().collect();
        let load = tokio::spawn(async move {
            let mut got = vec![];
            for i in 0..10 {
                let name = format!("r{round}-s{i}");
                let r = http
                    .post(format!("{url}/v1/sessions"))
                    .bearer_auth(&token)
                    .json(&json!({"command": ["cat"], "name": name}))
                    .send()
                    .await;
                if let Ok(r) = r {
                    if r.status().as_u16() == 201 {
                        if let Ok(v) = r.json::<Value>().await {
                            got.push(("s", v["id"].as_str().unwrap_or_default().to_string(), name));
                        }
                    }
                }
                if let Some(t) = targets.get(i % targets.len().max(1)) {
                    let r = http
                        .post(format!("{url}/v1/sessions/{t}/messages"))
                        .bearer_auth(&token)
                        .json(&json!({"text": format!("m-{round}-{i}")}))
                        .send()
                        .await;
                    if let Ok(r) = r {
                        if r.status().is_success() {
                            if let Ok(v) = r.json::<Value>().await {
                                got.push((
                                    "m",
                                    v["id"].as_str().unwrap_or_default().to_string(),
                                    t.clone(),
                                ));
                            }
                        }
                    }
                }
            }
            got
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        d.crash_and_restart().await?;
        row.faults += 1;
        for (kind, id, extra) in load.await.unwrap_or_default() {
            if kind == "s" {
                acked.insert(id, extra);
            } else {
                messages.insert(id, extra);
            }
        }
        let list = d.sessions().await?;
        let present = ids_of(&list);
        row.sessions_lost = acked.keys().filter(|id| !present.contains(*id)).count();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for s in &list {
            *names
                .entry(s["name"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
        row.duplicated = names.values().filter(|n| **n > 1).count();
    }
    let mut lost = 0;
    for (mid, sid) in &messages {
        let (_, q) = d
            .req(
                reqwest::Method::GET,
                &format!("/v1/sessions/{sid}/queue"),
                None,
            )
            .await?;
        let found = q
            .as_array()
            .is_some_and(|a| a.iter().any(|m| m["id"].as_str() == Some(mid)));
        if !found {
            lost += 1;
        }
    }
    row.messages_lost = lost;
    let ids = ids_of(&d.sessions().await?);
    d.stop();
    row.escaped = escaped_after(&ids, Duration::from_secs(10)).await;
    row.survived = !panicked(&d.log());
    row.note = format!(
        "{} sessions, {} messages acknowledged",
        acked.len(),
        messages.len()
    );
    Ok(row)
}

/// SIGKILL storms on children with restart policy always.
async fn storm(bin: &Path, work: &Path) -> Result<Row> {
    let config = "[limits]\nmax_sessions = 100\n[restart]\npolicy = \"always\"\nmax_restarts = 1000\nbackoff_initial = \"10ms\"\nbackoff_max = \"100ms\"\n";
    let mut d = Daemon::start(bin, &work.join("storm"), config, None).await?;
    let mut ids = BTreeSet::new();
    for _ in 0..20 {
        let (st, v) = d
            .post(
                "/v1/sessions",
                json!({"command": ["sh", "-c", "sleep 600 & sleep 600"]}),
            )
            .await?;
        if st == 201 {
            ids.insert(v["id"].as_str().unwrap_or_default().to_string());
        }
    }
    let mut faults = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for p in survivors(&ids) {
            signal(p, libc::SIGKILL);
            faults += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = d.sessions().await?;
    let alive = list
        .iter()
        .filter(|s| !matches!(s["state"].as_str(), Some("stopped" | "failed")))
        .count();
    let ok = d
        .http
        .get(format!("{}/healthz", d.url))
        .send()
        .await
        .is_ok();
    d.stop();
    Ok(Row {
        scenario: "child SIGKILL storm, 20 sessions, 10 s",
        faults,
        survived: ok && !panicked(&d.log()),
        sessions_lost: ids.len() - ids_of(&list).intersection(&ids).count(),
        escaped: escaped_after(&ids, Duration::from_secs(10)).await,
        note: format!("{alive} of 20 sessions still running at the end"),
        ..Default::default()
    })
}

/// SIGSTOP of the daemon for 3 s, 3 times: it answers again after SIGCONT.
async fn sigstop(bin: &Path, work: &Path) -> Result<Row> {
    let mut d = Daemon::start(bin, &work.join("sigstop"), "", None).await?;
    let (_, v) = d.post("/v1/sessions", json!({"command": ["cat"]})).await?;
    let id = v["id"].as_str().unwrap_or_default().to_string();
    let mut ok = true;
    for _ in 0..3 {
        signal(d.pid(), libc::SIGSTOP);
        tokio::time::sleep(Duration::from_secs(3)).await;
        signal(d.pid(), libc::SIGCONT);
        let (st, s) = d
            .req(reqwest::Method::GET, &format!("/v1/sessions/{id}"), None)
            .await?;
        ok &= st == 200 && s["state"] != "failed";
    }
    d.stop();
    Ok(Row {
        scenario: "SIGSTOP of the daemon, 3 s (x3)",
        faults: 3,
        survived: ok && !panicked(&d.log()),
        escaped: escaped_after(&BTreeSet::from([id]), Duration::from_secs(10)).await,
        ..Default::default()
    })
}

/// Sessions whose grandchildren double-fork with setsid, and a fork storm of
/// 200 detached processes: stopped, restarted, none may be left.
async fn escape(bin: &Path, work: &Path) -> Result<Row> {
    let config = "[limits]\nmax_sessions = 100\n";
    let mut d = Daemon::start(bin, &work.join("escape"), config, None).await?;
    let escaper = "for i in 1 2 3 4 5; do (setsid sh -c 'sleep 600' &); done; exec sleep 600";
    let storm =
        "i=0; while [ $i -lt 200 ]; do (setsid sleep 600 &); i=$((i+1)); done; exec sleep 600";
    let mut ids = BTreeSet::new();
    for i in 0..50 {
        let script = if i == 0 { storm } else { escaper };
        let (st, v) = d
            .post("/v1/sessions", json!({"command": ["sh", "-c", script]}))
            .await?;
        if st == 201 {
            ids.insert(v["id"].as_str().unwrap_or_default().to_string());
        }
    }
    // Every escaper ran (its processes exist) before the sessions end.
    let deadline = Instant::now() + Duration::from_secs(20);
    while survivors(&ids).len() < 49 * 6 + 201 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = survivors(&ids).len();
    // Half restarted, then all stopped.
    for id in ids.iter().take(25) {
        d.post(&format!("/v1/sessions/{id}/restart"), json!({}))
            .await?;
    }
    for id in &ids {
        d.req(
            reqwest::Method::DELETE,
            &format!("/v1/sessions/{id}?force=true"),
            None,
        )
        .await?;
    }
    let escaped = escaped_after(&ids, Duration::from_secs(20)).await;
    d.stop();
    Ok(Row {
        scenario: "double fork + setsid (49 sessions x 5), fork storm (200)",
        faults: started,
        survived: !panicked(&d.log()),
        escaped,
        note: format!("{started} processes detached from their sessions"),
        ..Default::default()
    })
}

/// A full disk: the data dir on a 4 MiB tmpfs, filled.
async fn disk(bin: &Path, work: &Path) -> Result<Row> {
    let mut row = Row {
        scenario: "disk full (4 MiB tmpfs)",
        ..Default::default()
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        row.note = "SKIPPED: mounting a tmpfs needs root".into();
        eprintln!("chaos: disk: {}", row.note);
        return Ok(row);
    }
    let dir = work.join("disk");
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
        .arg(&data)
        .status();
    if !st.is_ok_and(|s| s.success()) {
        row.note = "SKIPPED: cannot mount a tmpfs here".into();
        eprintln!("chaos: disk: {}", row.note);
        return Ok(row);
    }
    let result = disk_inner(bin, &dir, &mut row).await;
    let _ = Command::new("umount").arg("-l").arg(&data).status();
    result?;
    Ok(row)
}

async fn disk_inner(bin: &Path, dir: &Path, row: &mut Row) -> Result<()> {
    let config = "[limits]\nmax_sessions = 500\n";
    let mut d = Daemon::start(bin, dir, config, None).await?;
    let mut acked = BTreeSet::new();
    let (_, v) = d
        .post(
            "/v1/sessions",
            json!({"command": ["sh", "-c", "while :; do echo tick; sleep 0.05; done"]}),
        )
        .await?;
    acked.insert(v["id"].as_str().unwrap_or_default().to_string());
    let filler = dir.join("data").join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler)?;
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&[0]).is_ok() {}
    }
    row.faults += 1;
    let mut refused = 0;
    for i in 0..300 {
        let (st, v) = d
            .post(
                "/v1/sessions",
                json!({"command": ["cat"], "name": format!("d{i}")}),
            )
            .await?;
        match st {
            201 => {
                acked.insert(v["id"].as_str().unwrap_or_default().to_string());
            }
            507 | 503 => {
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => bail!("unexpected {other}: {v}"),
        }
    }
    std::fs::remove_file(&filler)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, v) = d.post("/v1/sessions", json!({"command": ["cat"]})).await?;
        if st == 201 {
            acked.insert(v["id"].as_str().unwrap_or_default().to_string());
            break;
        }
        if Instant::now() > deadline {
            bail!("no recovery after space returned");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.crash_and_restart().await?;
    row.faults += 1;
    let present = ids_of(&d.sessions().await?);
    row.sessions_lost = acked.difference(&present).count();
    row.duplicated = present.difference(&acked).count();
    let ids = present;
    d.stop();
    row.escaped = escaped_after(&ids, Duration::from_secs(10)).await;
    row.survived = !panicked(&d.log());
    row.note = format!(
        "{refused} creates refused with 507/503, {} acknowledged",
        acked.len()
    );
    Ok(())
}

/// Descriptor exhaustion: a daemon with 256 descriptors, 400 idle clients.
async fn fds(bin: &Path, work: &Path) -> Result<Row> {
    let config = "[server]\nheader_timeout = \"30s\"\n";
    let mut d = Daemon::start(bin, &work.join("fds"), config, Some(256)).await?;
    let addr = d.url.trim_start_matches("http://").to_string();
    let mut held = vec![];
    for _ in 0..400 {
        if let Ok(s) = tokio::net::TcpStream::connect(&addr).await {
            held.push(s);
        }
    }
    let t = Instant::now();
    let r = d.http.get(format!("{}/healthz", d.url)).send().await;
    let answered = r.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
    let took = t.elapsed();
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut recovered = false;
    while Instant::now() < deadline {
        if let Ok(r) = d.http.get(format!("{}/healthz", d.url)).send().await {
            if r.status().as_u16() == 200 {
                recovered = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.stop();
    Ok(Row {
        scenario: "descriptor exhaustion (256 fds, 400 clients)",
        faults: 1,
        survived: answered != 0 && recovered && !panicked(&d.log()),
        note: format!(
            "answered {answered} in {} ms while exhausted; recovered: {recovered}",
            took.as_millis()
        ),
        ..Default::default()
    })
}

/// 600 slow clients (half a header each) against max_connections = 256,
/// while `/healthz` is timed on fresh connections.
async fn slow(bin: &Path, work: &Path) -> Result<Row> {
    let config = "[server]\nmax_connections = 256\nheader_timeout = \"10s\"\n";
    let mut d = Daemon::start(bin, &work.join("slow"), config, None).await?;
    let addr = d.url.trim_start_matches("http://").to_string();
    let mut flood = vec![];
    for _ in 0..600 {
        use tokio::io::AsyncWriteExt;
        if let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").await;
            flood.push(s);
        }
    }
    let mut worst = Duration::ZERO;
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        let t = Instant::now();
        let st = client
            .get(format!("{}/healthz", d.url))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        worst = worst.max(t.elapsed());
        *statuses.entry(st).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(flood);
    d.stop();
    let ok = statuses.keys().all(|s| *s == 200) && worst < Duration::from_millis(100);
    Ok(Row {
        scenario: "slow-client flood (600 vs 256 slots)",
        faults: 600,
        survived: ok && !panicked(&d.log()),
        note: format!(
            "/healthz worst {} ms, answers {statuses:?}",
            worst.as_millis()
        ),
        ..Default::default()
    })
}

/// A damaged store: refused at start, not a byte changed.
async fn corrupt(bin: &Path, work: &Path) -> Result<Row> {
    let dir = work.join("corrupt");
    let mut d = Daemon::start(bin, &dir, "[limits]\nmax_sessions = 200\n", None).await?;
    for i in 0..60 {
        d.post("/v1/sessions", json!({"command": ["true"], "name": format!("c{i}-{}", "x".repeat(200)), "restart": {"policy": "never"}}))
            .await?;
    }
    d.stop();
    let db = dir.join("data").join("herd.db");
    let _ = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c=sqlite3.connect({:?}); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()",
            db.display().to_string()
        ))
        .status();
    let mut bytes = std::fs::read(&db)?;
    let page = (bytes.len() / 4096).saturating_sub(3) * 4096;
    for b in bytes.iter_mut().skip(page).take(512) {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes)?;
    let before = std::fs::read(&db)?;
    let mut child = spawn(bin, &dir, "", None)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut refused = false;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            refused = !st.success();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let untouched = std::fs::read(&db)? == before;
    let said = std::fs::read_to_string(dir.join("daemon.log"))
        .unwrap_or_default()
        .contains("damaged");
    Ok(Row {
        scenario: "store damaged deep in the file",
        faults: 1,
        survived: refused && untouched && said,
        note: format!(
            "refused: {refused}, file untouched: {untouched}, message names the damage: {said}"
        ),
        ..Default::default()
    })
}

fn herd_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("unexpected location {}", exe.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("chaos: building the daemon (cargo build --release --bin herd)");
    let st = Command::new(cargo)
        .args(["build", "--release", "--bin", "herd", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .status()?;
    if !st.success() {
        bail!("building herd failed");
    }
    Ok(release.join("herd"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut only: Option<Vec<String>> = None;
    let mut given = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--only" => {
                only = args
                    .next()
                    .map(|s| s.split(',').map(str::to_string).collect())
            }
            "--herd" => given = args.next().map(PathBuf::from),
            other => bail!("unknown argument {other:?} (--only a,b | --herd PATH)"),
        }
    }
    let bin = herd_binary(given)?;
    let work = tempfile::tempdir()?;
    let started = Instant::now();
    let mut rows = vec![];
    let all = [
        "kill9", "storm", "sigstop", "escape", "disk", "fds", "slow", "corrupt",
    ];
    for name in all {
        if only.as_ref().is_some_and(|o| !o.iter().any(|x| x == name)) {
            continue;
        }
        eprintln!("chaos: {name}");
        let w = work.path();
        let r = match name {
            "kill9" => kill9(&bin, w).await,
            "storm" => storm(&bin, w).await,
            "sigstop" => sigstop(&bin, w).await,
            "escape" => escape(&bin, w).await,
            "disk" => disk(&bin, w).await,
            "fds" => fds(&bin, w).await,
            "slow" => slow(&bin, w).await,
            _ => corrupt(&bin, w).await,
        };
        rows.push(r.unwrap_or_else(|e| Row {
            scenario: "(error)",
            note: format!("{name}: {e:#}"),
            ..Default::default()
        }));
    }
    println!("| scenario | faults injected | survived | sessions lost | messages lost | duplicated | processes escaped | notes |");
    println!("|---|---:|---|---:|---:|---:|---:|---|");
    let mut bad = false;
    for r in &rows {
        let skipped = r.note.starts_with("SKIPPED");
        bad |= !skipped
            && (!r.survived || r.sessions_lost + r.messages_lost + r.duplicated + r.escaped > 0);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.faults,
            if skipped {
                "skipped"
            } else if r.survived {
                "yes"
            } else {
                "NO"
            },
            r.sessions_lost,
            r.messages_lost,
            r.duplicated,
            r.escaped,
            r.note
        );
    }
    eprintln!("chaos: done in {:.0} s", started.elapsed().as_secs_f64());
    if bad {
        bail!("a fault was not survived, or something was lost, duplicated or escaped");
    }
    Ok(())
}
