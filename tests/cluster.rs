//! The cluster's membership against a real etcd (started here on free
//! loopback ports in a temp dir, stopped by PID): nodes join, are listed by
//! any node with labels and capacity, leave at once when stopped, after the
//! TTL when killed, a duplicate name is refused, and nodes register again
//! after etcd restarts. Needs `--features cluster` and the `etcd` binary
//! (Debian: etcd-server); without them these tests say they are skipped.

mod common;

use common::Daemon;

/// A daemon in no cluster lists itself, in every build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_alone_lists_itself() {
    let d = Daemon::start("[limits]\nmax_sessions = 7\n").await;
    let (status, v) = d.get("/v1/nodes").await;
    assert_eq!(status, 200, "{v}");
    assert!(v["cluster"].is_null(), "{v}");
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{v}");
    assert_eq!(nodes[0]["this"], true);
    assert_eq!(nodes[0]["capacity"], 7);
    assert_eq!(nodes[0]["health"], "live");
    assert_eq!(nodes[0]["advertise"], d.url.as_str());
    let out = d.cli(&["nodes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("not in a cluster"),
        "{text}"
    );
    let (_, health) = d.get("/healthz").await;
    assert!(health.get("cluster").is_none(), "{health}");
}

/// A build without the feature refuses `[cluster]` and `--etcd`, saying how
/// to get it, and starts nothing.
#[cfg(not(feature = "cluster"))]
#[test]
fn without_the_feature_a_cluster_is_refused() {
    eprintln!("SKIPPED the etcd tests: built without `--features cluster`");
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write(
        dir.path(),
        "herd.toml",
        "[cluster]\netcd = [\"http://127.0.0.1:1\"]\n",
    );
    for args in [
        vec!["--config", cfg.to_str().unwrap()],
        vec!["--etcd", "http://127.0.0.1:1"],
    ] {
        let out = std::process::Command::new(common::herd_bin())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("built without the `cluster` feature")
                && err.contains("--features cluster")
                && err.contains("protobuf-compiler"),
            "{err}"
        );
        assert!(!dir.path().join("data").join("url").exists());
    }
}

#[cfg(feature = "cluster")]
mod etcd {
    use super::common::etcd::Etcd;
    use super::common::{self, poll, wait_until, Daemon};
    use serde_json::Value;
    use std::collections::BTreeSet;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn config(etcd: &Etcd, node: &str, ttl: &str, extra: &str) -> String {
        format!(
            "{extra}\n[cluster]\netcd = [\"{}\"]\nnode = \"{node}\"\nlease_ttl = \"{ttl}\"\nlabels = {{ zone = \"z-{node}\" }}\n",
            etcd.url()
        )
    }

    async fn names(d: &Daemon) -> Option<BTreeSet<String>> {
        let (status, v) = d.get("/v1/nodes").await;
        if status != 200 {
            return None;
        }
        Some(
            v["nodes"]
                .as_array()?
                .iter()
                .filter_map(|n| n["node"].as_str().map(String::from))
                .collect(),
        )
    }

    /// Polls `GET /v1/nodes` on `d` until the names are `want`.
    async fn wait_names(d: &Daemon, want: &[&str], timeout: Duration) -> Duration {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        let start = Instant::now();
        loop {
            let got = names(d).await;
            if got.as_ref() == Some(&want) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "nodes {got:?}, want {want:?} after {:?}",
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn set(s: &[&str]) -> BTreeSet<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_join_are_listed_everywhere_and_leave() {
        let Some(etcd) = Etcd::start().await else {
            return;
        };
        // c has a long TTL: its quick disappearance proves the revoke.
        let a = Daemon::start(&config(&etcd, "a", "2s", "[limits]\nmax_sessions = 3")).await;
        let mut b = Daemon::start(&config(&etcd, "b", "2s", "[limits]\nmax_sessions = 4")).await;
        let mut c = Daemon::start(&config(&etcd, "c", "60s", "[limits]\nmax_sessions = 5")).await;
        for d in [&a, &b, &c] {
            wait_names(d, &["a", "b", "c"], Duration::from_secs(10)).await;
            let (_, v) = d.get("/v1/nodes").await;
            assert_eq!(v["cluster"], "herd", "{v}");
            for n in v["nodes"].as_array().unwrap() {
                let name = n["node"].as_str().unwrap();
                let want_cap = match name {
                    "a" => 3,
                    "b" => 4,
                    _ => 5,
                };
                assert_eq!(n["capacity"], want_cap, "{n}");
                assert_eq!(n["labels"]["zone"], format!("z-{name}"), "{n}");
                assert_eq!(n["health"], "live", "{n}");
                assert_eq!(n["version"], env!("CARGO_PKG_VERSION"));
                assert!(n["advertise"]
                    .as_str()
                    .unwrap()
                    .starts_with("http://127.0.0.1:"));
                assert_eq!(n["this"], d.url == n["advertise"].as_str().unwrap(), "{n}");
            }
            let (_, h) = d.get("/healthz").await;
            assert_eq!(h["cluster"]["registered"], true, "{h}");
        }
        // The load follows the sessions (refreshed every TTL/2).
        let id = a
            .create(serde_json::json!({"command": ["sleep", "300"]}))
            .await;
        let cr = &c;
        let ok = poll(Duration::from_secs(10), || async move {
            let (_, v) = cr.get("/v1/nodes").await;
            node(&v, "a")["load"]["sessions"] == 1
        })
        .await;
        assert!(ok, "a's load never showed its session");
        // The CLI, through any node.
        let out = b.cli(&["nodes"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        for want in ["a ", "b *", "c ", "1/3", "zone=z-a", "live"] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        let out = b.cli(&["nodes", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["nodes"].as_array().unwrap().len(), 3);

        // A graceful stop leaves at once (c's TTL is 60 s).
        c.stop();
        let took = wait_names(&a, &["a", "b"], Duration::from_secs(10)).await;
        eprintln!("a stopped node left the list after {took:?} (TTL 60s)");
        // kill -9 leaves after the TTL (2 s), not at once.
        b.kill9();
        let took = wait_names(&a, &["a"], Duration::from_secs(15)).await;
        eprintln!("a killed node left the list after {took:?} (TTL 2s)");
        assert_ne!(a.session(&id).await["state"], "failed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_duplicate_node_name_is_refused_while_the_first_lives() {
        let Some(etcd) = Etcd::start().await else {
            return;
        };
        let mut first = Daemon::start(&config(&etcd, "same", "5s", "")).await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = common::write(dir.path(), "herd.toml", &config(&etcd, "same", "5s", ""));
        let serve = || {
            Command::new(common::herd_bin())
                .args(["serve", "--listen", "127.0.0.1:0", "--config"])
                .arg(&cfg)
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let out = serve().wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("cluster.node = \"same\" is already registered")
                && err.contains(&first.url),
            "{err}"
        );
        // Refused before the store was opened: nothing was written.
        assert!(!dir.path().join("data").join("herd.db").exists());
        assert_eq!(names(&first).await, Some(set(&["same"])));
        // The flags say the same as the file; a bad one is named.
        let out = Command::new(common::herd_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data2"))
            .args(["--etcd", &etcd.url(), "--node", "bad/name"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("cluster.node") && err.contains("bad/name"),
            "{err}"
        );
        // Once the first leaves, the name is free at once.
        first.stop();
        let mut second = serve();
        let url_file = dir.path().join("data").join("url");
        let up = wait_until(Duration::from_secs(20), || url_file.exists()).await;
        let _ = second.kill();
        let _ = second.wait();
        assert!(up, "the second daemon did not start once the name was free");
    }

    /// How etcd goes away in [`rejoin`].
    #[derive(Clone, Copy)]
    enum Outage {
        /// Killed, then started again on the same data dir.
        Restart,
        /// SIGSTOP, then SIGCONT: connections stay open, calls hang.
        Freeze,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_register_again_after_etcd_restarts() {
        rejoin(Outage::Restart).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_register_again_after_etcd_was_frozen() {
        rejoin(Outage::Freeze).await;
    }

    async fn rejoin(outage: Outage) {
        let Some(mut etcd) = Etcd::start().await else {
            return;
        };
        let a = Daemon::start(&config(&etcd, "a", "2s", "")).await;
        let b = Daemon::start(&config(&etcd, "b", "2s", "")).await;
        wait_names(&a, &["a", "b"], Duration::from_secs(10)).await;
        let pid = etcd.pid().unwrap();
        match outage {
            Outage::Restart => etcd.kill(),
            // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
            Outage::Freeze => unsafe {
                libc::kill(pid, libc::SIGSTOP);
            },
        }
        // Without etcd the list cannot be had (a clear 503), and past the
        // TTL each node knows it is out.
        let (status, v) = a.get("/v1/nodes").await;
        assert_eq!(status, 503, "{v}");
        assert_eq!(v["error"]["code"], "cluster_unavailable", "{v}");
        for d in [&a, &b] {
            let out = poll(Duration::from_secs(15), || async move {
                let (_, h) = d.get("/healthz").await;
                h["cluster"]["registered"] == false && h["cluster"]["lease_losses"] == 1
            })
            .await;
            assert!(out, "{} never noticed its lease was lost", d.url);
        }
        match outage {
            Outage::Restart => etcd.run().await,
            // SAFETY: as above.
            Outage::Freeze => unsafe {
                libc::kill(pid, libc::SIGCONT);
            },
        }
        // etcd may still hold the old leases (and their keys) for a while;
        // each node revokes its old lease and registers under a new one.
        for d in [&a, &b] {
            let out = poll(Duration::from_secs(20), || async move {
                let (_, h) = d.get("/healthz").await;
                h["cluster"]["registered"] == true
            })
            .await;
            assert!(out, "{} did not register again", d.url);
        }
        // Registered again means the old lease was revoked first (the
        // create is "if absent"): the keys listed now are the new ones.
        for d in [&a, &b] {
            wait_names(d, &["a", "b"], Duration::from_secs(10)).await;
            let (_, v) = d.get("/v1/nodes").await;
            for n in v["nodes"].as_array().unwrap() {
                assert_eq!(n["health"], "live", "{n}");
            }
        }
    }

    fn node<'a>(v: &'a Value, name: &str) -> &'a Value {
        v["nodes"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["node"] == name))
            .unwrap_or(&Value::Null)
    }
}
