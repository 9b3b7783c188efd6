//! The smaller hardening points, each with its test: idempotent creates and
//! messages, 401 before 405, the Host check, the token file, `since=-1`, a
//! JSON 414, escapes printed safely by `ls`/`show`, `analyze` of a device,
//! and `export -o` over an existing file.

mod common;

use common::{herd_bin, Daemon};
use reqwest::StatusCode;
use serde_json::json;
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_or_message_returns_the_first_answer() {
    let d = Daemon::start("").await;
    let post = |path: &str, key: &str, body: serde_json::Value| {
        d.http
            .post(format!("{}{path}", d.url))
            .bearer_auth(&d.token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let body = json!({"command": ["cat"], "name": "once"});
    // Concurrent retries and a late one: one session, one answer.
    let (a, b) = tokio::join!(
        post("/v1/sessions", "create-1", body.clone()),
        post("/v1/sessions", "create-1", body.clone())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        (a.status(), b.status()),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    let a: serde_json::Value = a.json().await.unwrap();
    let b: serde_json::Value = b.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    let c = post("/v1/sessions", "create-1", body.clone())
        .await
        .unwrap();
    assert_eq!(c.headers()["idempotent-replayed"], "true");
    let c: serde_json::Value = c.json().await.unwrap();
    assert_eq!(c["id"], a["id"]);
    assert_eq!(d.count().await, 1, "one session for three tries");
    // The same key for another request is refused.
    let r = post("/v1/sessions", "create-1", json!({"command": ["true"]}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Messages too.
    let id = a["id"].as_str().unwrap();
    let path = format!("/v1/sessions/{id}/messages");
    let m1: serde_json::Value = post(&path, "msg-1", json!({"text": "hi"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m2: serde_json::Value = post(&path, "msg-1", json!({"text": "hi"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m1["id"], m2["id"]);
    let (_, q) = d.get(&format!("/v1/sessions/{id}/queue")).await;
    assert_eq!(q.as_array().unwrap().len(), 1, "{q}");
    // A bad key names the header.
    let r = post(&path, "", json!({"text": "x"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_request_whose_client_went_away_finishes_and_answers_its_retry() {
    // A job runner killed in the middle of a POST retries it with the same
    // key: the first request must not be cut short by the disconnect (its
    // effect half done, its key unanswered), or the retry makes a second.
    let d = Daemon::start(&format!(
        "[claude]\nbinary = {:?}\n",
        env!("CARGO_BIN_EXE_herd-fake-claude")
    ))
    .await;
    let cwd = tempfile::tempdir().unwrap();
    let id = d
        .create(json!({"profile": "claude", "cwd": cwd.path(),
            "claude": {"env": {"FAKE_CLAUDE_STARTUP_MS": "100"}}}))
        .await;
    d.wait_session(&id, std::time::Duration::from_secs(30), |s| {
        s["state"] == "ready"
    })
    .await;
    let url = format!("{}/v1/sessions/{id}/messages?wait=true&timeout=30s", d.url);
    let body = json!({"text": "slow MOCK-WAIT=1500"});
    let gave_up = d
        .http
        .post(&url)
        .bearer_auth(&d.token)
        .header("Idempotency-Key", "left-early")
        .json(&body)
        .timeout(std::time::Duration::from_millis(300))
        .send()
        .await;
    assert!(gave_up.is_err(), "{gave_up:?}");
    let r = d
        .http
        .post(&url)
        .bearer_auth(&d.token)
        .header("Idempotency-Key", "left-early")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let m: serde_json::Value = r.json().await.unwrap();
    assert_eq!(m["state"], "done", "{m}");
    let (_, q) = d.get(&format!("/v1/sessions/{id}/queue")).await;
    assert_eq!(q.as_array().unwrap().len(), 1, "typed once: {q}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_learn_nothing_and_foreign_hosts_are_refused() {
    let d = Daemon::start("").await;
    for (method, path) in [
        (reqwest::Method::PUT, "/v1/sessions"),
        (reqwest::Method::GET, "/v1/no-such-route"),
        (reqwest::Method::DELETE, "/v1/stats"),
    ] {
        let r = d
            .http
            .request(method.clone(), format!("{}{path}", d.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // DNS rebinding: a page at evil.example resolved to 127.0.0.1.
    let r = d
        .http
        .get(format!("{}/v1/sessions", d.url))
        .bearer_auth(&d.token)
        .header("Host", "evil.example:7777")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_host");
    let r = d
        .http
        .get(format!("{}/v1/sessions", d.url))
        .bearer_auth(&d.token)
        .header("Host", "localhost:7777")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A long URI gets a JSON 414; since=-1 a 400 naming it.
    let long = format!("{}/v1/sessions?task={}", d.url, "a".repeat(10_000));
    let r = d.http.get(long).bearer_auth(&d.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::URI_TOO_LONG);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "uri_too_long");
    let id = d.create(json!({"command": ["cat"]})).await;
    let (st, v) = d.get(&format!("/v1/sessions/{id}/output?since=-1")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("since"),
        "{v}"
    );
}

#[test]
fn a_readable_or_weak_token_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    for (token, mode, says) in [
        ("0123456789abcdef0123456789abcdef", 0o644, "chmod 600"),
        ("short", 0o600, "too short"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let file = data.join("token");
        std::fs::write(&file, token).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let o = Command::new(herd_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "started with a bad token file");
        assert!(err.contains(says), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_argv_with_escapes_are_printed_as_escapes() {
    let d = Daemon::start("").await;
    let id = d
        .create(json!({"command": ["sh", "-c", "sleep 600", "\u{1b}]0;pwned\u{7}", "x\u{202e}txt"], "name": "evil\u{202e}gnp.exe"}))
        .await;
    for args in [vec!["ls"], vec!["show", &id[..8]]] {
        let o = d.cli(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{202e}') && !out.contains('\u{7}'),
            "{out:?}"
        );
        assert!(out.contains("\\u{202e}"), "{out}");
    }
}

#[test]
fn analyze_refuses_a_device_and_export_does_not_overwrite() {
    let o = Command::new(herd_bin())
        .args(["analyze", "/dev/zero"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a regular file"));
    let dir = tempfile::tempdir().unwrap();
    let cast = dir.path().join("a.cast");
    std::fs::write(
        &cast,
        "{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.1, \"o\", \"hi\"]\n",
    )
    .unwrap();
    let out = dir.path().join("out.cast");
    std::fs::write(&out, "keep me").unwrap();
    let export = |force: bool| {
        let mut c = Command::new(herd_bin());
        c.args([
            "export",
            cast.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        if force {
            c.arg("--force");
        }
        c.stdin(Stdio::null()).output().unwrap()
    };
    let o = export(false);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    assert!(export(true).status.success());
    assert!(std::fs::read_to_string(&out).unwrap().contains("hi"));
}
