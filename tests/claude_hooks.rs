//! Claude sessions driven by Claude Code's hooks (the fake `claude` fires
//! them like the real CLI): states and replies from hooks, waiting reasons
//! and answers by meaning, interrupts, named failures, usage, per-session
//! hook secrets, the user's own hooks, and recovery after kill -9.

mod common;

use common::Daemon;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn config() -> String {
    format!(
        "[claude]\nbinary = {:?}\n[limits]\nmax_sessions = 20\nquiet_after = \"300ms\"\n[restart]\nbackoff_initial = \"10ms\"\n",
        env!("CARGO_BIN_EXE_herd-fake-claude")
    )
}

async fn claude(d: &Daemon, cwd: &std::path::Path, env: Value) -> String {
    let mut e = json!({"FAKE_CLAUDE_STARTUP_MS": "200", "FAKE_CLAUDE_BUSY_MS": "200",
                       "FAKE_CLAUDE_NOTIFY_MS": "300"});
    if let (Some(a), Some(b)) = (e.as_object_mut(), env.as_object()) {
        a.extend(b.clone());
    }
    d.create(json!({"profile": "claude", "cwd": cwd, "claude": {"env": e}}))
        .await
}

async fn send_wait(d: &Daemon, id: &str, text: &str) -> (StatusCode, Value) {
    d.post(
        &format!("/v1/sessions/{id}/messages?wait=true&timeout=30s"),
        json!({ "text": text }),
    )
    .await
}

async fn reasons(d: &Daemon, id: &str) -> Vec<String> {
    let (_, events) = d.get(&format!("/v1/sessions/{id}/events")).await;
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect()
}

/// The hook secret, read from the child's environment (the test runs as the
/// same user): the only place it lives besides the store.
fn hook_token(pid: i64) -> String {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    env.split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("HERD_HOOK_TOKEN="))
        .expect("HERD_HOOK_TOKEN in the child's environment")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_drive_the_state_and_replies_are_the_assistants_words() {
    let d = Daemon::start(&config()).await;
    let cwd = tempfile::tempdir().unwrap();
    let id = claude(&d, cwd.path(), json!({})).await;
    let s = d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let argv: Vec<String> = serde_json::from_value(s["command"].clone()).unwrap();
    assert_eq!(argv[1], "--settings", "{argv:?}");
    // The fake writes the reply before its prompt in the transcript, as the
    // real CLI does: the reply is still the assistant's words, first time.
    for text in ["hello there", "and again"] {
        let (st, m) = send_wait(&d, &id, text).await;
        assert_eq!(st, StatusCode::OK, "{m}");
        assert_eq!(m["state"], "done");
        assert_eq!(m["reply"], format!("MOCK-REPLY: {text}"), "{m}");
        assert_eq!(m["usage"]["input_tokens"], 100, "{m}");
        assert_eq!(m["usage"]["model"], "claude-fake-1", "{m}");
    }
    let r = reasons(&d, &id).await;
    assert!(
        r.iter().any(|r| r == "hook: UserPromptSubmit") && r.iter().any(|r| r == "hook: Stop"),
        "{r:?}"
    );
    assert!(
        !r.iter().any(|r| r == "screen: input prompt (no hook)"),
        "{r:?}"
    );
    let s = d.session(&id).await;
    assert_eq!(s["usage"]["input_tokens"], 200, "{s}");
    assert_eq!(s["usage"]["cache_read_input_tokens"], 14, "{s}");
    // The secret never shows.
    let token = hook_token(s["pid"].as_i64().unwrap());
    assert!(!d.everything_visible(&id).await.contains(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_wait_names_its_tool_and_is_answered_by_meaning() {
    let d = Daemon::start(&config()).await;
    let cwd = tempfile::tempdir().unwrap();
    let id = claude(&d, cwd.path(), json!({})).await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let (_, m) = d
        .post(
            &format!("/v1/sessions/{id}/messages"),
            json!({"text": "run it MOCK-TOOL-BASH"}),
        )
        .await;
    let s = d
        .wait_session(&id, T, |s| {
            s["state"] == "waiting_input"
                && s["waiting"]["choices"]
                    .as_array()
                    .is_some_and(|c| c.len() == 3)
        })
        .await;
    let w = &s["waiting"];
    assert_eq!(w["reason"], "permission", "{w}");
    assert_eq!(w["tool"], "Bash", "{w}");
    assert_eq!(
        w["summary"],
        "touch mock-tool-ran.txt && echo mock-tool-ran"
    );
    let meanings: Vec<&str> = w["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["meaning"].as_str().unwrap())
        .collect();
    assert_eq!(meanings, ["yes", "always", "no"], "{w}");
    let (st, v) = d
        .post(
            &format!("/v1/sessions/{id}/answer"),
            json!({"choice": "maybe"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("maybe") && msg.contains("2. Yes, and always"),
        "{msg}"
    );
    assert_eq!(d.session(&id).await["state"], "waiting_input");
    let o = d.cli(&["answer", &id[..8], "always"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mid = m["id"].as_str().unwrap().to_string();
    let done = d.wait_message(&id, &mid, T).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        done["reply"],
        "MOCK-TOOL: running a command.\n\nMOCK-REPLY: tool_result: mock-tool-ran"
    );
    let s = d.wait_session(&id, T, |s| s["state"] == "ready").await;
    assert!(s["waiting"].is_null(), "{s}");
    // "always": the next tool call runs without asking.
    let (st, m) = send_wait(&d, &id, "again MOCK-TOOL-BASH").await;
    assert_eq!(st, StatusCode::OK, "{m}");
    let r = reasons(&d, &id).await;
    assert_eq!(
        r.iter()
            .filter(|r| r.starts_with("hook: PermissionRequest"))
            .count(),
        1,
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupts_end_the_message_and_prompts_never_merge() {
    let d = Daemon::start(&config()).await;
    let cwd = tempfile::tempdir().unwrap();
    let id = claude(&d, cwd.path(), json!({})).await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;

    // Before the first token: the CLI puts the prompt back in its input box.
    let (_, m) = d
        .post(
            &format!("/v1/sessions/{id}/messages"),
            json!({"text": "slow one MOCK-WAIT=20000"}),
        )
        .await;
    d.wait_session(&id, T, |s| s["reason"] == "hook: UserPromptSubmit")
        .await;
    let o = d.cli(&["interrupt", &id[..8]]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mid = m["id"].as_str().unwrap().to_string();
    let m = d.wait_message(&id, &mid, T).await;
    assert_eq!(m["state"], "interrupted", "{m}");
    // The next prompt goes in alone.
    let (st, m) = send_wait(&d, &id, "after the interrupt").await;
    assert_eq!(st, StatusCode::OK, "{m}");
    assert_eq!(m["reply"], "MOCK-REPLY: after the interrupt", "{m}");

    // After the first token: the partial reply is kept.
    let (_, m) = d
        .post(
            &format!("/v1/sessions/{id}/messages"),
            json!({"text": "w1 w2 w3 w4 w5 w6 w7 w8 MOCK-SLOW=400"}),
        )
        .await;
    d.wait_screen(&id, "tokens)", T).await;
    d.cli(&["interrupt", &id[..8]]);
    let m = d.wait_message(&id, m["id"].as_str().unwrap(), T).await;
    assert_eq!(m["state"], "interrupted", "{m}");
    assert!(
        m["reply"].as_str().unwrap_or("").starts_with("MOCK-REPLY"),
        "{m}"
    );
    let (st, m) = send_wait(&d, &id, "clean again").await;
    assert_eq!(
        (st, m["reply"].as_str()),
        (StatusCode::OK, Some("MOCK-REPLY: clean again")),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_named_and_no_restart_storm_follows() {
    let d = Daemon::start(&config()).await;
    let cwd = tempfile::tempdir().unwrap();
    let id = claude(&d, cwd.path(), json!({"FAKE_CLAUDE_LOGGED_OUT": "1"})).await;
    let s = d
        .wait_session(&id, T, |s| {
            s["state"] == "ready" && s["error"]["kind"] == "not_logged_in"
        })
        .await;
    assert_eq!(s["restarts"], 0);
    let o = d.cli(&["send", &id[..8], "hello", "--wait", "--timeout", "30s"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(err.contains("not logged in"), "{err}");
    let (_, q) = d.get(&format!("/v1/sessions/{id}/queue")).await;
    assert_eq!(q[0]["state"], "failed", "{q}");
    assert_eq!(q[0]["failure"]["kind"], "not_logged_in", "{q}");
    let s = d.session(&id).await;
    assert_eq!(
        (s["state"].as_str(), s["restarts"].as_u64()),
        (Some("ready"), Some(0))
    );

    // A logged-in session: API errors are named, the next turn clears them.
    let id = claude(&d, cwd.path(), json!({})).await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    // A rate limit pauses delivery and the prompt is written again after it:
    // answered once, not lost.
    let (_, m) = send_wait(&d, &id, "limit MOCK-429=1").await;
    assert_eq!(m["state"], "done", "{m}");
    assert_eq!(m["reply"], "MOCK-REPLY: limit MOCK-429=1", "{m}");
    let r = reasons(&d, &id).await;
    assert!(
        r.iter().any(|r| r == "hook: StopFailure (rate_limit)"),
        "{r:?}"
    );
    let (_, m) = send_wait(&d, &id, "auth MOCK-STATUS=401").await;
    assert_eq!(m["failure"]["kind"], "authentication", "{m}");
    let (_, m) = send_wait(&d, &id, "fine now").await;
    assert_eq!(m["state"], "done", "{m}");
    assert!(d.session(&id).await["error"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_moves_only_its_own_session() {
    let d = Daemon::start(&config()).await;
    let cwd = tempfile::tempdir().unwrap();
    let a = claude(&d, cwd.path(), json!({})).await;
    let b = claude(&d, cwd.path(), json!({})).await;
    let sa = d.wait_session(&a, T, |s| s["state"] == "ready").await;
    d.wait_session(&b, T, |s| s["state"] == "ready").await;
    let token_a = hook_token(sa["pid"].as_i64().unwrap());
    let stop = json!({"hook_event_name": "PermissionRequest", "tool_name": "Bash",
                      "tool_input": {"command": "rm -rf /"}});
    let http = reqwest::Client::new();
    let post = |id: &str, token: Option<&str>, body: String| {
        let mut r = http
            .post(format!("{}/v1/sessions/{id}/hooks", d.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            r = r.header("X-Herd-Hook-Token", t);
        }
        r.send()
    };
    // A's secret on B's route, no secret, a made-up session: refused alike.
    for (id, token) in [
        (b.as_str(), Some(token_a.as_str())),
        (a.as_str(), None),
        (a.as_str(), Some("x")),
    ] {
        let r = post(id, token, stop.to_string()).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{id} {token:?}");
    }
    let r = post(&uuid_nil(), Some(&token_a), stop.to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(d.session(&b).await["state"], "ready");
    assert_eq!(d.session(&a).await["state"], "ready");
    // Too big, or not a hook: refused, nothing moves.
    let big = json!({"hook_event_name": "Notification", "message": "x".repeat(1_100_000)});
    let r = post(&a, Some(&token_a), big.to_string()).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = post(&a, Some(&token_a), "{\"x\":1}".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Its own secret: taken at once.
    let r = post(&a, Some(&token_a), stop.to_string()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let s = d
        .wait_session(&a, T, |s| s["state"] == "waiting_input")
        .await;
    assert_eq!(s["waiting"]["summary"], "rm -rf /");
    assert_eq!(d.session(&b).await["state"], "ready");
}

fn uuid_nil() -> String {
    "00000000-0000-0000-0000-000000000000".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_own_hooks_keep_working() {
    let d = Daemon::start(&config()).await;
    let cwd = tempfile::tempdir().unwrap();
    let seen = cwd.path().join("user-hook-ran");
    std::fs::create_dir_all(cwd.path().join(".claude")).unwrap();
    let settings = json!({"hooks": {"UserPromptSubmit": [{"hooks": [
        {"type": "command", "command": format!("cat >> {}", seen.display())}]}]}});
    std::fs::write(
        cwd.path().join(".claude/settings.json"),
        settings.to_string(),
    )
    .unwrap();
    let id = claude(&d, cwd.path(), json!({})).await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let (st, m) = send_wait(&d, &id, "both hooks").await;
    assert_eq!(
        (st, m["reply"].as_str()),
        (StatusCode::OK, Some("MOCK-REPLY: both hooks"))
    );
    assert!(reasons(&d, &id).await.iter().any(|r| r == "hook: Stop"));
    assert!(
        common::wait_until(T, || std::fs::read_to_string(&seen)
            .is_ok_and(|s| s.contains("both hooks")))
        .await,
        "the user's hook did not run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_mid_turn_the_hooks_still_work() {
    let mut d = Daemon::start(&config()).await;
    let cwd = tempfile::tempdir().unwrap();
    let id = claude(&d, cwd.path(), json!({})).await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    d.post(
        &format!("/v1/sessions/{id}/messages"),
        json!({"text": "long MOCK-WAIT=20000"}),
    )
    .await;
    d.wait_session(&id, T, |s| s["reason"] == "hook: UserPromptSubmit")
        .await;
    d.kill9();
    let dir = d.into_dir();
    // The new daemon listens on another port: the hooks must follow it.
    let d = Daemon::start_in(dir, &config()).await;
    let s = d
        .wait_session(&id, T, |s| s["state"] == "ready" && s["generation"] == 1)
        .await;
    assert_eq!(s["restarts"], 1);
    let (st, m) = send_wait(&d, &id, "after the crash").await;
    assert_eq!(
        (st, m["reply"].as_str()),
        (StatusCode::OK, Some("MOCK-REPLY: after the crash")),
        "{m}"
    );
    let (_, events) = d.get(&format!("/v1/sessions/{id}/events")).await;
    let last = events.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason"], "hook: Stop", "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_busy_caps_the_fleet_and_serves_prompts_by_enqueue_time() {
    let cfg = config().replace("[claude]\n", "[claude]\nmax_busy = 2\n");
    let d = Daemon::start(&cfg).await;
    let cwd = tempfile::tempdir().unwrap();
    let mut ids = vec![];
    for _ in 0..5 {
        ids.push(claude(&d, cwd.path(), json!({})).await);
    }
    for id in &ids {
        d.wait_session(id, T, |s| s["state"] == "ready").await;
    }
    let mut mids = vec![];
    for (i, id) in ids.iter().enumerate() {
        let (st, m) = d
            .post(
                &format!("/v1/sessions/{id}/messages"),
                json!({"text": format!("job {i} MOCK-WAIT=400")}),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{m}");
        mids.push(m["id"].as_str().unwrap().to_string());
    }
    let mut done = vec![];
    for (id, mid) in ids.iter().zip(&mids) {
        let m = d.wait_message(id, mid, T).await;
        assert_eq!(m["state"], "done", "{m}");
        done.push(m);
    }
    // Never more than two answering at once: the delivery..completion spans overlap at most pairwise.
    let t = |v: &Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    let spans: Vec<_> = done
        .iter()
        .map(|m| (t(&m["delivered_at"]), t(&m["completed_at"])))
        .collect();
    for (a, _) in &spans {
        let overlapping = spans.iter().filter(|(s, e)| s <= a && a < e).count();
        assert!(overlapping <= 2, "{overlapping} at once: {spans:?}");
    }
    // Served by enqueue time.
    let mut by_delivery: Vec<usize> = (0..5).collect();
    by_delivery.sort_by_key(|i| spans[*i].0);
    assert_eq!(by_delivery, [0, 1, 2, 3, 4], "{spans:?}");
}
