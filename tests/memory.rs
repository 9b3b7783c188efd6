//! Memory kept for the dead: an ended session lets go of its output log and
//! screen a few seconds after it ends; its output and screen are then read
//! back from its recording, through the same routes and offsets.

mod common;

use common::Daemon;
use serde_json::json;
use std::time::{Duration, Instant};

const SCRIPT: &str = "i=0; while [ $i -lt 2000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; printf 'FINAL-SCREEN\\n'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_serves_its_output_and_screen_from_its_recording() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_logged(dir, "", "warn,herd::daemon::serve=debug").await;
    let id = d
        .create(json!({"command": ["sh", "-c", SCRIPT], "restart": {"policy": "never"}}))
        .await;
    let s = d
        .wait_session(&id, Duration::from_secs(20), |s| s["state"] == "stopped")
        .await;
    let bytes_out = s["metrics"]["bytes_out"].as_u64().unwrap();
    let fetch = |path: String| {
        let d = &d;
        async move {
            let r = d
                .http
                .get(format!("{}{path}", d.url))
                .bearer_auth(&d.token)
                .send()
                .await
                .unwrap();
            let end = r
                .headers()
                .get("herd-output-end")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (end, r.text().await.unwrap())
        }
    };
    let (end_before, before) = fetch(format!("/v1/sessions/{id}/output")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.log().contains("let go of the buffers") {
        assert!(Instant::now() < deadline, "never released: {}", d.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (end_after, after) = fetch(format!("/v1/sessions/{id}/output")).await;
    assert_eq!(end_after, Some(bytes_out));
    assert_eq!(end_before, end_after);
    assert!(
        after.contains("line-1999-") && after.contains("FINAL-SCREEN"),
        "tail kept"
    );
    // The same bytes as the log held (the recording writes \r\n as the terminal did).
    assert_eq!(after.len(), before.len(), "same tail from the recording");
    let (_, tail) = fetch(format!("/v1/sessions/{id}/output?since={}", bytes_out - 14)).await;
    assert_eq!(tail, "FINAL-SCREEN\r\n");
    let (_, v) = d.get(&format!("/v1/sessions/{id}/screen")).await;
    let screen = v["text"].as_str().unwrap();
    assert!(
        screen.contains("FINAL-SCREEN") && screen.contains("line-1999-"),
        "{screen}"
    );
}
