//! The Claude profile against the project's fake `claude` (tests/support/fake_claude.rs),
//! which draws the real CLI's screen markers: fast tests of every state.

mod common;

use common::Daemon;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn fake() -> &'static str {
    env!("CARGO_BIN_EXE_herd-fake-claude")
}

/// Hooks off: these tests cover the screen, the fallback for an older CLI or
/// hooks disabled by config (tests/claude_hooks.rs covers the hooks).
fn config() -> String {
    format!("[claude]\nbinary = {:?}\nhooks = false\n[limits]\nmax_sessions = 20\nquiet_after = \"300ms\"\n[restart]\nbackoff_initial = \"10ms\"\n", fake())
}

struct Claude {
    id: String,
    cwd: tempfile::TempDir,
    log: std::path::PathBuf,
}

async fn claude(d: &Daemon, extra: Value) -> Claude {
    let cwd = tempfile::tempdir().unwrap();
    let log = cwd.path().join("fake-claude.log");
    let mut body = json!({
        "profile": "claude",
        "cwd": cwd.path(),
        "claude": {"env": {"FAKE_CLAUDE_LOG": log, "FAKE_CLAUDE_STARTUP_MS": "200", "FAKE_CLAUDE_BUSY_MS": "300"}},
    });
    merge(&mut body, extra);
    let id = d.create(body).await;
    Claude { id, cwd, log }
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn starts(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn send_wait(d: &Daemon, id: &str, text: &str) -> Value {
    d.send_wait(id, text, "30s").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaches_ready_and_replies_come_from_the_transcript() {
    let d = Daemon::start(&config()).await;
    let c = claude(
        &d,
        json!({"claude": {"model": "opus", "allowed_tools": ["Bash", "Read"]}}),
    )
    .await;
    let s = d.wait_session(&c.id, T, |s| s["state"] == "ready").await;
    assert_eq!(s["profile"], "claude");
    let argv: Vec<String> = serde_json::from_value(s["command"].clone()).unwrap();
    assert_eq!(argv[0], fake());
    assert_eq!(argv[1..3], ["--session-id".to_string(), c.id.clone()]);
    assert!(
        argv.join(" ")
            .contains("--model opus --allowedTools Bash,Read"),
        "{argv:?}"
    );
    let m = send_wait(&d, &c.id, "hello there").await;
    assert_eq!(m["reply"], "MOCK-REPLY: hello there");
    // The CLI prints the reply; a multi-line prompt goes in as one paste.
    let o = d.cli(&[
        "send",
        &c.id[..8],
        "line one\nline two",
        "--wait",
        "--timeout",
        "30s",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "MOCK-REPLY: line one line two"
    );
    // Busy and ready came from the screen, in order.
    let (_, events) = d.get(&format!("/v1/sessions/{}/events", c.id)).await;
    let path: Vec<String> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(path[..3], ["starting", "ready", "busy"], "{path:?}");
    let reasons: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"message delivered") && reasons.contains(&"screen: input prompt"),
        "{reasons:?}"
    );
    assert_eq!(starts(&c.log).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_dialog_is_waiting_input_until_answered() {
    let d = Daemon::start(&config()).await;
    let c = claude(&d, json!({})).await;
    d.wait_session(&c.id, T, |s| s["state"] == "ready").await;
    let (st, _) = d
        .post(
            &format!("/v1/sessions/{}/answer", c.id),
            json!({"choice": "yes"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "nothing to answer yet");
    let (_, m) = d
        .post(
            &format!("/v1/sessions/{}/messages", c.id),
            json!({"text": "run it MOCK-TOOL-BASH"}),
        )
        .await;
    let s = d
        .wait_session(&c.id, T, |s| s["state"] == "waiting_input")
        .await;
    let dialog = s["dialog"].as_str().unwrap();
    assert!(
        dialog.contains("Do you want to proceed?")
            && dialog.contains("Bash command")
            && dialog.contains("1. Yes"),
        "{dialog}"
    );
    let human = String::from_utf8_lossy(&d.cli(&["show", &c.id[..8]]).stdout).to_string();
    assert!(human.contains("waiting_input"), "{human}");
    let (st, v) = d
        .post(
            &format!("/v1/sessions/{}/answer", c.id),
            json!({"choice": "maybe"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().contains("maybe"));
    let o = d.cli(&["answer", &c.id[..8], "yes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mid = m["id"].as_str().unwrap().to_string();
    let q = loop {
        let (_, q) = d.get(&format!("/v1/sessions/{}/queue", c.id)).await;
        if q[0]["state"] == "done" {
            break q;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(q[0]["id"], mid.as_str());
    assert_eq!(
        q[0]["reply"],
        "MOCK-TOOL: running a command.\n\nMOCK-REPLY: tool_result: mock-tool-ran"
    );
    assert!(
        c.cwd.path().join("mock-tool-ran.txt").exists(),
        "the approved tool did not run"
    );
    let s = d.session(&c.id).await;
    assert!(s["dialog"].is_null());
    assert_eq!(s["state"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_stops_a_long_reply() {
    let d = Daemon::start(&config()).await;
    let c = claude(&d, json!({})).await;
    d.wait_session(&c.id, T, |s| s["state"] == "ready").await;
    d.post(
        &format!("/v1/sessions/{}/messages", c.id),
        json!({"text": "MOCK-SLOW=1000 one two three four five six seven eight nine ten"}),
    )
    .await;
    d.wait_screen(&c.id, "tokens)", T).await;
    let started = std::time::Instant::now();
    let o = d.cli(&["interrupt", &c.id[..8]]);
    assert!(o.status.success());
    d.wait_session(&c.id, T, |s| s["state"] == "ready").await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the reply ran to its end"
    );
    let screen = d.wait_screen(&c.id, "Interrupted", T).await;
    let reply = screen
        .lines()
        .find(|l| l.starts_with("● MOCK-REPLY"))
        .unwrap_or_default();
    assert!(!reply.contains("ten"), "the whole reply arrived: {screen}");
    // The CLI is still there and takes the next prompt.
    let m = send_wait(&d, &c.id, "after").await;
    assert_eq!(m["reply"], "MOCK-REPLY: after");
    assert_eq!(d.session(&c.id).await["generation"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cli_resumes_the_same_conversation() {
    let d = Daemon::start(&config()).await;
    let c = claude(&d, json!({"restart": {"policy": "on-failure"}})).await;
    d.wait_session(&c.id, T, |s| s["state"] == "ready").await;
    send_wait(&d, &c.id, "remember kumquat").await;
    let pid = d.session(&c.id).await["pid"].as_i64().unwrap();
    // SAFETY: signalling the session's own child by pid.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let s = d
        .wait_session(&c.id, T, |s| s["generation"] == 1 && s["state"] == "ready")
        .await;
    assert_ne!(s["pid"].as_i64().unwrap(), pid);
    let runs = starts(&c.log);
    assert_eq!(runs.len(), 2);
    let argv: Vec<String> = serde_json::from_value(runs[1]["argv"].clone()).unwrap();
    let at = argv
        .iter()
        .position(|a| a == "--resume")
        .expect("restarted without --resume");
    assert_eq!(argv[at + 1], c.id, "{argv:?}");
    assert!(!argv.contains(&"--session-id".to_string()), "{argv:?}");
    // The earlier turn is back on screen, and the conversation goes on.
    d.wait_screen(&c.id, "remember kumquat", T).await;
    let m = send_wait(&d, &c.id, "what was the word").await;
    assert_eq!(m["reply"], "MOCK-REPLY: what was the word");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_dialogs_are_answered() {
    let d = Daemon::start(&config()).await;
    let c = claude(
        &d,
        json!({"claude": {"api_key": "sk-dialog-test-key", "env": {"FAKE_CLAUDE_DIALOGS": "trust,apikey"}}}),
    )
    .await;
    d.wait_session(&c.id, T, |s| s["state"] == "ready").await;
    let m = send_wait(&d, &c.id, "past the dialogs").await;
    assert_eq!(m["reply"], "MOCK-REPLY: past the dialogs");
    assert_eq!(starts(&c.log)[0]["has_api_key"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_child_only() {
    const KEY: &str = "sk-herd-SECRET-key-0123456789";
    const TOKEN: &str = "oauth-herd-SECRET-token-42";
    const OTHER: &str = "other-herd-SECRET-value";
    let d = Daemon::start_logged(tempfile::tempdir().unwrap(), &config(), "debug").await;
    let c = claude(
        &d,
        json!({"claude": {"api_key": KEY, "oauth_token": TOKEN}, "secret_env": {"MY_TOKEN": OTHER}, "task_id": "secret-task"}),
    )
    .await;
    d.wait_session(&c.id, T, |s| s["state"] == "ready").await;
    send_wait(&d, &c.id, "hello").await;
    let run = &starts(&c.log)[0];
    assert_eq!(
        (
            run["has_api_key"].as_bool(),
            run["has_oauth_token"].as_bool()
        ),
        (Some(true), Some(true))
    );
    let mut seen = d.everything_visible(&c.id).await;
    seen.push_str(&d.get("/v1/tasks/secret-task").await.1.to_string());
    assert!(
        seen.contains("MOCK-REPLY: hello"),
        "the recording holds nothing"
    );
    assert!(seen.contains(&c.id), "the checks read nothing");
    for secret in [KEY, TOKEN, OTHER] {
        assert!(!seen.contains(secret), "secret {secret} leaked");
    }
    // At rest, only in files the daemon's user alone can read.
    use std::os::unix::fs::PermissionsExt;
    for f in ["herd.db", "herd.db-wal"] {
        let p = d.data_dir().join(f);
        if p.exists() {
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o077,
                0,
                "{f} is readable by others"
            );
        }
    }
    let seed = d
        .data_dir()
        .join("claude")
        .join(&c.id)
        .join("home/.claude.json");
    assert_eq!(
        std::fs::metadata(&seed).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_sessions_at_once_each_with_its_own_answer() {
    let d = std::sync::Arc::new(Daemon::start(&config()).await);
    let mut sessions = vec![];
    for i in 0..5 {
        sessions.push(claude(&d, json!({"task_id": format!("job-{i}")})).await);
    }
    let mut waits = vec![];
    for (i, c) in sessions.iter().enumerate() {
        let d = d.clone();
        let id = c.id.clone();
        waits.push(tokio::spawn(async move {
            d.wait_session(&id, T, |s| s["state"] == "ready").await;
            let m = send_wait(
                &d,
                &id,
                &format!("question number {i} MOCK-WAIT={}", 600 - i * 100),
            )
            .await;
            (i, m["reply"].as_str().unwrap().to_string())
        }));
    }
    for w in waits {
        let (i, reply) = w.await.unwrap();
        assert_eq!(
            reply,
            format!(
                "MOCK-REPLY: question number {i} MOCK-WAIT={}",
                600 - i * 100
            )
        );
    }
    for (i, c) in sessions.iter().enumerate() {
        let (_, t) = d.get(&format!("/v1/tasks/job-{i}")).await;
        assert_eq!(t["id"], c.id.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_claude_requests_name_the_field_and_leave_nothing() {
    let d = Daemon::start(&config()).await;
    let cwd = tempfile::tempdir().unwrap();
    let cases = [
        (
            json!({"profile": "claude", "cwd": cwd.path(), "claude": {"permission_mode": "yolo"}}),
            "claude.permission_mode",
        ),
        (
            json!({"profile": "claude", "cwd": cwd.path(), "claude": {"max_turns": 3}}),
            "claude.max_turns",
        ),
        (
            json!({"profile": "claude", "cwd": cwd.path(), "claude": {"modle": "x"}}),
            "modle",
        ),
        (
            json!({"profile": "claude", "cwd": cwd.path(), "command": ["sh"]}),
            "command",
        ),
        (
            json!({"profile": "claude", "cwd": cwd.path(), "task_id": ""}),
            "task_id",
        ),
        (
            json!({"command": ["sh"], "claude": {"model": "x"}}),
            "claude",
        ),
        (json!({"profile": "gpt", "command": ["sh"]}), "profile"),
    ];
    for (body, needle) in cases {
        let (st, v) = d.post("/v1/sessions", body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{body}: {v}"
        );
    }
    assert_eq!(d.count().await, 0);
    let leftovers = std::fs::read_dir(d.data_dir().join("claude"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "a rejected request left a seeded home behind");
}
