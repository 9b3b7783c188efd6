//! Observability over the real `herd serve`: the OpenAPI document, /v1/stats,
//! /metrics, events (per session, JSON and WebSocket) and their CLI commands.

mod common;

use common::Daemon;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(20);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket at `path` with `Authorization: Bearer <token>`.
async fn ws(d: &Daemon, path: &str, token: Option<&str>) -> Result<Ws, String> {
    let url = format!("{}{}", d.url.replacen("http://", "ws://", 1), path);
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((s, _)) => Ok(s),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            Err(format!("status {}", resp.status().as_u16()))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The next JSON text frame, or None after `timeout`.
async fn next_json(s: &mut Ws, timeout: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = tokio::time::timeout_at(deadline, s.next()).await.ok()??;
        if let Message::Text(t) = frame.expect("websocket frame") {
            return Some(serde_json::from_str(t.as_str()).expect("JSON frame"));
        }
    }
}

/// Reads frames until `stop` holds for one; returns every frame read, in order.
async fn read_until(s: &mut Ws, what: &str, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + T;
    let mut seen = vec![];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(v) = next_json(s, left).await else {
            panic!("no frame for {what} within {T:?}; got {seen:#?}");
        };
        seen.push(v.clone());
        if stop(&v) {
            return seen;
        }
    }
}

/// (from, to) of each event.
fn transitions(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Each transition starts where the previous one ended.
fn assert_chained(events: &[Value]) {
    let t = transitions(events);
    assert_eq!(t[0], ("pending".into(), "starting".into()), "{t:?}");
    for w in t.windows(2) {
        assert_eq!(w[0].1, w[1].0, "broken chain in {t:?}");
    }
}

/// Polls `GET path` until `pred` holds on its JSON; panics after [`T`].
async fn wait_json(d: &Daemon, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let (st, v) = d.get(path).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out on {path}: {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn metrics_text(d: &Daemon) -> (StatusCode, String, String) {
    let resp = d
        .http
        .get(format!("{}/metrics", d.url))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

fn stdout(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "herd failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_served_routes() {
    let d = Daemon::start("").await;
    let (st, doc) = d.get("/v1/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(doc["info"]["title"], "herd");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete"].contains(&m.as_str()) {
                assert!(op["responses"].is_object(), "{m} {path}");
                documented.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    // The routes of DESIGN.md that exist by now, plus this issue's.
    for (m, p) in [
        ("POST", "/v1/sessions"),
        ("GET", "/v1/sessions"),
        ("POST", "/v1/projects/{project}/sessions"),
        ("GET", "/v1/sessions/{id}"),
        ("DELETE", "/v1/sessions/{id}"),
        ("POST", "/v1/sessions/{id}/input"),
        ("GET", "/v1/sessions/{id}/screen"),
        ("GET", "/v1/sessions/{id}/output"),
        ("GET", "/v1/sessions/{id}/events"),
        ("GET", "/v1/tasks/{task}"),
        ("GET", "/v1/events"),
        ("GET", "/v1/stats"),
        ("GET", "/v1/openapi.json"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
    ] {
        assert!(
            documented.contains(&(m.to_string(), p.to_string())),
            "{m} {p} is not in the document"
        );
    }
    // Without the token every request but /healthz is 401 (a stranger
    // cannot map the routes); with it, every other method on a documented
    // path is 405.
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "abc" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let resp = d
                .http
                .request(
                    Method::from_bytes(m.as_bytes()).unwrap(),
                    format!("{}{concrete}", d.url),
                )
                .send()
                .await
                .unwrap();
            let served = documented.contains(&(m.to_string(), path.clone()));
            let expected = match (served, path.as_str()) {
                (true, "/healthz") => StatusCode::OK,
                (false, "/healthz") => StatusCode::METHOD_NOT_ALLOWED,
                _ => StatusCode::UNAUTHORIZED,
            };
            assert_eq!(resp.status(), expected, "{m} {path}");
            if !served {
                let (st, _) = d
                    .req(Method::from_bytes(m.as_bytes()).unwrap(), &concrete, None)
                    .await;
                assert_eq!(
                    st,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {path} with the token"
                );
            }
        }
    }
    // The documented error body is the one served.
    let (st, v) = d.get("/v1/sessions/ffffffff").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let schema = &doc["components"]["schemas"]["ErrorDetail"]["properties"];
    for field in ["code", "message"] {
        assert!(schema.get(field).is_some(), "{schema}");
        assert!(v["error"][field].is_string(), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observability_routes_need_the_token() {
    let d = Daemon::start("").await;
    let id = d.create(json!({"command": ["cat"]})).await;
    for path in [
        "/v1/openapi.json".to_string(),
        "/v1/stats".to_string(),
        "/metrics".to_string(),
        "/v1/events".to_string(),
        "/v1/events?task=x".to_string(),
        format!("/v1/sessions/{id}/events"),
    ] {
        for auth in [None, Some("Bearer wrong-token"), Some("Basic abc")] {
            let mut r = d.http.get(format!("{}{}", d.url, path));
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            let resp = r.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path} {auth:?}");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["code"], "unauthorized", "{path}");
        }
    }
    // The WebSocket handshake too.
    assert_eq!(
        ws(&d, "/v1/events", None).await.err().as_deref(),
        Some("status 401")
    );
    assert_eq!(
        ws(&d, "/v1/events", Some("wrong")).await.err().as_deref(),
        Some("status 401")
    );
    assert!(ws(&d, "/v1/events", Some(&d.token)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_each_session_with_its_labels() {
    let d = Daemon::start("").await;
    let id = d
        .create(json!({"command": ["cat"], "name": "web \"one\"", "task_id": "task-m", "project_id": "proj-m"}))
        .await;
    d.wait_session(&id, T, |v| v["state"] == "ready").await;
    let (st, _) = d
        .post(
            &format!("/v1/sessions/{id}/input"),
            json!({"text": "hello\n"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // cat echoes: bytes_out reaches the metrics.
    let prefix = format!(
        "herd_session_bytes_out_total{{id=\"{id}\",name=\"web \\\"one\\\"\",task=\"task-m\",project=\"proj-m\"}} "
    );
    let deadline = Instant::now() + T;
    loop {
        let (st, ctype, text) = metrics_text(&d).await;
        assert_eq!(st, StatusCode::OK);
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        let out = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok());
        if out.is_some_and(|n| n >= 6) {
            break;
        }
        assert!(Instant::now() < deadline, "no bytes_out for {id}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.wait_session(&id, T, |v| v["state"] == "ready").await;
    let (_, _, text) = metrics_text(&d).await;
    for family in [
        "herd_session_info gauge",
        "herd_session_bytes_in_total counter",
        "herd_session_restarts_total counter",
        "herd_sessions gauge",
        "herd_uptime_seconds gauge",
        "herd_daemon_resident_memory_bytes gauge",
    ] {
        let name = family.split(' ').next().unwrap();
        assert!(text.contains(&format!("# HELP {name} ")), "no HELP {name}");
        assert!(
            text.contains(&format!("# TYPE {family}\n")),
            "no TYPE {family}"
        );
    }
    assert!(
        text.contains(&format!(
            "herd_session_info{{id=\"{id}\",name=\"web \\\"one\\\"\",task=\"task-m\",project=\"proj-m\",state=\"ready\"}} 1\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("herd_sessions{state=\"ready\"} 1\n"),
        "{text}"
    );
    // Every sample follows the TYPE line of its family and has a number.
    let mut typed = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_string());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(typed.contains(name), "sample before its TYPE: {line}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        }
    }
    let rss = text
        .lines()
        .find_map(|l| l.strip_prefix("herd_daemon_resident_memory_bytes "))
        .unwrap();
    assert!(rss.parse::<u64>().unwrap() > 1_000_000, "{rss}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_follow_sessions_as_they_come_and_go() {
    let d = Daemon::start("[limits]\nmax_sessions = 7\n").await;
    let (st, s) = d.get("/v1/stats").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s["sessions"]["total"], 0, "{s}");
    assert_eq!(s["sessions"]["live"], 0);
    assert_eq!(s["sessions"]["max_sessions"], 7);
    assert_eq!(s["sessions"]["by_state"].as_object().unwrap().len(), 10);
    assert_eq!(s["daemon"]["pid"], d.child.id());
    assert!(
        s["daemon"]["rss_bytes"].as_u64().unwrap() > 1_000_000,
        "{s}"
    );
    assert!(s["daemon"]["cpu_seconds"].as_f64().is_some(), "{s}");
    assert!(s["uptime_seconds"].as_f64().unwrap() > 0.0);

    let id = d.create(json!({"command": ["cat"]})).await;
    let s = wait_json(&d, "/v1/stats", |s| {
        s["sessions"]["by_state"]["ready"] == 1 && s["sessions"]["live"] == 1
    })
    .await;
    assert_eq!(s["sessions"]["total"], 1);
    let (st, _) = d
        .post(
            &format!("/v1/sessions/{id}/input"),
            json!({"text": "abcdef\n"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let s = wait_json(&d, "/v1/stats", |s| {
        s["totals"]["bytes_out"].as_u64() >= Some(7)
    })
    .await;
    assert_eq!(s["totals"]["inputs"], 1, "{s}");
    assert_eq!(s["totals"]["bytes_in"], 7, "{s}");

    let (st, _) = d
        .req(Method::DELETE, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let s = wait_json(&d, "/v1/stats", |s| {
        s["sessions"]["by_state"]["stopped"] == 1
    })
    .await;
    assert_eq!(s["sessions"]["live"], 0, "{s}");
    assert_eq!(s["sessions"]["total"], 1);
    assert_eq!(s["sessions"]["by_state"]["ready"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_delivers_new_transitions_and_filters_by_task() {
    let d = Daemon::start("").await;
    let mut all = ws(&d, "/v1/events", Some(&d.token)).await.unwrap();
    let mut only_b = ws(&d, "/v1/events?task=task-b", Some(&d.token))
        .await
        .unwrap();

    // A session of another task runs to its end first...
    let a = d
        .create(json!({"command": ["true"], "task_id": "task-a", "restart": {"policy": "never"}}))
        .await;
    read_until(&mut all, "session a's end", |e| {
        e["session_id"] == a.as_str() && e["to"] == "stopped"
    })
    .await;
    // ...then one of task-b is created, settles and is stopped.
    let b = d
        .create(json!({"command": ["cat"], "task_id": "task-b"}))
        .await;
    let events = read_until(&mut only_b, "session b ready", |e| e["to"] == "ready").await;
    let (st, _) = d
        .req(Method::DELETE, &format!("/v1/sessions/{b}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut events = events;
    events.extend(read_until(&mut only_b, "session b's end", |e| e["to"] == "stopped").await);

    // Only b's transitions came through the filtered stream, in order,
    // from pending to stopped; a's (published earlier) never did.
    for e in &events {
        assert_eq!(e["session_id"], b.as_str(), "{e}");
        assert_eq!(e["task_id"], "task-b");
        assert_eq!(e["generation"], 0);
        assert!(e["at"].as_str().unwrap().ends_with('Z'), "{e}");
    }
    assert_chained(&events);
    let t = transitions(&events);
    assert_eq!(t.last().unwrap(), &("stopping".into(), "stopped".into()));

    // The per-session history holds the same transitions, in the same order.
    let (st, history) = d.get(&format!("/v1/sessions/{b}/events")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(transitions(history.as_array().unwrap()), t);
    let (st, history_a) = d.get(&format!("/v1/sessions/{}/events", &a[..8])).await;
    assert_eq!(st, StatusCode::OK);
    let ta = transitions(history_a.as_array().unwrap());
    assert_eq!(ta.first().unwrap(), &("pending".into(), "starting".into()));
    assert_eq!(ta.last().unwrap().1, "stopped");
    let (st, _) = d.get("/v1/sessions/0000000/events").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // The JSON list filters the same way; since_recent replays first.
    let (_, recent) = d.get("/v1/events?task=task-a").await;
    assert_eq!(transitions(recent.as_array().unwrap()), ta);
    let (_, recent) = d
        .get(&format!("/v1/events?session={}&limit=2", &b[..6]))
        .await;
    assert_eq!(transitions(recent.as_array().unwrap()), t[t.len() - 2..]);
    let (st, err) = d.get("/v1/events?session=xyz").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("session"));
    let mut replay = ws(
        &d,
        &format!("/v1/events?session={a}&since_recent=true"),
        Some(&d.token),
    )
    .await
    .unwrap();
    let replayed = read_until(&mut replay, "a's replay", |e| e["to"] == "stopped").await;
    assert_eq!(transitions(&replayed), ta);
}

/// Spawns `herd ARGS` against the daemon with stdout piped, lines sent to a channel.
fn spawn_cli(
    d: &Daemon,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(common::herd_bin())
        .args(args)
        .env("HERD_URL", &d.url)
        .env("HERD_TOKEN", &d.token)
        .env_remove("HERD_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cli_prints_recent_and_live_transitions() {
    let d = Daemon::start("").await;
    let id = d
        .create(json!({"command": ["true"], "task_id": "task-c", "restart": {"policy": "never"}}))
        .await;
    d.wait_session(&id, T, |v| v["state"] == "stopped").await;
    let short = &id[..8];

    let out = stdout(&d.cli(&["events", "--task", "task-c"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 3, "{out}");
    let first = lines[0];
    assert!(
        first.contains(&format!("  {short}  pending       → starting ")),
        "{out}"
    );
    assert!(first.contains("gen 0"), "{first}");
    assert!(
        lines.last().unwrap().contains("stopping      → stopped"),
        "{out}"
    );
    // Aligned: the arrow is in the same column on every line.
    let col = first.find('→').unwrap();
    assert!(lines.iter().all(|l| l.find('→') == Some(col)), "{out}");
    assert_eq!(stdout(&d.cli(&["events", "--task", "nope"])), "");
    let json: Value =
        serde_json::from_str(&stdout(&d.cli(&["events", "--session", short, "--json"]))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), lines.len());
    assert_eq!(json[0]["session_id"], id.as_str());

    // --follow prints transitions as they happen, until killed.
    let (mut child, rx) = spawn_cli(&d, &["events", "--follow", "--task", "task-f"]);
    // The CLI subscribes asynchronously: create sessions until one shows.
    let deadline = Instant::now() + T;
    let (seen, line) = 'found: loop {
        assert!(
            Instant::now() < deadline,
            "herd events --follow printed nothing"
        );
        let f = d
            .create(
                json!({"command": ["true"], "task_id": "task-f", "restart": {"policy": "never"}}),
            )
            .await;
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                if line.contains(&f[..8]) {
                    break 'found (f, line);
                }
            }
        }
    };
    assert!(line.contains("→"), "{line}");
    // The rest of that session's life follows, down to stopped.
    let until = Instant::now() + T;
    loop {
        let line = rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .expect("the follow stream ended early");
        if line.contains(&seen[..8]) && line.contains("→ stopped") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_task_cli() {
    let d = Daemon::start("").await;
    let id = d
        .create(json!({"command": ["cat"], "task_id": "job-42", "name": "worker"}))
        .await;
    d.wait_session(&id, T, |v| v["state"] == "ready").await;

    let out = stdout(&d.cli(&["stats"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("sessions ") && l.ends_with("1 live (max 10), 1 in total")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("ready") && l.ends_with(" 1")),
        "{out}"
    );
    let pid = format!("{}", d.child.id());
    assert!(
        out.lines()
            .any(|l| l.starts_with("pid ") && l.ends_with(&pid)),
        "{out}"
    );
    let v: Value = serde_json::from_str(&stdout(&d.cli(&["stats", "--json"]))).unwrap();
    assert_eq!(v["sessions"]["live"], 1);
    assert_eq!(v["daemon"]["pid"], d.child.id());

    let out = stdout(&d.cli(&["task", "job-42"]));
    let field = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l[name.len()..].trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in\n{out}"))
    };
    assert_eq!(field("id"), id);
    assert_eq!(field("task"), "job-42");
    assert_eq!(field("name"), "worker");
    let v: Value = serde_json::from_str(&stdout(&d.cli(&["task", "job-42", "--json"]))).unwrap();
    assert_eq!(v["id"], id.as_str());
    let o = d.cli(&["task", "no-such-task"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no session serves task"), "{err}");
}
