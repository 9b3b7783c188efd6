//! Nothing acknowledged is lost: with the data dir's disk full the daemon
//! refuses what it cannot store (507, nothing changed), keeps its sessions
//! running, says so in `/healthz`, pauses recordings, and recovers by itself
//! when space returns; after a `kill -9` every acknowledged session is back.
//! The full disk is a small tmpfs (needs root; skipped with a message else).

mod common;

use common::{Daemon, Tmpfs};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const TICKER: &str = "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.05; done";

async fn healthz(d: &Daemon) -> Value {
    let r = d
        .http
        .get(format!("{}/healthz", d.url))
        .send()
        .await
        .expect("healthz");
    r.json().await.expect("healthz json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_what_it_cannot_store_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("data"), "4m") else {
        return;
    };
    let config = "[limits]\nmax_sessions = 500\nidle_timeout = \"0s\"\n";
    let mut d = Daemon::start_logged(dir, config, "info").await;
    let ticker = d
        .create(json!({"command": ["sh", "-c", TICKER], "name": "ticker"}))
        .await;
    let mut acked: BTreeSet<String> = BTreeSet::from([ticker.clone()]);

    let filler = fs.fill();
    // Create until the store refuses: the disk is full, nothing is acknowledged unstored.
    let mut refused = None;
    for i in 0..400 {
        let (st, v) = d
            .post(
                "/v1/sessions",
                json!({"command": ["sleep", "600"], "name": format!("s{i}")}),
            )
            .await;
        match st {
            StatusCode::CREATED => {
                acked.insert(v["id"].as_str().unwrap().to_string());
            }
            _ => {
                refused = Some((st, v));
                break;
            }
        }
    }
    let (st, v) = refused.expect("the full disk never refused a create");
    assert_eq!(st, StatusCode::INSUFFICIENT_STORAGE, "{v}");
    assert_eq!(v["error"]["code"], "insufficient_storage", "{v}");
    assert_eq!(
        d.count().await,
        acked.len(),
        "a refused create left nothing"
    );
    let h = healthz(&d).await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["store"]["full"], true, "{h}");

    // A message the store cannot take is refused and never typed.
    let (st, v) = d
        .post(
            &format!("/v1/sessions/{ticker}/messages"),
            json!({"text": "echo MUST-NOT-RUN"}),
        )
        .await;
    if !st.is_success() {
        assert_eq!(st, StatusCode::INSUFFICIENT_STORAGE, "{v}");
        let (_, q) = d.get(&format!("/v1/sessions/{ticker}/queue")).await;
        assert_eq!(q.as_array().map(Vec::len), Some(0), "{q}");
    }

    // The session runs on: its output keeps growing while the disk is full.
    let out_before = d.session(&ticker).await["metrics"]["bytes_out"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(d.dir.path().join("daemon.log"))
                .unwrap_or_default()
                .contains("recording paused")
        })
        .await,
        "the recording never paused: {}",
        d.log()
    );
    d.wait_session(&ticker, Duration::from_secs(10), |s| {
        s["metrics"]["bytes_out"].as_u64().unwrap_or(0) > out_before
    })
    .await;
    assert_eq!(
        d.log().matches("refusing new sessions").count(),
        1,
        "said once in the log"
    );

    // Space returns: the daemon recovers without help.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let recovered = loop {
        let (st, v) = d
            .post("/v1/sessions", json!({"command": ["sleep", "600"]}))
            .await;
        if st == StatusCode::CREATED {
            acked.insert(v["id"].as_str().unwrap().to_string());
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(recovered, "never accepted a create again: {}", d.log());
    let ok = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let h = healthz(&d).await;
            if h["status"] == "ok" || Instant::now() > deadline {
                break h;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(ok["status"], "ok", "{ok}");
    // The recording resumed with a gap marker.
    let cast = d.data_dir().join("recordings").join(&ticker).join("0.cast");
    let gap = common::wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&cast)
            .unwrap_or_default()
            .contains("bytes not recorded")
    })
    .await;
    assert!(gap, "no gap marker in {}", cast.display());

    // Crash: every acknowledged session comes back, and nothing else.
    d.kill9();
    let dir = d.into_dir();
    let d = Daemon::start_in(dir, config).await;
    let (_, list) = d.get("/v1/sessions?all=true").await;
    let ids: BTreeSet<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, acked, "acknowledged sessions after kill -9");
    // Every line of the recording is valid asciicast.
    let text = std::fs::read_to_string(&cast).unwrap();
    for line in text.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
    }
    drop(d);
    drop(fs);
}
