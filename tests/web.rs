//! The web dashboard: its login (one-time links, cookies, origin checks) over
//! real HTTP, and the page itself in a real browser (Debian's chromium over
//! WebDriver): the fleet going live, typing into a terminal, prompts,
//! answering a permission dialog, recordings, the phone layout, and a
//! terminal flood. Screenshots of each view go to `target/web-screenshots/`.

mod common;
#[path = "web/driver.rs"]
mod driver;

use common::Daemon;
use driver::{Browser, ENTER};
use reqwest::header::{COOKIE, ORIGIN, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/web-screenshots")
}

/// A client that follows no redirects: the tests look at each answer.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn login_url(d: &Daemon) -> String {
    let (st, v) = d.post("/v1/login", json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["expires_in"], 60);
    v["url"].as_str().unwrap().to_string()
}

/// Redeems a link; returns the `name=value` of the cookie it set.
async fn redeem(url: &str) -> (StatusCode, Option<String>, Option<String>) {
    let r = raw_client().get(url).send().await.unwrap();
    let cookie = r
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_string());
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status(), cookie, location)
}

fn host(d: &Daemon) -> String {
    d.url.trim_start_matches("http://").to_string()
}

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
}

/// Starts a browser, or says why the test is skipped.
async fn browser(width: u32, height: u32) -> Option<Browser> {
    match driver::available() {
        Ok(()) => Some(Browser::start(width, height).await),
        Err(why) => {
            eprintln!("SKIPPED: no browser to test the dashboard in: {why}");
            None
        }
    }
}

/// Logs the browser in through a fresh one-time link; checks where it lands.
async fn log_in(b: &Browser, d: &Daemon) {
    let url = login_url(d).await;
    b.goto(&url).await;
    b.find("#view .fleet-view", T).await;
    assert_eq!(
        b.url().await,
        format!("{}/", d.url),
        "no ticket in the address"
    );
    let port = d.url.rsplit(':').next().unwrap();
    let cookies = b.cookies().await;
    let c = cookies
        .iter()
        .find(|c| c["name"] == format!("herd_{port}"))
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert_eq!(c["httpOnly"], true);
    assert_eq!(c["sameSite"], "Strict");
    // Not readable by the page's scripts.
    let visible = b.js("return document.cookie", json!([])).await;
    assert_eq!(visible, "", "HttpOnly");
}

/// Whether xterm.js shows `arguments[0]` (its DOM renderer's rows).
const TERM_HAS: &str =
    "const r = document.querySelector('.term .xterm-rows'); return !!r && r.innerText.includes(arguments[0]);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_browser_fleet_terminal_prompt_recording_phone() {
    let Some(b) = browser(1280, 860).await else {
        return;
    };
    let d = Daemon::start("[limits]\nquiet_after = \"300ms\"\n").await;
    let dir = shots();
    log_in(&b, &d).await;
    // A reused ticket does not log in (a fresh browser profile would be
    // logged out; this one keeps its cookie but the page says so).
    let used = login_url(&d).await;
    redeem(&used).await;
    b.goto(&used).await;
    b.wait_js(
        "the used-link message",
        T,
        "return document.body.innerText.includes('already used or has expired')",
        json!([]),
    )
    .await;
    b.goto(&format!("{}/", d.url)).await;
    b.find(".fleet-view", T).await;
    b.wait_js(
        "the live connection",
        T,
        "return document.getElementById('conn').dataset.status === 'live'",
        json!([]),
    )
    .await;

    // A session created through the API appears live, in its state.
    let id = d
        .create(
            json!({"command": ["bash", "--norc", "--noprofile"], "name": "web-one",
                       "task_id": "job-42", "project_id": "alpha",
                       "env": {"PS1": "$ "}}),
        )
        .await;
    let row = format!(".row[data-id='{id}']");
    b.wait_js("the new row, ready", T,
        "const r = document.querySelector(arguments[0]); return r && r.dataset.state === 'ready' && r.innerText.includes('job-42') && r.innerText.includes('alpha');",
        json!([row])).await;
    let other = d
        .create(json!({"command": ["sleep", "600"], "name": "web-two", "project_id": "beta"}))
        .await;
    b.find(&format!(".row[data-id='{other}']"), T).await;
    // Filters: by project, then by task.
    b.js("const s = document.querySelector('select[name=project]'); s.value = 'beta'; s.dispatchEvent(new Event('change'));", json!([])).await;
    b.wait_js("the project filter", T,
        "return document.querySelector(arguments[0]).hidden && !document.querySelector(arguments[1]).hidden",
        json!([row, format!(".row[data-id='{other}']")])).await;
    b.js("const s = document.querySelector('select[name=project]'); s.value = ''; s.dispatchEvent(new Event('change'));", json!([])).await;
    b.type_into("input[name=task]", "job-4").await;
    b.wait_js("the task filter", T,
        "return !document.querySelector(arguments[0]).hidden && document.querySelector(arguments[1]).hidden",
        json!([row, format!(".row[data-id='{other}']")])).await;
    b.screenshot(&dir, "fleet").await;

    // The session view: the terminal replays the screen, then goes live.
    b.click(&row).await;
    b.find(".term .xterm", T).await;
    b.wait_js("the prompt in the terminal", T, TERM_HAS, json!(["$ "]))
        .await;
    b.click(".term .xterm").await;
    b.type_into(
        ".term .xterm-helper-textarea",
        &format!("echo typed-$((6*7)){ENTER}"),
    )
    .await;
    d.wait_screen(&id, "typed-42", T).await;
    b.wait_js("the echo in xterm.js", T, TERM_HAS, json!(["typed-42"]))
        .await;
    b.screenshot(&dir, "session").await;
    // Read-only: keys go nowhere.
    b.click("#typing").await;
    b.type_into(
        ".term .xterm-helper-textarea",
        &format!("echo not-sent{ENTER}"),
    )
    .await;
    b.click("#typing").await;
    b.type_into(
        ".term .xterm-helper-textarea",
        &format!("echo sent-after{ENTER}"),
    )
    .await;
    let screen = d.wait_screen(&id, "sent-after", T).await;
    assert!(!screen.contains("not-sent"), "read-only typed: {screen}");

    // The prompt box: send and wait shows the reply.
    b.type_into("textarea[name=prompt]", "echo reply-$((20+3))")
        .await;
    b.click("button[data-action=send-wait]").await;
    b.wait_js("the reply", T,
        "const r = document.querySelector('.reply-text'); return r && r.innerText.includes('reply-23');",
        json!([])).await;
    b.click("button[data-tab=queue]").await;
    b.wait_js(
        "the queue",
        T,
        "return document.querySelector('.queue li[data-state=done]') !== null",
        json!([]),
    )
    .await;
    b.click("button[data-tab=events]").await;
    b.wait_js(
        "the timeline",
        T,
        "return document.querySelectorAll('.timeline li').length >= 3",
        json!([]),
    )
    .await;
    b.click("button[data-tab=metrics]").await;
    b.find(".pane-metrics canvas", T).await;

    // Restart, confirmed in the page's dialog.
    b.click("button[data-action=restart]").await;
    b.find("dialog#confirm[open]", T).await;
    b.click("#confirm-ok").await;
    d.wait_session(&id, T, |s| s["generation"] == 1 && s["state"] == "ready")
        .await;
    b.wait_js("generation 1 in the header", T,
        "return [...document.querySelectorAll('.facts div')].some(d => d.innerText.includes('generation') && d.innerText.includes('1'))",
        json!([])).await;

    // Recordings: generation 0 plays in the asciinema player.
    b.click("button[data-tab=recordings]").await;
    b.click(".recordings li[data-generation='0'] button[data-action=play]")
        .await;
    b.wait_js("the player", T,
        "const p = window.__herdPlayer; return !!p && p.getDuration() > 0 && document.querySelector('.ap-player') !== null",
        json!([])).await;
    b.js(
        "window.__herdPlayer.seek(window.__herdPlayer.getDuration() - 0.01)",
        json!([]),
    )
    .await;
    b.wait_js(
        "the recording's text",
        T,
        "return document.querySelector('.player-stage').innerText.includes('typed-42')",
        json!([]),
    )
    .await;
    b.js("const s = document.querySelector('select[name=speed]'); s.value = '4'; s.dispatchEvent(new Event('change'));", json!([])).await;
    b.wait_js(
        "the player at 4x",
        T,
        "return !!window.__herdPlayer && window.__herdPlayer.getDuration() > 0",
        json!([]),
    )
    .await;
    b.screenshot(&dir, "recording").await;

    // Kill, confirmed; the terminal says the session ended.
    b.click("button[data-action=kill]").await;
    b.click("#confirm-ok").await;
    d.wait_session(&id, T, |s| s["state"] == "stopped").await;
    b.wait_js("the end banner", T,
        "const e = document.querySelector('.ended'); return e && !e.hidden && e.innerText.includes('stopped')",
        json!([])).await;

    // The phone layout: nothing wider than the screen.
    b.resize(390, 844).await;
    b.goto(&format!("{}/#/", d.url)).await;
    b.find(&format!(".row[data-id='{other}']"), T).await;
    let overflow = b
        .js("return document.documentElement.scrollWidth", json!([]))
        .await;
    let inner = b.js("return window.innerWidth", json!([])).await;
    assert!(
        overflow.as_i64() <= inner.as_i64(),
        "fleet overflows: {overflow} > {inner}"
    );
    b.screenshot(&dir, "phone-fleet").await;
    b.goto(&format!("{}/#/s/{other}", d.url)).await;
    b.find(".term .xterm", T).await;
    let overflow = b
        .js("return document.documentElement.scrollWidth", json!([]))
        .await;
    assert!(
        overflow.as_i64() <= inner.as_i64(),
        "session overflows: {overflow} > {inner}"
    );
    b.screenshot(&dir, "phone-session").await;
    b.goto(&format!("{}/#/new", d.url)).await;
    b.find("form.create", T).await;
    b.screenshot(&dir, "phone-new").await;
    // The form starts a session and opens it.
    b.type_into("form.create input[name=name]", "from-the-form")
        .await;
    b.type_into("form.create input[name=task]", "job-form")
        .await;
    b.js("document.querySelector('form.create input[name=command]').value = 'sh -c \"echo form-made; exec sleep 600\"'", json!([])).await;
    b.click("form.create button[type=submit]").await;
    b.wait_js("the new session's page", T,
        "const h = document.querySelector('.session-name'); return h && h.textContent === 'from-the-form'", json!([])).await;
    b.wait_js("its output", T, TERM_HAS, json!(["form-made"]))
        .await;
    let (_, list) = d.get("/v1/sessions?task=job-form").await;
    assert_eq!(
        list[0]["command"],
        json!(["sh", "-c", "echo form-made; exec sleep 600"])
    );

    let violations = b
        .js("return window.__herdPerf.cspViolations", json!([]))
        .await;
    assert_eq!(violations, json!([]), "CSP violations");
    // The used link's 401 is the one expected error.
    let errors: Vec<String> = b
        .console()
        .await
        .into_iter()
        .filter(|l| l.contains("SEVERE") && !l.contains("/login?ticket="))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    // Logging out forgets the cookie: the dashboard asks for a login again.
    b.click("form.logout button").await;
    b.wait_js(
        "the logged-out page",
        T,
        "return document.body.innerText.includes('Logged out.')",
        json!([]),
    )
    .await;
    b.goto(&format!("{}/", d.url)).await;
    b.find("form input[name=token]", T).await;
    assert_eq!(b.url().await, format!("{}/login", d.url));
    // The fallback: the token in the form logs in too.
    b.type_into("form input[name=token]", &format!("{}{ENTER}", d.token))
        .await;
    b.find(".fleet-view", T).await;
    assert_eq!(b.url().await, format!("{}/", d.url));
}

fn claude_config() -> String {
    format!(
        "[claude]\nbinary = {:?}\n[limits]\nquiet_after = \"300ms\"\n",
        env!("CARGO_BIN_EXE_herd-fake-claude")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_dialog_is_answered_from_a_button_and_needs_me_alerts() {
    let Some(b) = browser(1280, 860).await else {
        return;
    };
    let d = Daemon::start(&claude_config()).await;
    let cwd = tempfile::tempdir().unwrap();
    log_in(&b, &d).await;
    b.grant("notifications").await;
    b.wait_js(
        "the notification button",
        T,
        "return document.getElementById('notify').textContent === 'Notifying'",
        json!([]),
    )
    .await;
    let id = d
        .create(json!({"profile": "claude", "cwd": cwd.path(), "name": "claude-one",
                       "claude": {"env": {"FAKE_CLAUDE_STARTUP_MS": "200", "FAKE_CLAUDE_BUSY_MS": "200"}}}))
        .await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    let (st, v) = d
        .post(
            &format!("/v1/sessions/{id}/messages"),
            json!({"text": "run it MOCK-TOOL-BASH"}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    // The fleet puts it first, with its badge, title and a toast.
    b.wait_js("the needs-me badge", T,
        "return !document.getElementById('needs').hidden && document.getElementById('needs-count').textContent === '1' && document.title === '(1) herd'",
        json!([])).await;
    b.wait_js("needs-me first", T,
        "const r = document.querySelector('.list .row:not([hidden])'); return r && r.dataset.id === arguments[0] && r.classList.contains('needs-me') && r.innerText.includes('Bash')",
        json!([id])).await;
    b.wait_js("the toast", T,
        "return [...document.querySelectorAll('.toast')].some(t => t.innerText.includes('needs input'))", json!([])).await;
    b.screenshot(&shots(), "fleet-needs-me").await;
    // The session page shows the tool, its input and the choices.
    b.click(&format!(".row[data-id='{id}']")).await;
    b.wait_js("the dialog", T,
        "const w = document.querySelector('.waiting'); return w && !w.hidden && w.innerText.includes('Bash') && w.innerText.includes('touch mock-tool-ran.txt') && w.querySelectorAll('button.choice').length === 3",
        json!([])).await;
    b.screenshot(&shots(), "session-permission").await;
    b.click(".waiting button.choice[data-meaning=yes]").await;
    let s = d
        .wait_session(&id, T, |s| s["state"] != "waiting_input")
        .await;
    assert!(s["waiting"].is_null(), "{s}");
    // The tool ran: the answer was "yes", picked by meaning.
    let ran = cwd.path().join("mock-tool-ran.txt");
    assert!(
        common::wait_until(T, || ran.exists()).await,
        "the tool did not run"
    );
    b.wait_js("the dialog gone, the badge cleared", T,
        "return document.querySelector('.waiting').hidden && document.getElementById('needs').hidden",
        json!([])).await;
}

/// A session printing 48 MB as fast as it can: the tab stays responsive, the
/// terminal ends on the last lines, and the figures are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_flood_does_not_freeze_the_tab() {
    let Some(b) = browser(1280, 860).await else {
        return;
    };
    let d = Daemon::start("").await;
    log_in(&b, &d).await;
    const TOTAL: u64 = 48 * 1024 * 1024;
    let id = d
        .create(json!({"name": "flood", "command": ["sh", "-c",
            format!("sleep 1; yes 'the quick brown fox jumps over the lazy dog 0123456789' | head -c {TOTAL}; echo; echo FLOOD-DONE; exec sleep 600")]}))
        .await;
    b.goto(&format!("{}/#/s/{id}", d.url)).await;
    b.find(".term .xterm", T).await;
    // Frames as the page paints them, and long tasks, from here on.
    b.js("const f = window.__frames = {n: 0, maxGap: 0, last: performance.now()};
          const tick = (t) => { f.maxGap = Math.max(f.maxGap, t - f.last); f.last = t; f.n++; requestAnimationFrame(tick); };
          requestAnimationFrame(tick);
          window.__start = {perf: {...window.__herdPerf}, term: {...window.__herdTerm}, t: performance.now()};", json!([])).await;
    let started = Instant::now();
    let mut worst_round_trip = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let t0 = Instant::now();
        let done = b.js(TERM_HAS, json!(["FLOOD-DONE"])).await;
        worst_round_trip = worst_round_trip.max(t0.elapsed());
        if done == json!(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the flood never finished in the page"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let f = b
        .js("const s = window.__start; const t = window.__herdTerm; const p = window.__herdPerf;
             return {ms: performance.now() - s.t, rendered: t.bytesRendered - s.term.bytesRendered,
                     received: t.bytesReceived - s.term.bytesReceived, frames: window.__frames.n,
                     maxGap: window.__frames.maxGap, batches: t.frames - s.term.frames,
                     largestBatch: t.largestBatch, skips: t.skips - s.term.skips,
                     longTasks: p.longTasks - s.perf.longTasks, longTaskMs: p.longTaskMs - s.perf.longTaskMs}",
            json!([])).await;
    let ms = f["ms"].as_f64().unwrap();
    let rendered = f["rendered"].as_f64().unwrap();
    eprintln!(
        "flood figures: {:.1} MB rendered in {:.1} s = {:.1} MB/s ({:.1} MB received, {} skips to the present); \
         {} animation frames, longest gap {:.0} ms; {} batches, largest {} KiB; \
         long tasks {} totalling {:.0} ms = {:.0}% of the main thread; worst script round trip {:?}",
        rendered / 1e6, ms / 1e3, rendered / 1e6 / (ms / 1e3),
        f["received"].as_f64().unwrap() / 1e6, f["skips"],
        f["frames"], f["maxGap"].as_f64().unwrap(), f["batches"],
        f["largestBatch"].as_u64().unwrap() / 1024,
        f["longTasks"], f["longTaskMs"].as_f64().unwrap(),
        100.0 * f["longTaskMs"].as_f64().unwrap() / ms, worst_round_trip,
    );
    assert!(rendered > 0.0);
    let s = d.session(&id).await;
    assert!(s["metrics"]["bytes_out"].as_u64().unwrap() >= TOTAL, "{s}");
    // The page kept painting: a frozen tab paints no frames.
    assert!(f["frames"].as_u64().unwrap() > 10, "{f}");
    assert!(
        worst_round_trip < Duration::from_secs(10),
        "the tab froze: a script waited {worst_round_trip:?} (flood took {elapsed:?})"
    );
    b.screenshot(&shots(), "flood").await;
}

/// A thousand sessions: all listed, updated live while a hundred restart, the
/// one that failed first; figures printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_stay_fluent() {
    let Some(b) = browser(1280, 860).await else {
        return;
    };
    const N: usize = 1000;
    let d = Daemon::start(&format!("[limits]\nmax_sessions = {}\n", N + 1)).await;
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        ids.push(
            d.create(
                json!({"command": ["sleep", "3600"], "name": format!("s{i:04}"),
                            "project_id": format!("p{}", i % 7), "task_id": format!("task-{i}")}),
            )
            .await,
        );
    }
    let t0 = Instant::now();
    log_in(&b, &d).await;
    b.wait_js(
        "every row",
        Duration::from_secs(60),
        "return document.querySelectorAll('.list .row').length === arguments[0]",
        json!([N]),
    )
    .await;
    let first_render = t0.elapsed();
    b.js("window.__s = {perf: {...window.__herdPerf}, store: {...window.__herdStore}};
          const f = window.__frames = {n: 0, maxGap: 0, last: performance.now()};
          const tick = (t) => { f.maxGap = Math.max(f.maxGap, t - f.last); f.last = t; f.n++; requestAnimationFrame(tick); };
          requestAnimationFrame(tick);", json!([])).await;
    let t1 = Instant::now();
    for id in &ids[..100] {
        let (st, v) = d
            .post(&format!("/v1/sessions/{id}/restart"), json!({}))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    // One that fails (it keeps crashing) needs a person: it comes first.
    let failed = d
        .create(json!({"command": ["sh", "-c", "exit 3"], "name": "broken",
                       "restart": {"policy": "always", "max_restarts": 1, "backoff_initial": "10ms"}}))
        .await;
    b.wait_js("the restarts shown", Duration::from_secs(60),
        "return arguments[0].every(id => document.querySelector(`.row[data-id='${id}'] .c-restarts`).textContent === '1')",
        json!([ids[..100]])).await;
    b.wait_js("the failed one first", Duration::from_secs(60),
        "const r = document.querySelector('.list .row:not([hidden])'); return r && r.dataset.id === arguments[0] && r.dataset.state === 'failed'",
        json!([failed])).await;
    let live = t1.elapsed();
    let f = b
        .js("const s = window.__s, p = window.__herdPerf, st = window.__herdStore;
             return {frames: window.__frames.n, maxGap: window.__frames.maxGap,
                     longTasks: p.longTasks - s.perf.longTasks, longTaskMs: p.longTaskMs - s.perf.longTaskMs,
                     renders: st.renders - s.store.renders, renderMs: st.renderMs - s.store.renderMs,
                     maxRenderMs: st.maxRenderMs}", json!([])).await;
    eprintln!(
        "fleet figures ({N} sessions): all rows {first_render:?} after the login link; 100 restarts + 1 failure shown within {live:?}: \
         {} view updates taking {:.0} ms (longest {:.0} ms), {} long tasks totalling {:.0} ms, {} frames, longest gap {:.0} ms",
        f["renders"], f["renderMs"].as_f64().unwrap(), f["maxRenderMs"].as_f64().unwrap(),
        f["longTasks"], f["longTaskMs"].as_f64().unwrap(), f["frames"], f["maxGap"].as_f64().unwrap(),
    );
    b.screenshot(&shots(), "fleet-1000").await;
}
