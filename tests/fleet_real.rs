//! A small fleet of real Claude Code CLIs end to end, offline through
//! `../shared/claude-harness`: five sessions under `[claude] max_busy = 2`,
//! eight prompts, a burst of 429s from the mock, a session whose token
//! budget stops its second prompt, and `[[notify]]` webhooks to a local
//! receiver. Nothing is lost or sent twice. Skipped, saying so, where the
//! harness or the CLI is absent (`.ci/run` installs the CLI).

mod common;

use common::harness::{self, Harness, KEY};
use common::webhooks::{verify, Hooks};
use common::Daemon;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(150);
const SECRET: &str = "fleet-webhook-secret";
/// 429s the mock answers the rate-limited prompt with before it answers it.
const BURST: usize = 3;

/// The texts of a request's last user turn, unless it is the CLI's
/// session-title side query (which carries the first prompt too).
fn prompt_of(request: &Value) -> Vec<String> {
    if request["body"]["output_config"]["format"]["type"] == "json_schema" {
        return vec![];
    }
    let Some(msgs) = request["body"]["messages"].as_array() else {
        return vec![];
    };
    for m in msgs.iter().rev().filter(|m| m["role"] == "user") {
        let texts: Vec<String> = match &m["content"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(blocks) => blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        };
        if !texts.is_empty() {
            return texts;
        }
    }
    vec![]
}

/// The most sessions busy at once, replaying the daemon's transitions.
fn most_busy(events: &[Value]) -> usize {
    let mut busy = BTreeSet::new();
    let mut most = 0;
    for e in events {
        let id = e["session_id"].as_str().unwrap_or_default().to_string();
        if e["to"] == "busy" {
            busy.insert(id);
        } else {
            busy.remove(&id);
        }
        most = most.max(busy.len());
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_real_claude_sessions_under_max_busy_with_a_rate_limit_a_budget_and_webhooks() {
    let dir = match harness::available() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED five_real_claude_sessions_...: {why}");
            return;
        }
    };
    let prefix = std::env::var("CLAUDE_HARNESS_PREFIX")
        .unwrap_or_else(|_| format!("{}/target/claude-npm", env!("CARGO_MANIFEST_DIR")));
    if !Path::new(&prefix).join("node_modules/.bin/claude").exists() {
        eprintln!(
            "SKIPPED five_real_claude_sessions_...: the Claude Code CLI is not installed in {prefix} (.ci/run installs it)"
        );
        return;
    }
    let h = Harness::start(&dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hooks = Hooks::serve(listener, 0).await;
    let config = format!(
        "[limits]\nmax_sessions = 20\n[restart]\nbackoff_initial = \"10ms\"\n\
         [claude]\nbinary = {:?}\nmax_busy = 2\nrate_limit_backoff = \"1s\"\n\
         [claude.env]\nANTHROPIC_BASE_URL = {:?}\nCLAUDE_CODE_MAX_RETRIES = \"1\"\n\
         [[notify]]\nurl = \"http://127.0.0.1:{port}/hook\"\n\
         events = [\"message_done\", \"rate_limited\", \"budget\"]\nsecret = {SECRET:?}\n\
         retry_initial = \"50ms\"\nretry_max = \"500ms\"\n",
        h.var("CLAUDE_BIN"),
        h.var("ANTHROPIC_BASE_URL"),
    );
    let d = Daemon::start(&config).await;
    let work = h.var("CLAUDE_HARNESS_WORK_DIR").to_string();

    // Five sessions; the last one may spend one token: its first prompt
    // goes out (nothing spent yet), its second is stopped by the budget.
    let mut ids = vec![];
    for i in 0..5 {
        let mut body = json!({"profile": "claude", "cwd": work, "task_id": format!("fleet-{i}"),
            "claude": {"api_key": KEY}});
        if i == 4 {
            body["budget"] = json!({"tokens": 1});
        }
        ids.push(d.create(body).await);
    }
    for id in &ids {
        d.wait_session(id, T, |s| s["state"] == "ready").await;
    }

    // Eight prompts, queued at once: two each for sessions 0, 2 and 4.
    let burst_prompt = format!("fleet 1 first MOCK-429={BURST}");
    let mut sent: Vec<(usize, String, String)> = vec![]; // (session, text, message id)
    let plan: Vec<(usize, String)> = vec![
        (0, "fleet 0 first MOCK-WAIT=600".into()),
        (1, burst_prompt.clone()),
        (2, "fleet 2 first MOCK-WAIT=600".into()),
        (3, "fleet 3 first".into()),
        (4, "fleet 4 first".into()),
        (0, "fleet 0 second".into()),
        (2, "fleet 2 second".into()),
        (4, "fleet 4 second, over budget".into()),
    ];
    for (i, text) in plan {
        let (st, m) = d
            .post(
                &format!("/v1/sessions/{}/messages", ids[i]),
                json!({ "text": text }),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{m}");
        sent.push((i, text, m["id"].as_str().unwrap().to_string()));
    }
    let mut finals = vec![];
    for (i, text, mid) in &sent {
        let m = d.wait_message(&ids[*i], mid, T).await;
        finals.push((text.clone(), m));
    }

    // Every prompt answered with its own reply, but the one over budget.
    for (text, m) in &finals {
        if text.contains("over budget") {
            assert_eq!(m["state"], "failed", "{m}");
            assert_eq!(m["failure"]["kind"], "budget", "{m}");
            assert_eq!(m["failure"]["scope"], "session", "{m}");
            continue;
        }
        assert_eq!(m["state"], "done", "{text}: {m}");
        let want: String = format!("MOCK-REPLY: {}", text.chars().take(40).collect::<String>());
        assert_eq!(m["reply"].as_str().unwrap().trim(), want.trim(), "{m}");
    }

    // Never more than two busy at once: by the sessions' transitions, and by
    // the answered messages' spans.
    let (_, events) = d.get("/v1/events").await;
    let events = events.as_array().unwrap();
    let most = most_busy(events);
    assert!(most <= 2, "{most} sessions busy at once");
    assert!(most == 2, "the fleet never used its two slots: {most}");
    let t = |v: &Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    let spans: Vec<_> = finals
        .iter()
        .filter(|(_, m)| m["state"] == "done")
        .map(|(_, m)| (t(&m["delivered_at"]), t(&m["completed_at"])))
        .collect();
    for (a, _) in &spans {
        let at_once = spans.iter().filter(|(s, e)| s <= a && a < e).count();
        assert!(at_once <= 2, "{at_once} answering at once: {spans:?}");
    }

    // Each prompt reached the API once (the rate-limited one BURST more
    // times, refused); the one over budget never.
    let requests = h.requests();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in &requests {
        for text in prompt_of(r) {
            *seen.entry(text).or_default() += 1;
        }
    }
    for (text, m) in &finals {
        let n = seen.get(text).copied().unwrap_or(0);
        let want = if text == &burst_prompt {
            BURST + 1
        } else if m["state"] == "failed" {
            0
        } else {
            1
        };
        assert_eq!(n, want, "{text}: {n} requests: {seen:?}");
    }

    // The rate limit paused the whole fleet for rate_limit_backoff (1s):
    // nothing was typed into any session in that second; then the limited
    // prompt was written again, and answered.
    let (_, notices) = d.get("/v1/notices").await;
    let limited: Vec<&Value> = notices
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["notice"] == "rate_limited")
        .collect();
    assert_eq!(limited.len(), 1, "{notices}");
    assert!(
        limited[0]["message"].as_str().unwrap().contains("429"),
        "{notices}"
    );
    let paused_at = t(&limited[0]["at"]);
    let pause_end = paused_at + Duration::from_millis(950);
    for (text, m) in &finals {
        if m["state"] != "done" {
            continue;
        }
        let at = t(&m["delivered_at"]);
        assert!(
            at < paused_at || at >= pause_end,
            "{text} typed during the pause: {m}"
        );
        if text == &burst_prompt {
            assert!(at >= pause_end, "written again after the pause: {m}");
        }
    }

    // Webhooks: signed, one delivery per id, message_done for each final
    // message, the rate limit, the budget.
    let done = hooks.wait_for("message_done", finals.len()).await;
    hooks.wait_for("rate_limited", 1).await;
    let budget = hooks.wait_for("budget", 1).await;
    assert!(
        budget.iter().any(|b| b["data"]["exceeded"] == true),
        "{budget:?}"
    );
    let got = hooks.got.lock().unwrap().clone();
    let mut ids_seen = BTreeSet::new();
    for (headers, body) in &got {
        verify(headers, body, SECRET);
        let v: Value = serde_json::from_str(body).unwrap();
        assert!(ids_seen.insert(v["id"].to_string()), "a duplicate: {v}");
    }
    let mut by_message: BTreeMap<String, usize> = BTreeMap::new();
    for b in &done {
        *by_message
            .entry(b["data"]["message_id"].to_string())
            .or_default() += 1;
    }
    for (text, m) in &finals {
        assert_eq!(
            by_message.get(&m["id"].to_string()),
            Some(&1),
            "{text}: {by_message:?}"
        );
    }
    assert!(
        !got.iter().any(|(_, b)| b.contains(KEY)),
        "the API key reached a webhook"
    );
}
