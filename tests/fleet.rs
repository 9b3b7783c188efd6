//! The fleet layer with the fake `claude`: token and cost budgets per
//! session, task and project (a warning notice at 80 %, a `budget` failure
//! at 100 %, an optional stop of the session; totals in stats, /metrics and
//! the API).

mod common;

use common::webhooks::{verify, Hooks};
use common::Daemon;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn config(extra: &str) -> String {
    format!(
        "[claude]\nbinary = {:?}\n[limits]\nmax_sessions = 20\nquiet_after = \"300ms\"\n[restart]\nbackoff_initial = \"10ms\"\n{extra}",
        env!("CARGO_BIN_EXE_herd-fake-claude")
    )
}

async fn claude(d: &Daemon, cwd: &std::path::Path, extra: Value) -> String {
    let mut body = json!({"profile": "claude", "cwd": cwd, "claude": {"env": {
        "FAKE_CLAUDE_STARTUP_MS": "100", "FAKE_CLAUDE_BUSY_MS": "100"}}});
    if let (Some(a), Some(b)) = (body.as_object_mut(), extra.as_object()) {
        a.extend(b.clone());
    }
    d.create(body).await
}

async fn send_wait(d: &Daemon, id: &str, text: &str) -> Value {
    d.send_wait(id, text, "30s").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_budget_warns_at_80_percent_then_fails_the_next_message() {
    // ~103 tokens a turn (input 100 + the reply's words): the second turn
    // passes 80 % of 250, the third passes 100 %, the fourth is refused.
    let d = Daemon::start(&config(
        "[budgets.tasks.t1]\ntokens = 250\n[prices.\"claude-fake\"]\ninput = 10.0\noutput = 10.0\n",
    ))
    .await;
    let cwd = tempfile::tempdir().unwrap();
    let id = claude(&d, cwd.path(), json!({"task_id": "t1"})).await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let m = send_wait(&d, &id, "one").await;
    assert_eq!(m["state"], "done", "{m}");
    let (_, notices) = d.get(&format!("/v1/notices?session={id}")).await;
    assert!(
        !notices
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["notice"] == "budget"),
        "{notices}"
    );
    assert_eq!(send_wait(&d, &id, "two").await["state"], "done");
    let (_, notices) = d.get(&format!("/v1/notices?session={id}")).await;
    let budget: Vec<&Value> = notices
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["notice"] == "budget")
        .collect();
    assert_eq!(budget.len(), 1, "{notices}");
    assert_eq!(budget[0]["scope"], "task");
    assert_eq!(budget[0]["task"], "t1");
    assert_eq!(budget[0]["unit"], "tokens");
    assert_eq!(budget[0]["exceeded"], false);
    // message_done notices for both turns.
    let done = notices
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["notice"] == "message_done")
        .count();
    assert_eq!(done, 2, "{notices}");
    assert_eq!(send_wait(&d, &id, "three").await["state"], "done");
    let m = send_wait(&d, &id, "four").await;
    assert_eq!(m["state"], "failed", "{m}");
    assert_eq!(m["failure"]["kind"], "budget", "{m}");
    assert_eq!(m["failure"]["scope"], "task", "{m}");
    assert!(m["delivered_at"].is_string() && m["reply"].is_null(), "{m}");
    // Nothing was typed: the session saw three prompts.
    let s = d.session(&id).await;
    assert_eq!(s["state"], "ready", "not stopped without stop_session");
    assert_eq!(s["usage"]["input_tokens"], 300, "{s}");
    let cost = s["cost_usd"].as_f64().unwrap();
    let u = |k: &str| s["usage"][k].as_u64().unwrap_or(0);
    let priced = u("input_tokens") + u("output_tokens");
    assert!((cost - priced as f64 * 10.0 / 1e6).abs() < 1e-9, "{s}");
    // Every token counts against a token budget, cache reads and writes too.
    let tokens = priced + u("cache_creation_input_tokens") + u("cache_read_input_tokens");
    // Totals: stats, the budgets list, /metrics.
    let (_, stats) = d.get("/v1/stats").await;
    assert!((stats["totals"]["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9);
    let task = stats["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["scope"] == "task")
        .cloned()
        .unwrap();
    assert_eq!(task["spent"]["tokens"], tokens, "{task}");
    assert_eq!(task["budget"]["tokens"], 250, "{task}");
    let text = d
        .http
        .get(format!("{}/metrics", d.url))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!(
            "herd_budget_spent_tokens{{scope=\"task\",name=\"t1\"}} {tokens}"
        )),
        "{text}"
    );
    assert!(text.contains("herd_session_cost_usd_total{"), "{text}");
    let out = d.cli(&["stats"]);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("budget task \"t1\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_budget_with_stop_session_stops_it_and_bad_budgets_are_named() {
    let d = Daemon::start(&config("")).await;
    let cwd = tempfile::tempdir().unwrap();
    let (st, e) = d
        .post(
            "/v1/sessions",
            json!({"profile": "claude", "cwd": cwd.path(), "budget": {"cost_usd": -2.0}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("budget.cost_usd") && msg.contains("-2"),
        "{msg}"
    );
    let (st, e) = d
        .post(
            "/v1/sessions",
            json!({"profile": "claude", "cwd": cwd.path(), "budget": {"stop_session": true}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(d.count().await, 0, "a rejected request changes nothing");

    let id = claude(
        &d,
        cwd.path(),
        json!({"budget": {"tokens": 150, "stop_session": true}}),
    )
    .await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    assert_eq!(send_wait(&d, &id, "one").await["state"], "done");
    assert_eq!(send_wait(&d, &id, "two").await["state"], "done");
    let m = send_wait(&d, &id, "three").await;
    assert_eq!(m["failure"]["kind"], "budget", "{m}");
    assert_eq!(m["failure"]["scope"], "session", "{m}");
    let s = d.wait_session(&id, T, |s| s["state"] == "stopped").await;
    assert!(
        s["reason"].as_str().unwrap().contains("budget of session"),
        "{s}"
    );
    assert_eq!(s["cause"]["kind"], "budget_spent", "{s}");
}

fn notify_config(port: u16, events: &str) -> String {
    format!(
        "[[notify]]\nurl = \"http://127.0.0.1:{port}/hook\"\nevents = [{events}]\nsecret = \"s3cret-key\"\nretry_initial = \"50ms\"\nretry_max = \"200ms\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_and_carry_budget_and_message_done() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hooks = Hooks::serve(listener, 2).await;
    let d = Daemon::start(&config(&format!(
        "{}[budgets.session]\ntokens = 120\n",
        notify_config(port, "\"message_done\", \"budget\", \"stopped\"")
    )))
    .await;
    let cwd = tempfile::tempdir().unwrap();
    let id = claude(&d, cwd.path(), json!({})).await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let m = send_wait(&d, &id, "hello").await;
    assert_eq!(m["state"], "done");
    // The first two attempts were refused: the same delivery came again.
    let done = hooks.wait_for("message_done", 1).await;
    let budget = hooks.wait_for("budget", 1).await;
    assert_eq!(budget[0]["data"]["scope"], "session", "{:?}", budget);
    assert_eq!(budget[0]["data"]["exceeded"], false, "the warning at 80 %");
    assert_eq!(done[0]["data"]["message_id"], m["id"]);
    assert_eq!(done[0]["session_id"], json!(id));
    let ok = common::wait_until(T, || {
        let g = hooks.got.lock().unwrap();
        g.len() >= 4
    })
    .await;
    assert!(ok);
    let got = hooks.got.lock().unwrap().clone();
    for (h, b) in &got {
        verify(h, b, "s3cret-key");
        assert!(!b.contains("s3cret-key"));
    }
    // Each delivery keeps its id across attempts, numbered 1, 2, ...; the
    // two refusals were retried.
    let mut by_id: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (h, _) in &got {
        by_id
            .entry(h["x-herd-delivery"].to_str().unwrap().to_string())
            .or_default()
            .push(h["x-herd-attempt"].to_str().unwrap().to_string());
    }
    for attempts in by_id.values() {
        let want: Vec<String> = (1..=attempts.len()).map(|n| n.to_string()).collect();
        assert_eq!(attempts, &want, "{by_id:?}");
    }
    let retried: usize = by_id.values().map(|a| a.len() - 1).sum();
    assert_eq!(retried, 2, "{by_id:?}");
    // A message that is not wanted (waiting_input is not in `events`) is not sent.
    assert!(hooks.bodies().iter().all(|b| b["event"] != "waiting_input"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_survives_kill_9_and_notify_test_delivers_once_acknowledged() {
    // The endpoint is down while the first daemon runs.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = config(&notify_config(port, "\"failed\""));
    let mut d = Daemon::start(&cfg).await;
    let out = d.cli(&["notify", "test", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let queued: Value = serde_json::from_slice(&out.stdout).unwrap();
    let delivery = queued[0]["id"].as_str().unwrap().to_string();
    d.kill9();
    let dir = d.into_dir();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let hooks = Hooks::serve(listener, 0).await;
    let d = Daemon::start_in(dir, &cfg).await;
    let got = hooks.wait_for("test", 1).await;
    assert_eq!(
        got[0]["id"],
        json!(delivery),
        "the stored delivery, same id"
    );
    // Acknowledged: never sent again.
    let data = d.data_dir().join("herd.db");
    let ok = common::wait_until(T, || {
        let c = rusqlite::Connection::open(&data).unwrap();
        c.query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0))
            .unwrap()
            == 0
    })
    .await;
    assert!(ok, "the outbox empties once acknowledged");
    assert_eq!(hooks.wait_for("test", 1).await.len(), 1);
    // Without webhooks, `notify test` says so.
    drop(d);
    let bare = Daemon::start(&config("")).await;
    let out = bare.cli(&["notify", "test"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [[notify]] webhook"));
}
