//! The HTTP API over real HTTP on port 0, against the real `herd serve`.

mod common;

use common::{alive, Daemon};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn sh(script: &str) -> Value {
    json!({"command": ["sh", "-c", script]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_the_token_but_healthz() {
    let d = Daemon::start("").await;
    let id = d.create(json!({"command": ["cat"]})).await;
    let routes = [
        (Method::GET, "/v1/sessions".to_string()),
        (Method::POST, "/v1/sessions".to_string()),
        (Method::POST, "/v1/projects/p/sessions".to_string()),
        (Method::GET, format!("/v1/sessions/{id}")),
        (Method::DELETE, format!("/v1/sessions/{id}")),
        (Method::POST, format!("/v1/sessions/{id}/input")),
        (Method::POST, format!("/v1/sessions/{id}/resize")),
        (Method::POST, format!("/v1/sessions/{id}/interrupt")),
        (Method::POST, format!("/v1/sessions/{id}/suspend")),
        (Method::POST, format!("/v1/sessions/{id}/resume")),
        (Method::POST, format!("/v1/sessions/{id}/restart")),
        (Method::GET, format!("/v1/sessions/{id}/screen")),
        (Method::GET, format!("/v1/sessions/{id}/output")),
        (Method::GET, "/v1/tasks/t".to_string()),
    ];
    for (m, path) in &routes {
        for auth in [
            None,
            Some("Bearer wrong-token-wrong-token"),
            Some("Basic abc"),
        ] {
            let mut r = d.http.request(m.clone(), format!("{}{}", d.url, path));
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            let resp = r.send().await.unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{m} {path} with {auth:?}"
            );
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["code"], "unauthorized", "{m} {path}");
            assert!(v["error"]["message"].as_str().unwrap().contains("token"));
        }
    }
    // Nothing was changed by the rejected requests.
    assert_eq!(d.count().await, 1);
    let s = d.session(&id).await;
    assert!(
        !["stopping", "stopped"].contains(&s["state"].as_str().unwrap()),
        "{s}"
    );
    let resp = d
        .http
        .get(format!("{}/healthz", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    // The token file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.data_dir().join("token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_lifecycle_over_http() {
    let d = Daemon::start("").await;
    let cwd = tempfile::tempdir().unwrap();
    let cwd_path = std::fs::canonicalize(cwd.path()).unwrap();
    let (st, v) = d
        .post(
            "/v1/projects/proj-a/sessions",
            json!({"command": ["bash", "--norc", "--noprofile"], "name": "shell", "task_id": "task-1",
                   "cwd": cwd_path, "env": {"GREETING": "hi-there"}, "cols": 100, "rows": 30}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    common::assert_session_fields(&v);
    assert_eq!(v["project_id"], "proj-a");
    let ready = d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let pid = ready["pid"].as_i64().unwrap();
    assert!(alive(pid));

    // Input by text and by key names reaches the child; the screen shows it.
    let (st, _) = d
        .post(
            &format!("/v1/sessions/{id}/input"),
            json!({"text": "echo $GREETING-$((6*7)); pwd"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = d
        .post(
            &format!("/v1/sessions/{id}/input"),
            json!({"keys": ["Enter"]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    d.wait_screen(&id, "hi-there-42", T).await;
    // pwd prints after the echo: wait for it too, do not race it.
    d.wait_screen(&id, cwd_path.to_str().unwrap(), T).await;

    // Prefix lookup, filters, task mapping.
    let s = d.session(&id[..8]).await;
    assert_eq!(s["id"], id.as_str());
    assert!(s["metrics"]["inputs"].as_u64().unwrap() >= 2);
    let (_, list) = d.get("/v1/sessions?task=task-1").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, list) = d.get("/v1/sessions?project=other").await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let (_, list) = d.get("/v1/sessions?state=ready").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (st, t) = d.get("/v1/tasks/task-1").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(t["id"], id.as_str());
    let (st, t) = d.get("/v1/tasks/nope").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(t["error"]["code"], "not_found");

    // Output with offsets.
    let resp = d
        .http
        .get(format!("{}/v1/sessions/{id}/output?since=0", d.url))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    let end: u64 = resp.headers()["herd-output-end"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = resp.bytes().await.unwrap();
    assert_eq!(end, body.len() as u64);
    assert!(String::from_utf8_lossy(&body).contains("hi-there-42"));
    let resp = d
        .http
        .get(format!("{}/v1/sessions/{id}/output?since={end}", d.url))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    assert!(resp.bytes().await.unwrap().is_empty());

    // Resize reaches the child's terminal.
    let (st, v) = d
        .post(
            &format!("/v1/sessions/{id}/resize"),
            json!({"cols": 90, "rows": 20}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    d.post(
        &format!("/v1/sessions/{id}/input"),
        json!({"keys": ["stty size", "Enter"]}),
    )
    .await;
    d.wait_screen(&id, "20 90", T).await;

    // Suspend and resume.
    let (st, v) = d
        .post(&format!("/v1/sessions/{id}/suspend"), json!({}))
        .await;
    assert_eq!(
        (st, v["state"].as_str()),
        (StatusCode::OK, Some("suspended"))
    );
    let (st, _) = d
        .post(&format!("/v1/sessions/{id}/suspend"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, v) = d
        .post(&format!("/v1/sessions/{id}/resume"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_ne!(v["state"], "suspended");

    // Interrupt ends a foreground job.
    d.post(
        &format!("/v1/sessions/{id}/input"),
        json!({"keys": ["sleep 300; echo after-$((1+1))", "Enter"]}),
    )
    .await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let (st, _) = d
        .post(&format!("/v1/sessions/{id}/interrupt"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    d.post(
        &format!("/v1/sessions/{id}/input"),
        json!({"keys": ["echo interrupted-ok", "Enter"]}),
    )
    .await;
    let screen = d.wait_screen(&id, "interrupted-ok\n", T).await;
    assert!(!screen.contains("after-2"), "{screen}");

    // Restart: new child, generation + 1.
    let (st, _) = d
        .post(&format!("/v1/sessions/{id}/restart"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let s = d
        .wait_session(&id, T, |s| s["generation"] == 1 && s["state"] == "ready")
        .await;
    assert_ne!(s["pid"].as_i64().unwrap(), pid);
    assert!(
        common::wait_until(T, || !alive(pid)).await,
        "old child survived the restart"
    );

    // Stop: stopping, then stopped; a second stop answers the stopped session as it is.
    let (st, v) = d
        .req(Method::DELETE, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let s = d.wait_session(&id, T, |s| s["state"] == "stopped").await;
    assert!(s["pid"].is_null());
    let (st, v) = d
        .req(
            Method::DELETE,
            &format!("/v1/sessions/{id}?force=true"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "stopped");
    assert_eq!(
        v["updated_at"], s["updated_at"],
        "stopping again changed it"
    );
    let (st, _) = d
        .post(&format!("/v1/sessions/{id}/input"), json!({"text": "x"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    // Stopped sessions are history: hidden by default, listed with all=true.
    let (_, list) = d.get("/v1/sessions").await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    assert_eq!(d.count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_problem_and_change_nothing() {
    let d = Daemon::start("[server]\nbody_limit = \"4KiB\"\n").await;
    let id = d.create(json!({"command": ["cat"]})).await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let before = d.session(&id).await;
    let big = "x".repeat(8 * 1024);
    // (method, path, raw body, expected status, text the message must contain)
    let cases: Vec<(Method, String, String, u16, &str)> = vec![
        (
            Method::POST,
            "/v1/sessions".into(),
            "{\"command\": [".into(),
            400,
            "malformed JSON",
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            r#"{"command": "sh"}"#.into(),
            400,
            "command",
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            r#"{"command": ["sh"], "cols": "wide"}"#.into(),
            400,
            "cols",
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            r#"{"command": ["sh"], "colour": 1}"#.into(),
            400,
            "colour",
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            r#"{"command": []}"#.into(),
            400,
            "command",
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            r#"{"command": [""]}"#.into(),
            400,
            "command",
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            r#"{"command": ["no-such-program-xyz"]}"#.into(),
            400,
            "no-such-program-xyz",
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            r#"{"command": ["sh"], "cwd": "/no/such/dir"}"#.into(),
            400,
            "/no/such/dir",
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            r#"{"command": ["sh"], "restart": {"policy": "sometimes"}}"#.into(),
            400,
            "sometimes",
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            r#"{"command": ["sh"], "limits": {"idle_timeout": "soonish"}}"#.into(),
            400,
            "soonish",
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            format!(r#"{{"command": ["sh"], "name": "{big}"}}"#),
            413,
            "body_limit",
        ),
        (
            Method::POST,
            format!("/v1/sessions/{id}/resize"),
            r#"{"cols": 0, "rows": 0}"#.into(),
            400,
            "cols",
        ),
        (
            Method::POST,
            format!("/v1/sessions/{id}/resize"),
            r#"{"cols": 100000, "rows": 100000}"#.into(),
            400,
            "100000",
        ),
        (
            Method::POST,
            format!("/v1/sessions/{id}/input"),
            r#"{}"#.into(),
            400,
            "text",
        ),
        (
            Method::POST,
            format!("/v1/sessions/{id}/input"),
            r#"{"keys": ["C-nope"]}"#.into(),
            400,
            "C-nope",
        ),
        (
            Method::GET,
            "/v1/sessions/not-an-id!".into(),
            String::new(),
            400,
            "not-an-id!",
        ),
        (
            Method::GET,
            "/v1/sessions/00000000-0000-4000-8000-000000000000".into(),
            String::new(),
            404,
            "00000000",
        ),
        (
            Method::GET,
            format!("/v1/sessions/{id}/output?wait=forever"),
            String::new(),
            400,
            "forever",
        ),
        (
            Method::GET,
            format!("/v1/sessions/{id}/output?since=-1"),
            String::new(),
            400,
            "since",
        ),
        (
            Method::GET,
            "/v1/sessions?state=sleepy".into(),
            String::new(),
            400,
            "sleepy",
        ),
        (
            Method::DELETE,
            format!("/v1/sessions/{id}?force=maybe"),
            String::new(),
            400,
            "force",
        ),
    ];
    for (m, path, body, want, needle) in cases {
        let mut r = d
            .http
            .request(m.clone(), format!("{}{}", d.url, path))
            .bearer_auth(&d.token);
        if !body.is_empty() {
            r = r
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        let msg = v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(status, want, "{m} {path} {body:.80}: {v}");
        assert!(
            msg.contains(needle),
            "{m} {path}: message {msg:?} should name {needle:?}"
        );
        assert!(v["error"]["code"].is_string());
    }
    assert_eq!(d.count().await, 1, "a rejected request created a session");
    let after = d.session(&id).await;
    for k in ["state", "pid", "generation", "cols", "rows"] {
        assert_eq!(before[k], after[k], "{k} changed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_is_enforced_with_429() {
    let d = Daemon::start("[limits]\nmax_sessions = 2\n").await;
    let a = d.create(json!({"command": ["cat"]})).await;
    d.create(json!({"command": ["cat"]})).await;
    let (st, v) = d.post("/v1/sessions", json!({"command": ["cat"]})).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_sessions"),
        "{v}"
    );
    assert_eq!(d.count().await, 2);
    // A stopped session frees its slot.
    d.req(
        Method::DELETE,
        &format!("/v1/sessions/{a}?force=true"),
        None,
    )
    .await;
    d.wait_session(&a, T, |s| s["state"] == "stopped").await;
    d.create(json!({"command": ["cat"]})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_child_restarts_under_policy() {
    let d = Daemon::start("[restart]\nbackoff_initial = \"10ms\"\nmax_restarts = 3\n").await;
    let id = d.create(sh("echo started; sleep 0.2; exit 7")).await;
    let s = d.wait_session(&id, T, |s| s["state"] == "failed").await;
    assert_eq!(s["restarts"], 3);
    assert_eq!(s["exit_code"], 7);
    assert!(
        s["reason"].as_str().unwrap().contains("restart intensity"),
        "{s}"
    );
    let never = d
        .create(json!({"command": ["sh", "-c", "exit 3"], "restart": {"policy": "never"}}))
        .await;
    let s = d.wait_session(&never, T, |s| s["state"] == "stopped").await;
    assert_eq!(s["exit_code"], 3);
    assert_eq!(s["generation"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_shutdown_stops_sessions_and_their_children() {
    let mut d = Daemon::start("").await;
    let id = d.create(sh("sleep 1000 & sleep 1000")).await;
    let s = d.wait_session(&id, T, |s| s["pid"].is_i64()).await;
    let pid = s["pid"].as_i64().unwrap() as i32;
    let mut tree = vec![];
    assert!(
        common::wait_until(T, || {
            tree = herd_actors::process::tree(pid);
            tree.len() >= 3
        })
        .await,
        "expected sh and two sleeps: {tree:?}"
    );
    let status = d.stop().expect("daemon exited");
    assert!(status.success(), "daemon exit: {status:?}");
    for p in tree {
        assert!(
            common::wait_until(T, || !alive(p as i64)).await,
            "process {p} survived the daemon"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screen_is_right_after_an_output_flood() {
    let d = Daemon::start("").await;
    // About 2 MB, more than the 1 MiB output log: the flood is not parsed as
    // it passes; the screen is rebuilt when read.
    let id = d
        .create(json!({"command": ["bash", "--norc", "--noprofile"], "cols": 80, "rows": 24}))
        .await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    d.post(
        &format!("/v1/sessions/{id}/input"),
        json!({"text": "seq 1 300000; echo flood-$((1+1))\r"}),
    )
    .await;
    let screen = d.wait_screen(&id, "flood-2\n", T).await;
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines.iter().position(|l| *l == "flood-2").unwrap();
    assert_eq!(lines[at - 1], "300000", "{screen}");
    assert_eq!(lines[at - 2], "299999", "{screen}");
    // Afterwards it is fed as usual again.
    d.post(
        &format!("/v1/sessions/{id}/input"),
        json!({"text": "echo after-$((2*21))\r"}),
    )
    .await;
    let screen = d.wait_screen(&id, "after-42", T).await;
    assert!(screen.contains("flood-2"), "{screen}");
}
