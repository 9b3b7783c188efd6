//! End to end against the real Claude Code CLI, offline, through
//! `../shared/claude-harness` (the real CLI talking to a mock Messages API).
//! `.ci/run` installs the CLI; this test is skipped, saying so, only where
//! the harness folder is absent.

mod common;

use common::harness::{user_texts, Harness, KEY};
use common::{alive, wait_until, Daemon};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

async fn send_wait(d: &Daemon, id: &str, text: &str) -> Value {
    let m = d.send_wait(id, text, "90s").await;
    assert_eq!(m["state"], "done", "{m}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_claude_cli_end_to_end() {
    let harness_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/claude-harness");
    if !harness_dir.join("prepare.sh").exists() {
        eprintln!(
            "SKIPPED the_real_claude_cli_end_to_end: {} is absent",
            harness_dir.display()
        );
        return;
    }
    let h = Harness::start(&harness_dir);
    let config = format!(
        "[limits]\nmax_sessions = 20\n[restart]\nbackoff_initial = \"10ms\"\n[claude]\nbinary = {:?}\n[claude.env]\nANTHROPIC_BASE_URL = {:?}\n",
        h.var("CLAUDE_BIN"),
        h.var("ANTHROPIC_BASE_URL"),
    );
    let d = Daemon::start_logged(tempfile::tempdir().unwrap(), &config, "debug").await;
    let work = h.var("CLAUDE_HARNESS_WORK_DIR").to_string();
    let new = |task: String| json!({"profile": "claude", "cwd": work, "task_id": task, "claude": {"api_key": KEY}});

    // Reaches ready; a prompt gets the mock's reply.
    let id = d.create(new("real-0".into())).await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let o = d.cli(&["send", &id[..8], "hello", "--wait", "--timeout", "90s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "MOCK-REPLY: hello");

    // A fresh session's first and later replies are exactly the assistant's
    // words, and they come from the hooks.
    let m = send_wait(&d, &id, "second question").await;
    assert_eq!(m["reply"], "MOCK-REPLY: second question");
    assert_eq!(m["usage"]["model"], "claude-opus-4-8", "{m}");
    assert!(m["usage"]["input_tokens"].as_u64().unwrap_or(0) > 0, "{m}");
    let (_, events) = d.get(&format!("/v1/sessions/{id}/events")).await;
    let reasons: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"hook: UserPromptSubmit") && reasons.contains(&"hook: Stop"),
        "{reasons:?}"
    );

    // A tool call: waiting_input naming the tool, answered by meaning; the
    // reply is every assistant message of the turn.
    let (_, m) = d
        .post(
            &format!("/v1/sessions/{id}/messages"),
            json!({"text": "run a tool MOCK-TOOL-BASH"}),
        )
        .await;
    let s = d
        .wait_session(&id, T, |s| {
            s["state"] == "waiting_input" && s["dialog"].is_string()
        })
        .await;
    assert_eq!(s["waiting"]["reason"], "permission", "{s}");
    assert_eq!(s["waiting"]["tool"], "Bash", "{s}");
    assert_eq!(
        s["waiting"]["summary"],
        "touch mock-tool-ran.txt && echo mock-tool-ran"
    );
    assert!(
        s["dialog"]
            .as_str()
            .unwrap()
            .contains("Do you want to proceed?"),
        "{s}"
    );
    let (st, _) = d
        .post(
            &format!("/v1/sessions/{id}/answer"),
            json!({"choice": "yes"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let mid = m["id"].as_str().unwrap().to_string();
    let m = d.wait_message(&id, &mid, T).await;
    assert_eq!(
        m["reply"], "MOCK-TOOL: running a command.\n\nMOCK-REPLY: tool_result: mock-tool-ran",
        "{m}"
    );
    assert!(Path::new(&work).join("mock-tool-ran.txt").exists());

    // Interrupt after the first token: interrupted, with the partial reply.
    let (_, m) = d
        .post(
            &format!("/v1/sessions/{id}/messages"),
            json!({"text": "w1 w2 w3 w4 w5 w6 w7 w8 w9 MOCK-SLOW=800 MOCK-LINES=3"}),
        )
        .await;
    d.wait_screen(&id, "tokens", T).await;
    let (st, _) = d
        .post(&format!("/v1/sessions/{id}/interrupt"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let m = d.wait_message(&id, m["id"].as_str().unwrap(), T).await;
    assert_eq!(m["state"], "interrupted", "{m}");
    d.wait_session(&id, T, |s| s["state"] == "ready").await;

    // Interrupt before the first token: the CLI puts the prompt back in its
    // input box; herd clears it, so the next prompt goes in alone.
    let (_, m) = d
        .post(
            &format!("/v1/sessions/{id}/messages"),
            json!({"text": "never answered MOCK-WAIT=30000"}),
        )
        .await;
    d.wait_session(&id, T, |s| s["reason"] == "hook: UserPromptSubmit")
        .await;
    d.post(&format!("/v1/sessions/{id}/interrupt"), json!({}))
        .await;
    let m = d.wait_message(&id, m["id"].as_str().unwrap(), T).await;
    assert_eq!(m["state"], "interrupted", "{m}");
    let m = send_wait(&d, &id, "a clean prompt").await;
    assert_eq!(m["reply"], "MOCK-REPLY: a clean prompt", "{m}");

    // SIGKILL the CLI: restarted with --resume, and the conversation goes on.
    let s = d.session(&id).await;
    let pid = s["pid"].as_i64().unwrap();
    // SAFETY: signalling the session's own child by pid.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let s = d
        .wait_session(&id, T, |s| s["generation"] == 1 && s["state"] == "ready")
        .await;
    assert!(s["command"].as_array().is_some());
    assert!(wait_until(T, || !alive(pid)).await);
    let before = h.requests().len();
    let m = send_wait(&d, &id, "and now after the crash").await;
    assert_eq!(m["reply"], "MOCK-REPLY: and now after the crash");
    let resumed = h.requests()[before..]
        .iter()
        .rev()
        .find(|r| {
            user_texts(r)
                .iter()
                .any(|t| t.contains("and now after the crash"))
        })
        .cloned()
        .expect("the mock never saw the prompt after the restart");
    let texts = user_texts(&resumed);
    assert!(
        texts.iter().any(|t| t.contains("hello")),
        "the resumed conversation lost its earlier turns: {texts:?}"
    );

    // Ten fresh sessions at once, none blocking another, each with its own
    // task and, first time, exactly its own answer.
    let d = std::sync::Arc::new(d);
    let mut ids = vec![];
    for i in 1..=10 {
        ids.push(d.create(new(format!("real-{i}"))).await);
    }
    let mut waits = vec![];
    for (i, sid) in ids.iter().enumerate() {
        let (d, sid) = (d.clone(), sid.clone());
        waits.push(tokio::spawn(async move {
            d.wait_session(&sid, T, |s| s["state"] == "ready").await;
            let m = send_wait(&d, &sid, &format!("parallel question {i}")).await;
            (i, m["reply"].as_str().unwrap().to_string())
        }));
    }
    for w in waits {
        let (i, reply) = w.await.unwrap();
        assert_eq!(reply, format!("MOCK-REPLY: parallel question {i}"));
    }
    for (i, sid) in ids.iter().enumerate() {
        let (_, t) = d.get(&format!("/v1/tasks/real-{}", i + 1)).await;
        assert_eq!(t["id"], sid.as_str());
    }

    // The key went to the CLI (the mock saw it) and nowhere else.
    assert!(
        h.requests()
            .iter()
            .any(|r| r["headers"].to_string().contains(KEY)),
        "the CLI did not use the key"
    );
    let seen = d.everything_visible(&id).await;
    assert!(seen.contains("MOCK-REPLY"), "the checks read nothing");
    assert!(!seen.contains(KEY), "the API key leaked");

    let d = std::sync::Arc::into_inner(d).expect("every task ended");
    no_credentials_and_daemon_kill(d, &h, &config, &work).await;
}

/// No credentials: a clear, named error and no restart storm. Then the
/// daemon is killed with -9 mid-turn: the session comes back and its hooks
/// work against the new daemon's port.
async fn no_credentials_and_daemon_kill(mut d: Daemon, h: &Harness, config: &str, work: &str) {
    let id = d
        .create(
            json!({"profile": "claude", "cwd": work, "claude": {"env": {"ANTHROPIC_API_KEY": ""}}}),
        )
        .await;
    let s = d.wait_session(&id, T, |s| s["state"] == "ready").await;
    assert_eq!(s["restarts"], 0);
    let o = d.cli(&["send", &id[..8], "hello", "--wait", "--timeout", "90s"]);
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(err.contains("not logged in"), "{err}");
    let s = d.session(&id).await;
    assert_eq!(s["error"]["kind"], "not_logged_in", "{s}");
    assert_eq!(
        (s["state"].as_str(), s["restarts"].as_u64()),
        (Some("ready"), Some(0))
    );

    let id = d
        .create(json!({"profile": "claude", "cwd": work, "claude": {"api_key": KEY}}))
        .await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    send_wait(&d, &id, "remember the word kumquat").await;
    d.post(
        &format!("/v1/sessions/{id}/messages"),
        json!({"text": "in flight MOCK-WAIT=30000"}),
    )
    .await;
    d.wait_session(&id, T, |s| s["reason"] == "hook: UserPromptSubmit")
        .await;
    d.kill9();
    let dir = d.into_dir();
    let d = Daemon::start_in(dir, config).await;
    d.wait_session(&id, T, |s| s["state"] == "ready" && s["generation"] == 1)
        .await;
    let before = h.requests().len();
    let m = send_wait(&d, &id, "after the daemon crash").await;
    assert_eq!(m["reply"], "MOCK-REPLY: after the daemon crash", "{m}");
    let (_, events) = d.get(&format!("/v1/sessions/{id}/events")).await;
    let last = events.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason"], "hook: Stop", "{events}");
    let seen = h.requests()[before..]
        .iter()
        .flat_map(user_texts)
        .any(|t| t.contains("kumquat"));
    assert!(seen, "the resumed conversation lost its earlier turns");
}
