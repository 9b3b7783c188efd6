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
