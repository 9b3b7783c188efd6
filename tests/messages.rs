//! The prompt queue (send, send --wait) and PATCH, over real HTTP and the CLI.

mod common;

use common::Daemon;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn bash() -> Value {
    // A long quiet period, so a command's pause is not taken for its end.
    json!({"command": ["bash", "--norc", "--noprofile"], "limits": {"quiet_after": "800ms"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_returns_the_output_of_the_command() {
    let d = Daemon::start("").await;
    let id = d.create(bash()).await;
    // Sent while the shell is still starting: queued until it is ready.
    let (st, m) = d
        .post(
            &format!("/v1/sessions/{id}/messages?wait=true&timeout=20s"),
            json!({"text": "echo answer-$((6*7))"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{m}");
    assert_eq!(m["state"], "done");
    let reply = m["reply"].as_str().unwrap();
    assert!(reply.contains("answer-42"), "{reply:?}");
    assert!(
        !reply.contains('\x1b'),
        "escape sequences must be stripped: {reply:?}"
    );
    // The CLI prints the reply.
    let o = d.cli(&[
        "send",
        &id[..8],
        "echo cli-$((40+2))",
        "--wait",
        "--timeout",
        "20s",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("cli-42"));
    // Without --wait it prints the message id, and the message shows in the queue.
    let o = d.cli(&["send", &id[..8], "echo later"]);
    let mid = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(mid.len(), 36, "{mid}");
    let queue = loop {
        let (_, q) = d.get(&format!("/v1/sessions/{id}/queue")).await;
        let done = q
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == mid.as_str() && m["state"] == "done");
        if done {
            break q;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(queue.as_array().unwrap().len(), 3);
    let m = d.session(&id).await;
    assert!(m["metrics"]["inputs"].as_u64().unwrap() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_go_one_at_a_time_in_order() {
    let d = Daemon::start("").await;
    let id = d.create(bash()).await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let mut ids = vec![];
    for (i, cmd) in [
        "sleep 0.3; echo first-$((1))",
        "echo second-$((2))",
        "echo third-$((3))",
    ]
    .iter()
    .enumerate()
    {
        let (st, m) = d
            .post(&format!("/v1/sessions/{id}/messages"), json!({"text": cmd}))
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{i}: {m}");
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    let queue = loop {
        let (_, q) = d.get(&format!("/v1/sessions/{id}/queue")).await;
        if q.as_array().unwrap().iter().all(|m| m["state"] == "done") {
            break q;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let q = queue.as_array().unwrap();
    assert_eq!(
        q.iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    for (m, (want, not)) in q.iter().zip([
        ("first-1", "second-2"),
        ("second-2", "third-3"),
        ("third-3", "first-1"),
    ]) {
        let reply = m["reply"].as_str().unwrap();
        assert!(
            reply.contains(want) && !reply.contains(not),
            "{want}: {reply:?}"
        );
    }
    // Each was written only after the previous one had its answer.
    let end0 = q[0]["output_end"].as_u64().unwrap();
    assert!(q[1]["output_start"].as_u64().unwrap() >= end0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_in_flight_when_the_child_dies_is_interrupted_not_resent() {
    let d = Daemon::start("[restart]\nbackoff_initial = \"10ms\"\n").await;
    let id = d
        .create(json!({"command": ["bash", "--norc"], "restart": {"policy": "always"}}))
        .await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let (_, m1) = d
        .post(
            &format!("/v1/sessions/{id}/messages"),
            json!({"text": "while true; do echo x; sleep 0.1; done"}),
        )
        .await;
    let (_, m2) = d
        .post(
            &format!("/v1/sessions/{id}/messages"),
            json!({"text": "echo after-restart-$((3*3))"}),
        )
        .await;
    let pid = d.wait_session(&id, T, |s| s["state"] == "busy").await["pid"]
        .as_i64()
        .unwrap();
    // SAFETY: signalling the session's own child by pid.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let mid1 = m1["id"].as_str().unwrap();
    let mid2 = m2["id"].as_str().unwrap();
    let q = loop {
        let (_, q) = d.get(&format!("/v1/sessions/{id}/queue")).await;
        let find = |mid: &str| {
            q.as_array()
                .unwrap()
                .iter()
                .find(|m| m["id"] == mid)
                .cloned()
                .unwrap()
        };
        if find(mid2)["state"] == "done" {
            break (find(mid1), find(mid2));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(q.0["state"], "interrupted", "{}", q.0);
    assert!(q.0["error"].as_str().unwrap().contains("signal 9"));
    assert!(q.1["reply"].as_str().unwrap().contains("after-restart-9"));
    let s = d.session(&id).await;
    assert_eq!(s["generation"], 1);
    // The new child (generation 1) never saw the interrupted prompt: its
    // recording (flushed at every state change) holds only the queued one.
    let gen1 = d.data_dir().join("recordings").join(&id).join("1.cast");
    assert!(
        common::wait_until(T, || std::fs::read_to_string(&gen1)
            .is_ok_and(|t| t.contains("after-restart-9")))
        .await
    );
    let text = std::fs::read_to_string(&gen1).unwrap();
    assert!(
        !text.contains("while true"),
        "the interrupted message was typed again:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_timeout_and_bad_messages() {
    let d = Daemon::start("").await;
    let id = d.create(bash()).await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let (st, v) = d
        .post(
            &format!("/v1/sessions/{id}/messages?wait=true&timeout=300ms"),
            json!({"text": "while true; do echo y; sleep 0.1; done"}),
        )
        .await;
    assert_eq!(st, StatusCode::GATEWAY_TIMEOUT, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("300ms"));
    let cases = [
        (json!({"text": ""}), "text", 400),
        (json!({"txt": "a"}), "txt", 400),
        (json!({"text": 5}), "text", 400),
    ];
    for (body, needle, status) in cases {
        let (st, v) = d
            .post(&format!("/v1/sessions/{id}/messages"), body.clone())
            .await;
        assert_eq!(st.as_u16(), status, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
    }
    let (st, v) = d
        .post(
            &format!("/v1/sessions/{id}/messages?wait=true&timeout=2h"),
            json!({"text": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().contains("timeout"));
    let (_, q) = d.get(&format!("/v1/sessions/{id}/queue")).await;
    assert_eq!(
        q.as_array().unwrap().len(),
        1,
        "rejected messages must not be queued"
    );
    // A stopped session takes no messages.
    d.req(
        Method::DELETE,
        &format!("/v1/sessions/{id}?force=true"),
        None,
    )
    .await;
    d.wait_session(&id, T, |s| s["state"] == "stopped").await;
    let (st, _) = d
        .post(&format!("/v1/sessions/{id}/messages"), json!({"text": "x"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (_, q) = d.get(&format!("/v1/sessions/{id}/queue")).await;
    assert_eq!(
        q[0]["state"], "interrupted",
        "the endless loop was in flight at stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_metadata_and_limits() {
    let d = Daemon::start("").await;
    let id = d
        .create(json!({"command": ["cat"], "task_id": "old-task"}))
        .await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let before = d.session(&id).await;
    for (body, needle) in [
        (json!({}), "nothing to change"),
        (json!({"task": "x"}), "task"),
        (json!({"name": ""}), "name"),
        (json!({"limits": {"idle_timeout": "later"}}), "later"),
        (json!({"restart": {"policy": "often"}}), "often"),
    ] {
        let (st, v) = d
            .req(
                Method::PATCH,
                &format!("/v1/sessions/{id}"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{body}: {v}"
        );
    }
    assert_eq!(d.session(&id).await["task_id"], before["task_id"]);
    let (st, v) = d
        .req(
            Method::PATCH,
            &format!("/v1/sessions/{id}"),
            Some(json!({"name": "renamed", "task_id": "new-task", "restart": {"policy": "never"}, "limits": {"idle_timeout": "1s"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "renamed");
    assert_eq!(v["restart"]["policy"], "never");
    assert_eq!(v["limits"]["idle_timeout"], "1s");
    let (st, t) = d.get("/v1/tasks/new-task").await;
    assert_eq!((st, t["id"].as_str()), (StatusCode::OK, Some(id.as_str())));
    // The shorter idle timeout takes effect at once.
    let s = d.wait_session(&id, T, |s| s["state"] == "stopped").await;
    assert_eq!(s["reason"], "idle_timeout");
}
