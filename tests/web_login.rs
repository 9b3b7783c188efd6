//! The dashboard's login over real HTTP: one-time links, the session cookie,
//! the token form, and the origin and CSRF checks on browser writes (the
//! browser itself is in tests/web.rs).

mod common;
#[path = "web/login.rs"]
mod login;

use common::Daemon;
use login::{host, login_url, raw_client, redeem};
use reqwest::header::{COOKIE, ORIGIN, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_link_works_once_and_sets_a_strict_http_only_cookie() {
    let d = Daemon::start("").await;
    let url = login_url(&d).await;
    assert!(
        url.starts_with(&format!("{}/login?ticket=", d.url)),
        "{url}"
    );
    // Nothing of the token is in the link.
    assert!(!url.contains(&d.token));
    let (st, cookie, location) = redeem(&url).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(
        location.as_deref(),
        Some("/"),
        "the ticket leaves the address"
    );
    let cookie = cookie.expect("a session cookie");
    let port = d.url.rsplit(':').next().unwrap();
    assert!(cookie.starts_with(&format!("herd_{port}=")), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    // Used once: the same link no longer logs in, nor does a made-up one.
    let (st, again, _) = redeem(&url).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(again.is_none());
    let (st, forged, _) = redeem(&format!("{}/login?ticket={}", d.url, "ab".repeat(32))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(forged.is_none());

    // The cookie opens the page and the API's reads.
    let pair = cookie.split(';').next().unwrap().to_string();
    let http = raw_client();
    let page = http
        .get(format!("{}/", d.url))
        .header(COOKIE, &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(
        !csp.contains("'unsafe-eval'") && !csp.contains("script-src 'self' 'unsafe-inline'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/assets/app.js") && !html.contains("<script>"),
        "no inline script"
    );
    let list = http
        .get(format!("{}/v1/sessions", d.url))
        .header(COOKIE, &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    // Without the cookie: the login page, and 401 from the API as before.
    let page = http.get(format!("{}/", d.url)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()["location"], "/login");
    let r = http
        .get(format!("{}/v1/sessions", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "missing Authorization: Bearer <token> header"
    );
    let r = http
        .get(format!("{}/v1/sessions", d.url))
        .bearer_auth("wrong")
        .header(COOKIE, &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a wrong token is never rescued by a cookie"
    );
    // A browser's cookie cannot mint links: the token can.
    let r = http
        .post(format!("{}/v1/login", d.url))
        .header(COOKIE, &pair)
        .header(ORIGIN, &d.url)
        .header("x-herd-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A cookie of another daemon (another token) is refused.
    let other = Daemon::start("").await;
    let (_, other_cookie, _) = redeem(&login_url(&other).await).await;
    let other_pair = other_cookie.unwrap().split(';').next().unwrap().replace(
        &format!("herd_{}", other.url.rsplit(':').next().unwrap()),
        &format!("herd_{port}"),
    );
    let r = http
        .get(format!("{}/v1/sessions", d.url))
        .header(COOKIE, other_pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The token form is the fallback; a wrong token gets no cookie.
    let r = http
        .post(format!("{}/login", d.url))
        .header(ORIGIN, &d.url)
        .form(&[("token", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(SET_COOKIE).is_none());
    let r = http
        .post(format!("{}/login", d.url))
        .header(ORIGIN, &d.url)
        .form(&[("token", d.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("HttpOnly"));
    let r = http
        .post(format!("{}/login", d.url))
        .header(ORIGIN, "http://evil.example")
        .form(&[("token", d.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "login forged from elsewhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_writes_need_this_origin_and_the_csrf_header() {
    let d = Daemon::start("").await;
    let id = d.create(json!({"command": ["sh"], "name": "target"})).await;
    let (_, cookie, _) = redeem(&login_url(&d).await).await;
    let pair = cookie.unwrap().split(';').next().unwrap().to_string();
    let http = raw_client();
    let restart = |origin: Option<&str>, csrf: bool| {
        let mut r = http
            .post(format!("{}/v1/sessions/{id}/restart", d.url))
            .header(COOKIE, &pair);
        if let Some(o) = origin {
            r = r.header(ORIGIN, o);
        }
        if csrf {
            r = r.header("x-herd-csrf", "1");
        }
        r.send()
    };
    // Another site, another port of this host, or no Origin: refused, nothing done.
    for origin in [
        Some("http://evil.example".to_string()),
        Some("http://127.0.0.1:1".to_string()),
        None,
    ] {
        let r = restart(origin.as_deref(), true).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "forbidden", "{v}");
    }
    let r = restart(Some(&d.url), false).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no CSRF header");
    assert_eq!(
        d.session(&id).await["generation"],
        0,
        "nothing was restarted"
    );
    // This origin with the header: done.
    let r = restart(Some(&d.url), true).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    d.wait_session(&id, T, |s| s["generation"] == 1).await;
    // A WebSocket from elsewhere is refused, though it is a GET.
    let ws = tokio_tungstenite::tungstenite::http::Request::builder()
        .uri(format!("ws://{}/v1/events", host(&d)))
        .header("host", host(&d))
        .header("origin", "http://evil.example")
        .header("cookie", &pair)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    match tokio_tungstenite::connect_async(ws).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), StatusCode::FORBIDDEN)
        }
        other => panic!("cross-origin WebSocket: {:?}", other.map(|_| ())),
    }
    // Bearer clients are unchanged: no Origin, no CSRF header needed.
    let (st, v) = d
        .post(&format!("/v1/sessions/{id}/restart"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_open_prints_a_one_time_link() {
    let d = Daemon::start("").await;
    let out = d.cli(&["open", "--print"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        url.starts_with(&format!("{}/login?ticket=", d.url)),
        "{url}"
    );
    let (st, cookie, _) = redeem(&url).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert!(cookie.is_some());
    // With $BROWSER set, the link is handed to it (a script standing in).
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("opened");
    let script = common::write(
        dir.path(),
        "browser.sh",
        &format!(
            "#!/bin/sh\necho \"$1\" > {}.tmp && mv {0}.tmp {0}\n",
            seen.display()
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(common::herd_bin())
        .arg("open")
        .env("HERD_URL", &d.url)
        .env("HERD_TOKEN", &d.token)
        .env("BROWSER", &script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        common::wait_until(T, || seen.exists()).await,
        "$BROWSER was not run"
    );
    assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), printed);
}
