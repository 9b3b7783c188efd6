//! Cluster attach (`--only cluster-attach`, issue 16): the throughput an
//! attached viewer sees through a node that forwards the WebSocket to the
//! session's owner, against the same viewer attached to the owner directly.
//! Two daemons a (the owner) and b, one real etcd on free loopback ports,
//! stopped by PID. Target: proxied ≥ 0.8 × direct. Needs `etcd` (Debian:
//! etcd-server) and a herd built with `--features cluster` (`--herd PATH`);
//! without them the row says why.

use super::{skip, start_node, Etcd};
use crate::daemon::Daemon;
use crate::report::Row;
use crate::util::{self, mbps, median};
use crate::Opts;
use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// The most one drain may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

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
        skip("cluster-attach", metric, herd, true, rows);
        return Ok(());
    };
    let cfg = |node: &str| etcd.node_config(node, None, 10, false);
    let Some(mut a) = start_node(herd, &cfg("a"), Duration::ZERO).await? else {
        skip("cluster-attach", metric, herd, false, rows);
        return Ok(());
    };
    let mut b = start_node(herd, &cfg("b"), Duration::ZERO)
        .await?
        .context("node b: no cluster feature")?;
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
