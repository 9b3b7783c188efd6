//! A real etcd for the cluster tests: started on free loopback ports in a
//! temp dir, waited for (`/health`), killed by PID. [`Etcd`] is one
//! member; [`EtcdCluster`] is several members forming one cluster.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A real etcd on free loopback ports, killed by PID when dropped.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client: u16,
    peer: u16,
}

use super::free_port;

impl Etcd {
    /// Starts etcd, or None (with a message) when it is not installed.
    pub async fn start() -> Option<Etcd> {
        if Command::new("etcd").arg("--version").output().is_err() {
            eprintln!("SKIPPED: the `etcd` binary is not installed (apt-get install etcd-server)");
            return None;
        }
        let mut e = Etcd {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            client: free_port(),
            peer: free_port(),
        };
        e.run().await;
        Some(e)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    /// (Re)starts the process on the same ports and data dir.
    pub async fn run(&mut self) {
        let (c, p) = (self.client, self.peer);
        let peer = format!("http://127.0.0.1:{p}");
        let child = spawn_member(
            &self.dir.path().join("data"),
            "default",
            &self.url(),
            &peer,
            &format!("default={peer}"),
            &self.dir.path().join("etcd.log"),
        );
        self.child = Some(child);
        assert!(
            wait_healthy(&self.url(), Duration::from_secs(30)).await,
            "etcd did not become healthy (port {c}); its log ends:\n{}",
            log_tail(&self.dir.path().join("etcd.log"))
        );
    }

    /// Kills the process (by PID, resumed first if it was stopped) and
    /// waits for it.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Etcd {
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
}

/// Kills an etcd process by PID (resumed first if it was stopped, so it
/// dies at once) and waits for it.
fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The last lines of an etcd log, for a failure message.
fn log_tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Base64 for etcd's JSON gateway (keys and values travel encoded).
pub fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The bytes of a base64 text.
pub fn unb64(text: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = vec![];
    for c in text.bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | A.iter().position(|a| *a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

impl Etcd {
    /// etcd's v3 JSON gateway: `op` (range, put, deleterange) with `body`.
    pub async fn call(&self, op: &str, body: serde_json::Value) -> serde_json::Value {
        call_at(&self.url(), op, body).await
    }

    /// The value of `key`, if it exists.
    pub async fn get(&self, key: &str) -> Option<String> {
        get_at(&self.url(), key).await
    }

    /// The keys under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        keys_at(&self.url(), prefix).await
    }
}

/// etcd's v3 JSON gateway at `url`: `op` (range, put, deleterange) with `body`.
async fn call_at(url: &str, op: &str, body: serde_json::Value) -> serde_json::Value {
    let r = reqwest::Client::new()
        .post(format!("{url}/v3/kv/{op}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "etcd {op}: {}", r.status());
    r.json().await.unwrap()
}

/// The value of `key` read through `url`, if it exists.
async fn get_at(url: &str, key: &str) -> Option<String> {
    let v = call_at(
        url,
        "range",
        serde_json::json!({"key": b64(key.as_bytes())}),
    )
    .await;
    let kv = v["kvs"].as_array()?.first()?.clone();
    Some(String::from_utf8_lossy(&unb64(kv["value"].as_str().unwrap_or(""))).into_owned())
}

/// The keys under `prefix`, read through `url`.
async fn keys_at(url: &str, prefix: &str) -> Vec<String> {
    // The range end of a prefix: its last byte plus one.
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let v = call_at(
        url,
        "range",
        serde_json::json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end), "keys_only": true}),
    )
    .await;
    v["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    String::from_utf8_lossy(&unb64(kv["key"].as_str().unwrap_or(""))).into_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until etcd at `url` says it is healthy (it has a leader).
async fn wait_healthy(url: &str, timeout: Duration) -> bool {
    let http = reqwest::Client::new();
    let health = format!("{url}/health");
    let deadline = Instant::now() + timeout;
    loop {
        let ok = match http
            .get(&health)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default().contains("\"true\""),
            Err(_) => false,
        };
        if ok {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One member of an [`EtcdCluster`].
struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

impl Member {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer)
    }
}

/// A real etcd cluster of several members on free loopback ports, each in
/// its own data dir under one temp dir; every member is killed by PID when
/// dropped (resumed first if it was stopped).
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until each is healthy, or None (with a
    /// message) when etcd is not installed. A cluster that does not form
    /// (a member that could not bind, say) is torn down and started again
    /// on fresh ports, up to three times, its members' logs printed.
    pub async fn start(n: usize) -> Option<EtcdCluster> {
        if Command::new("etcd").arg("--version").output().is_err() {
            eprintln!("SKIPPED: the `etcd` binary is not installed (apt-get install etcd-server)");
            return None;
        }
        let mut last = String::new();
        for attempt in 1..=3 {
            let members = (0..n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client: free_port(),
                    peer: free_port(),
                    child: None,
                })
                .collect();
            let mut c = EtcdCluster {
                members,
                dir: tempfile::tempdir().unwrap(),
            };
            for i in 0..n {
                c.spawn(i);
            }
            match c.unhealthy(Duration::from_secs(40)).await {
                None => return Some(c),
                Some(why) => {
                    eprintln!("etcd cluster attempt {attempt} did not form: {why}");
                    last = why;
                }
            }
        }
        panic!("an etcd cluster of {n} did not form in three attempts: {last}");
    }

    /// Starts every member that is not running, all at once (a member is
    /// healthy only once a quorum of its peers is up), and waits until each
    /// is healthy.
    pub async fn start_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn(i);
            }
        }
        self.wait_healthy().await;
    }

    /// Kills every member (by PID).
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Every member's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(Member::url).collect()
    }

    /// The process id of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<i32> {
        self.members[i].child.as_ref().map(|c| c.id() as i32)
    }

    fn spawn(&mut self, i: usize) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect();
        let data = self.dir.path().join(&self.members[i].name);
        let log = self
            .dir
            .path()
            .join(format!("{}.log", self.members[i].name));
        let m = &mut self.members[i];
        // The initial-cluster flags only matter the first time: a restart
        // finds its data dir and rejoins with its own identity.
        let child = spawn_member(
            &data,
            &m.name,
            &m.url(),
            &m.peer_url(),
            &initial.join(","),
            &log,
        );
        m.child = Some(child);
    }

    /// Which running member is not healthy within `timeout` (with the
    /// tail of its log), or None when all are.
    async fn unhealthy(&self, timeout: Duration) -> Option<String> {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_some() && !wait_healthy(&m.url(), timeout).await {
                let log = self.dir.path().join(format!("{}.log", m.name));
                return Some(format!(
                    "member {i} at {} is not healthy; its log ends:\n{}",
                    m.url(),
                    log_tail(&log)
                ));
            }
        }
        None
    }

    /// Kills member `i` with SIGKILL (by PID) and waits for it.
    pub fn kill(&mut self, i: usize) {
        kill_child(&mut self.members[i].child);
    }

    /// Starts member `i` again on its ports and data dir, and waits until
    /// it is healthy (back in the cluster, which has a leader).
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_healthy().await;
    }

    /// Sends `signal` to every running member (SIGSTOP, SIGCONT).
    pub fn signal_all(&self, signal: i32) {
        for i in 0..self.members.len() {
            if let Some(pid) = self.pid(i) {
                // SAFETY: as in `kill`.
                unsafe { libc::kill(pid, signal) };
            }
        }
    }

    /// Waits until every running member is healthy.
    pub async fn wait_healthy(&self) {
        if let Some(why) = self.unhealthy(Duration::from_secs(60)).await {
            panic!("etcd: {why}");
        }
    }

    /// The index of the current leader, as the running members say
    /// (`/v3/maintenance/status`: a member leads when its id is the leader).
    pub async fn leader(&self) -> Option<usize> {
        let http = reqwest::Client::new();
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let Ok(r) = http
                .post(format!("{}/v3/maintenance/status", m.url()))
                .json(&serde_json::json!({}))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            else {
                continue;
            };
            let Ok(v) = r.json::<serde_json::Value>().await else {
                continue;
            };
            if v["leader"].is_string() && v["header"]["member_id"] == v["leader"] {
                return Some(i);
            }
        }
        None
    }

    /// The value of `key`, read through the first running member.
    pub async fn get(&self, key: &str) -> Option<String> {
        get_at(&self.any_url(), key).await
    }

    /// The keys under `prefix`, read through the first running member.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        keys_at(&self.any_url(), prefix).await
    }

    fn any_url(&self) -> String {
        self.members
            .iter()
            .find(|m| m.child.is_some())
            .map(Member::url)
            .expect("a running etcd member")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Starts one etcd member on `client` and `peer` URLs, its data in `data`,
/// its output appended to `log`.
fn spawn_member(
    data: &std::path::Path,
    name: &str,
    client: &str,
    peer: &str,
    initial: &str,
    log: &std::path::Path,
) -> Child {
    Command::new("etcd")
        .arg("--data-dir")
        .arg(data)
        .args(["--name", name])
        .args(["--listen-client-urls", client])
        .args(["--advertise-client-urls", client])
        .args(["--listen-peer-urls", peer])
        .args(["--initial-advertise-peer-urls", peer])
        .args(["--initial-cluster", initial])
        .args(["--initial-cluster-state", "new"])
        .args(["--initial-cluster-token", "herd-test"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(super::append_log(log))
        .spawn()
        .expect("spawn etcd")
}
