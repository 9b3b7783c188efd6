//! A real etcd for the cluster tests: started on free loopback ports in a
//! temp dir, waited for (`/health`), killed by PID.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A real etcd on free loopback ports, killed by PID when dropped.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client: u16,
    peer: u16,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

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
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--name", "default"])
            .args(["--listen-client-urls", &self.url()])
            .args(["--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("etcd.log"))
                    .unwrap(),
            )
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
        let http = reqwest::Client::new();
        let health = format!("{}/health", self.url());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = match http.get(&health).send().await {
                Ok(r) => r.text().await.unwrap_or_default().contains("\"true\""),
                Err(_) => false,
            };
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy (port {c})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process (by PID, resumed first if it was stopped) and
    /// waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
            let _ = c.kill();
            let _ = c.wait();
        }
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
        let r = reqwest::Client::new()
            .post(format!("{}/v3/kv/{op}", self.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "etcd {op}: {}", r.status());
        r.json().await.unwrap()
    }

    /// The value of `key`, if it exists.
    pub async fn get(&self, key: &str) -> Option<String> {
        let v = self
            .call("range", serde_json::json!({"key": b64(key.as_bytes())}))
            .await;
        let kv = v["kvs"].as_array()?.first()?.clone();
        Some(String::from_utf8_lossy(&unb64(kv["value"].as_str().unwrap_or(""))).into_owned())
    }

    /// The keys under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        // The range end of a prefix: its last byte plus one.
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let v = self
            .call(
                "range",
                serde_json::json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end), "keys_only": true}),
            )
            .await;
        v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| {
                        String::from_utf8_lossy(&unb64(kv["key"].as_str().unwrap_or("")))
                            .into_owned()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
