//! What an operator reaches for, against a real daemon: a valid OpenAPI
//! document, `wait`, `rm`, `cancel`, exit codes, history that survives a
//! daemon restart, `serve` that changes nothing when it cannot listen,
//! completions, the man page, config discovery, `doctor` and `--version`.

mod common;

use common::{herd_bin, Daemon};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn bash() -> Value {
    json!({"command": ["bash", "--norc", "--noprofile"], "env": {"PS1": "$ "}})
}

/// The herd binary alone (no daemon), with a clean environment for config discovery.
fn herd(args: &[&str], home: &std::path::Path) -> Output {
    Command::new(herd_bin())
        .args(args)
        .env("HOME", home)
        .env_remove("HERD_HOME")
        .env_remove("HERD_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("HERD_URL")
        .env_remove("HERD_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run herd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_validates_and_durations_are_humantime() {
    let d = Daemon::start("[limits]\nidle_timeout = \"45m\"\n").await;
    let (st, doc) = d.get("/v1/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    let raw = doc.to_string();
    assert!(!raw.contains("\"secs\""), "a duration as an object: {raw}");
    for route in [
        "/v1/sessions/{id}/wait",
        "/v1/sessions/{id}/remove",
        "/v1/sessions/{id}/messages/{mid}",
    ] {
        assert!(doc["paths"][route].is_object(), "{route} not documented");
    }
    // On the wire too.
    let id = d.create(bash()).await;
    let v = d.session(&id).await;
    assert_eq!(v["limits"]["idle_timeout"], "45m");
    assert_eq!(v["restart"]["restart_window"], "1m");
    let file = d.dir.path().join("openapi.json");
    std::fs::write(&file, &raw).unwrap();
    let validator = Command::new("openapi-spec-validator")
        .arg(&file)
        .output()
        .or_else(|_| {
            Command::new("python3")
                .args(["-m", "openapi_spec_validator"])
                .arg(&file)
                .output()
        });
    match validator {
        Ok(o) if o.status.success() => {}
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            eprintln!("SKIPPED the validator: openapi-spec-validator is not installed (pip install openapi-spec-validator)");
        }
        Ok(o) => panic!("openapi-spec-validator rejects the document: {}", text(&o)),
        Err(e) => eprintln!("SKIPPED the validator: cannot run it: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_cancel_rm_and_exit_codes() {
    let d = Daemon::start("").await;
    let id = d.create(bash()).await;
    let short = &id[..8];
    let out = ok(d.cli(&[
        "wait",
        short,
        "--state",
        "ready,waiting_input",
        "--timeout",
        "20s",
    ]));
    assert_eq!(out, format!("{short} ready\n"));
    // Not reached in time: 7, and the message names the states.
    let o = d.cli(&["wait", short, "--state", "stopped", "--timeout", "300ms"]);
    assert_eq!(code(&o), Some(7), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("300ms"),
        "{}",
        text(&o)
    );
    // A bad state name is a usage error naming the value.
    let o = d.cli(&["wait", short, "--state", "sleepy"]);
    assert_eq!(code(&o), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("sleepy"));

    // A generic reply is the command's output: no echo, no next prompt.
    let reply = ok(d.cli(&["send", short, "echo hello", "--wait"]));
    assert_eq!(reply, "hello\n");

    // Cancel: a queued message behind a long command.
    let _busy = ok(d.cli(&["send", short, "sleep 30"]));
    let mid = ok(d.cli(&["send", short, "echo never"])).trim().to_string();
    let m: Value = serde_json::from_str(&ok(d.cli(&["cancel", short, &mid, "--json"]))).unwrap();
    assert_eq!(m["state"], "cancelled");
    let o = d.cli(&["cancel", short, &mid]);
    assert_eq!(
        code(&o),
        Some(6),
        "cancelling twice is a conflict: {}",
        text(&o)
    );
    let o = d.cli(&["cancel", short, "00000000-0000-0000-0000-000000000000"]);
    assert_eq!(code(&o), Some(5), "{}", text(&o));
    // A timed-out send --wait whose message was never typed cancels it.
    let o = d.cli(&["send", short, "echo late", "--wait", "--timeout", "300ms"]);
    assert_eq!(code(&o), Some(7), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cancelled"),
        "{}",
        text(&o)
    );
    let (_, q) = d.get(&format!("/v1/sessions/{id}/queue")).await;
    let late = q
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"] == "echo late")
        .unwrap()
        .clone();
    assert_eq!(late["state"], "cancelled", "{q}");

    // rm of a live session: 6, nothing removed.
    let o = d.cli(&["rm", short]);
    assert_eq!(code(&o), Some(6), "{}", text(&o));
    // kill is idempotent; restart brings a stopped session back.
    ok(d.cli(&["kill", short, "--force"]));
    ok(d.cli(&["wait", short, "--state", "stopped", "--timeout", "20s"]));
    let again = ok(d.cli(&["kill", short]));
    assert_eq!(again, format!("{short} stopped\n"));
    let o = d.cli(&["wait", short, "--state", "ready", "--timeout", "5s"]);
    assert_eq!(
        code(&o),
        Some(6),
        "an ended session never gets ready: {}",
        text(&o)
    );
    let o = d.cli(&["attach", short]);
    assert_eq!(code(&o), Some(6), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("herd logs"),
        "{}",
        text(&o)
    );
    let restarted = ok(d.cli(&["restart", short]));
    assert!(restarted.contains("(generation 1)"), "{restarted}");
    assert!(
        !restarted.contains("stopped"),
        "restart prints the new state: {restarted}"
    );
    d.wait_session(&id, T, |s| s["state"] == "ready" && s["generation"] == 1)
        .await;
    ok(d.cli(&["kill", short, "--force"]));
    ok(d.cli(&["wait", short, "--state", "stopped", "--timeout", "20s"]));

    // rm --stopped: the session, its store rows and its recordings go.
    let recordings = d.data_dir().join("recordings").join(&id);
    // Written behind the session, as background work.
    assert!(common::wait_until(T, || recordings.exists()).await);
    let out = ok(d.cli(&["rm", "--stopped"]));
    assert_eq!(out, format!("{short} removed\n"));
    assert!(!recordings.exists(), "recordings left behind");
    let (st, _) = d.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let o = d.cli(&["show", short]);
    assert_eq!(code(&o), Some(5), "{}", text(&o));
    let db = rusqlite::Connection::open(d.data_dir().join("herd.db")).unwrap();
    for table in ["sessions", "events", "messages"] {
        let col = if table == "sessions" {
            "id"
        } else {
            "session_id"
        };
        let n: i64 = db
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE {col} = ?1"),
                [&id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0, "{table} rows left for {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_counters_and_output_survive_a_daemon_restart() {
    let d = Daemon::start("").await;
    let id = d.create(bash()).await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let (st, _) = d
        .post(
            &format!("/v1/sessions/{id}/messages?wait=true&timeout=20s"),
            json!({"text": "echo marker-$((6*7))"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    d.req(
        reqwest::Method::DELETE,
        &format!("/v1/sessions/{id}?force=true"),
        None,
    )
    .await;
    let before = d.wait_session(&id, T, |s| s["state"] == "stopped").await;
    assert!(before["metrics"]["bytes_out"].as_u64().unwrap() > 0);
    let (_, events_before) = d.get(&format!("/v1/events?session={id}")).await;
    let n_before = events_before.as_array().unwrap().len();
    assert!(n_before >= 4, "{events_before}");

    let d = Daemon::start_in(d.into_dir(), "").await;
    let after = d.session(&id).await;
    for k in ["bytes_out", "bytes_in", "inputs"] {
        assert_eq!(after["metrics"][k], before["metrics"][k], "{k} reset");
    }
    let (_, events) = d.get(&format!("/v1/events?session={id}")).await;
    assert_eq!(events.as_array().unwrap().len(), n_before, "{events}");
    // The store keeps times to the millisecond; the rest is exact.
    let strip = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let mut e = e.clone();
                let at = humantime::parse_rfc3339(e["at"].as_str().unwrap()).unwrap();
                let ms = at
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis();
                e["at"] = json!(ms.to_string());
                e
            })
            .collect()
    };
    assert_eq!(
        strip(&events),
        strip(&events_before),
        "history differs after restart"
    );
    let (_, per_session) = d.get(&format!("/v1/sessions/{id}/events")).await;
    assert_eq!(per_session.as_array().unwrap().len(), n_before);
    let cli_events = ok(d.cli(&["events", "--session", &id[..8]]));
    assert!(cli_events.contains("stopped"), "{cli_events}");
    // logs and screen show the last output.
    let logs = ok(d.cli(&["logs", &id[..8]]));
    assert!(logs.contains("marker-42"), "{logs}");
    let screen = ok(d.cli(&["screen", &id[..8]]));
    assert!(screen.contains("marker-42"), "{screen}");
    // The counters carry no state label: one series per session, stable.
    let resp = d
        .http
        .get(format!("{}/metrics", d.url))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    let metrics = resp.text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("herd_session_bytes_out_total{") && l.contains(&id))
        .unwrap();
    assert!(!line.contains("state="), "{line}");
    assert!(
        line.ends_with(&format!(" {}", before["metrics"]["bytes_out"])),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_that_cannot_listen_changes_nothing() {
    let d = Daemon::start("").await;
    let id = d
        .create(json!({"command": ["sleep", "600"], "restart": {"policy": "always"}}))
        .await;
    d.wait_session(&id, T, |s| s["state"] == "ready" || s["state"] == "busy")
        .await;
    let dir = d.into_dir();
    let db = dir.path().join("data").join("herd.db");
    let generation = |db: &std::path::Path| -> i64 {
        let c = rusqlite::Connection::open(db).unwrap();
        c.query_row("SELECT generation FROM sessions", [], |r| r.get(0))
            .unwrap()
    };
    let g0 = generation(&db);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let o = Command::new(herd_bin())
        .args(["serve", "--listen", &port, "--data-dir"])
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot listen"),
        "{}",
        text(&o)
    );
    assert_eq!(
        generation(&db),
        g0,
        "a generation was spent on a daemon that never served"
    );
    drop(taken);
    let d = Daemon::start_in(dir, "").await;
    let v = d
        .wait_session(&id, T, |s| s["state"] == "ready" || s["state"] == "busy")
        .await;
    assert_eq!(v["generation"].as_i64().unwrap(), g0 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_its_token_and_shows_no_client_flags() {
    let home = tempfile::tempdir().unwrap();
    let help = ok(herd(&["serve", "--help"], home.path()));
    assert!(!help.contains("--url"), "{help}");
    assert!(help.contains("--token"), "{help}");
    let data = home.path().join("data");
    let mut child = Command::new(herd_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token",
            "s3cret-token-for-test",
            "--data-dir",
        ])
        .arg(&data)
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url_file = data.join("url");
    assert!(common::wait_until(T, || url_file.exists()).await);
    let url = std::fs::read_to_string(&url_file).unwrap();
    let http = reqwest::Client::new();
    let st = |t: &'static str| {
        let http = http.clone();
        let url = url.trim().to_string();
        async move {
            http.get(format!("{url}/v1/sessions"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(st("s3cret-token-for-test").await, StatusCode::OK);
    assert_eq!(st("wrong").await, StatusCode::UNAUTHORIZED);
    // A wrong data dir says so, and exits 3.
    let o = herd(&["--data-dir", "/nonexistent/herd", "ls"], home.path());
    assert_eq!(code(&o), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no daemon token in /nonexistent/herd"),
        "{}",
        text(&o)
    );
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

#[test]
fn version_completions_man_and_the_new_hint() {
    let home = tempfile::tempdir().unwrap();
    let v = ok(herd(&["--version"], home.path()));
    assert!(v.starts_with("herd 0.") && v.contains("(commit "), "{v}");
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(herd(&["completions", shell], home.path()));
        assert!(
            script.contains("herd") && script.contains("wait"),
            "{shell}: {script}"
        );
    }
    let man = ok(herd(&["man"], home.path()));
    assert!(man.contains(".TH herd 1"), "{man}");
    assert!(man.contains("doctor"), "{man}");
    let o = herd(&["new", "bash", "-l"], home.path());
    assert_eq!(code(&o), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("herd new -- bash -l"),
        "{}",
        text(&o)
    );
}

#[test]
fn config_is_discovered_in_order_and_shown_with_origins() {
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().join("xdg");
    std::fs::create_dir_all(xdg.join("herd")).unwrap();
    std::fs::write(
        xdg.join("herd/config.toml"),
        "[limits]\nmax_sessions = 3\n[server]\ntoken = \"hidden-value-of-sixteen-chars\"\n",
    )
    .unwrap();
    let explicit = common::write(home.path(), "explicit.toml", "[limits]\nmax_sessions = 4\n");
    let env_file = common::write(home.path(), "env.toml", "[limits]\nmax_sessions = 5\n");
    let show = |extra: &[&str], env: Option<&std::path::Path>| {
        let mut c = Command::new(herd_bin());
        c.arg("config").arg("show").args(extra).arg("--json");
        c.env("HOME", home.path())
            .env("XDG_CONFIG_HOME", &xdg)
            .env_remove("HERD_CONFIG");
        if let Some(e) = env {
            c.env("HERD_CONFIG", e);
        }
        let v: Value = serde_json::from_str(&ok(c.output().unwrap())).unwrap();
        v
    };
    let v = show(&[], None);
    assert_eq!(v["limits.max_sessions"]["value"], "3");
    assert!(v["limits.max_sessions"]["origin"]
        .as_str()
        .unwrap()
        .ends_with("herd/config.toml"));
    assert_eq!(v["limits.idle_timeout"]["origin"], "default");
    assert_eq!(v["server.token"]["value"], "\"***\"", "a secret was shown");
    let v = show(&[], Some(&env_file));
    assert_eq!(v["limits.max_sessions"]["value"], "5");
    let v = show(&["--config", explicit.to_str().unwrap()], Some(&env_file));
    assert_eq!(v["limits.max_sessions"]["value"], "4");
    // check: a valid file, and a bad one named by key and value.
    ok(herd(
        &["config", "check", explicit.to_str().unwrap()],
        home.path(),
    ));
    let bad = common::write(
        home.path(),
        "bad.toml",
        "[limits]\nidle_timeout = \"soonish\"\n",
    );
    let o = herd(&["config", "check", bad.to_str().unwrap()], home.path());
    assert_eq!(code(&o), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("idle_timeout") && err.contains("soonish"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_a_healthy_daemon_and_a_missing_one() {
    let d = Daemon::start("").await;
    let o = Command::new(herd_bin())
        .args(["doctor", "--json", "--data-dir"])
        .arg(d.data_dir())
        .env_remove("HERD_URL")
        .env_remove("HERD_TOKEN")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let checks: Value = serde_json::from_slice(&o.stdout).unwrap();
    let get = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(get("daemon")["status"], "ok", "{checks}");
    assert_eq!(get("store")["status"], "ok", "{checks}");
    assert_eq!(get("token")["status"], "ok", "{checks}");
    // A token that is wrong fails, with a fix, exit 9.
    let o = Command::new(herd_bin())
        .args(["doctor", "--token", "wrong", "--data-dir"])
        .arg(d.data_dir())
        .env_remove("HERD_URL")
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(9), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("fix:"),
        "{}",
        text(&o)
    );
}
