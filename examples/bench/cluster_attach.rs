//! Cluster attach (`--only cluster-attach`, issue 16): the throughput an
//! attached viewer sees through a node that forwards the WebSocket to the
//! session's owner, against the same viewer attached to the owner directly.
//! Two daemons a (the owner) and b, one real etcd on free loopback ports,
//! stopped by PID. Target: proxied ≥ 0.8 × direct. Needs `etcd` (Debian:
//! etcd-server) and a herd built with `--features cluster` (`--herd PATH`);
//! without them the row says why.

use crate::daemon::{self, Daemon};
use crate::report::Row;
use crate::util::{self, mbps, median};
use crate::Opts;
use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// The most one drain may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// etcd on free loopback ports in a temp dir; killed by PID when dropped.
struct Etcd {
    child: Child,
    ticket: u64,
    url: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Etcd {
    async fn start() -> Result<Option<Etcd>> {
        if Command::new("etcd").arg("--version").output().is_err() {
            return Ok(None);
        }
        let dir = tempfile::Builder::new()
            .prefix("herd-bench-etcd-")
            .tempdir()?;
        util::register_dir(dir.path());
        let url = format!("http://127.0.0.1:{}", free_port()?);
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "default", "--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url, "--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning etcd")?;
        let ticket = util::register(child.id() as i32, util::Reap::Group);
        let e = Etcd {
            child,
            ticket,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(format!("{}/health", e.url)).send().await {
                if r.text().await.unwrap_or_default().contains("\"true\"") {
                    return Ok(Some(e));
                }
            }
            if Instant::now() > deadline {
                bail!("etcd did not become healthy in 30s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        util::forget(self.ticket);
    }
}

/// One drain of `argv` in a session created on `owner`, viewed through
/// `viewer` (the owner itself, or another node): MB/s of the child's output.
async fn once(owner: &Daemon, viewer: &Daemon, argv: &[String]) -> Result<f64> {
    let v = owner
        .create(&json!({"command": argv, "restart": {"policy": "never"}}))
        .await?;
    let id = v["id"].as_str().context("id")?.to_string();
    owner
        .wait_session(&id, Duration::from_secs(10), |v| v["pid"].is_i64())
        .await?;
    let mut ws = viewer.ws(&format!("/v1/sessions/{id}/attach")).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(_))) => break,
            Some(Ok(_)) => {}
            other => bail!("attach ended before the first screen: {other:?}"),
        }
    }
    let t0 = Instant::now();
    ws.send(Message::Binary(b"\r".to_vec().into())).await?;
    tokio::time::timeout(RUN_TIMEOUT, async {
        while let Some(m) = ws.next().await {
            match m? {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    if v["type"] == "end" {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .context("attach run timed out")??;
    let secs = t0.elapsed().as_secs_f64();
    let _ = ws.close(None).await;
    let info = owner.session(&id).await?;
    let bytes = info["metrics"]["bytes_out"].as_u64().unwrap_or(0);
    let _ = owner
        .req(
            reqwest::Method::POST,
            &format!("/v1/sessions/{id}/remove"),
            None,
        )
        .await;
    Ok(mbps(bytes, secs))
}

/// Runs the part and appends its row.
pub async fn run(herd: &Path, opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let metric = "attach throughput through a proxying node / direct";
    let Some(etcd) = Etcd::start().await? else {
        eprintln!("cluster-attach: SKIPPED: no `etcd` binary (apt-get install etcd-server)");
        rows.push(Row::new("cluster-attach", metric).not_available("no etcd binary"));
        return Ok(());
    };
    let cluster = |node: &str| {
        daemon::config(
            10,
            false,
            &format!("[cluster]\netcd = [\"{}\"]\nnode = \"{node}\"\n", etcd.url),
        )
    };
    let mut a = match Daemon::start(herd, &cluster("a")).await {
        Ok(d) => d,
        Err(e) if format!("{e:#}").contains("without the `cluster` feature") => {
            eprintln!("cluster-attach: SKIPPED: {} was built without --features cluster (pass --herd PATH)", herd.display());
            rows.push(Row::new("cluster-attach", metric).not_available(
                "herd built without --features cluster: cargo build --release --features cluster, then --herd target/release/herd",
            ));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut b = Daemon::start(herd, &cluster("b")).await?;
    let dir = tempfile::Builder::new()
        .prefix("herd-bench-text-")
        .tempdir()?;
    util::register_dir(dir.path());
    let file = dir.path().join("text.b64");
    let mb = opts.throughput_mb.min(200);
    crate::throughput::write_text_file(&file, mb * 1_000_000)?;
    let argv: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        format!("read _ ; exec cat '{}'", file.display()),
    ];
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for round in 1..=opts.runs {
        let d = once(&a, &a, &argv).await?;
        let p = once(&a, &b, &argv).await?;
        eprintln!(
            "cluster-attach: round {round}/{}: direct {d:7.1} MB/s, through b {p:7.1} MB/s",
            opts.runs
        );
        direct.push(d);
        proxied.push(p);
    }
    let (d, p) = (median(&direct), median(&proxied));
    let ratio = if d > 0.0 { p / d } else { 0.0 };
    rows.push(
        Row::new("cluster-attach", metric)
            .herd(format!("{p:.1} MB/s"))
            .baseline(format!("{d:.1} MB/s direct"))
            .value(ratio, "x")
            .target(">= 0.8x", ratio >= 0.8)
            .note(format!(
                "{mb} MB of text, cat in a session on node a; viewer attached to a, or to b which forwards the WebSocket; median of {} runs",
                opts.runs
            )),
    );
    b.shutdown().await;
    a.shutdown().await;
    drop(etcd);
    Ok(())
}
