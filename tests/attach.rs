//! `WS /v1/sessions/{id}/attach` and `herd attach`: real daemon on port 0,
//! real WebSockets, real PTYs.

mod common;

use common::{herd_bin, sh_in_pty, wait_until, Daemon};
use futures_util::{SinkExt, StreamExt};
use portable_pty::{MasterPty, PtySize};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

const T: Duration = Duration::from_secs(20);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A shell loop that answers every input line with `got<LINE>`.
fn echo_loop() -> Value {
    json!({"command": ["sh", "-c", "while IFS= read -r l; do printf 'got<%s>\\n' \"$l\"; done"]})
}

fn ws_url(d: &Daemon, id: &str, query: &str) -> String {
    format!(
        "{}/v1/sessions/{id}/attach{query}",
        d.url.replacen("http://", "ws://", 1)
    )
}

/// Opens an attach WebSocket, with the token unless `token` is None.
async fn try_connect(
    d: &Daemon,
    id: &str,
    query: &str,
    token: Option<&str>,
) -> Result<Ws, WsError> {
    let mut req = ws_url(d, id, query).into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert(AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
    }
    connect_async(req).await.map(|(ws, _)| ws)
}

/// The HTTP status and error message of a refused WebSocket handshake.
fn refusal(e: WsError) -> (u16, String) {
    match e {
        WsError::Http(resp) => {
            let body: Value = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (
                resp.status().as_u16(),
                body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

/// One attached viewer and everything it has received.
struct Viewer {
    ws: Ws,
    out: Vec<u8>,
    control: Vec<Value>,
    close: Option<Option<CloseFrame>>,
    ended: bool,
}

impl Viewer {
    async fn connect(d: &Daemon, id: &str) -> Viewer {
        let ws = try_connect(d, id, "", Some(&d.token)).await.unwrap();
        Viewer {
            ws,
            out: Vec::new(),
            control: Vec::new(),
            close: None,
            ended: false,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    fn controls(&self, ty: &str) -> Vec<&Value> {
        self.control.iter().filter(|v| v["type"] == ty).collect()
    }

    async fn send_bytes(&mut self, b: &[u8]) {
        self.ws
            .send(Message::Binary(b.to_vec().into()))
            .await
            .unwrap();
    }

    async fn send_text(&mut self, t: &str) {
        self.ws.send(Message::Text(t.into())).await.unwrap();
    }

    /// Reads until `pred` holds (true) or `timeout` passes or the stream ends (false).
    async fn read_until(&mut self, timeout: Duration, pred: impl Fn(&Viewer) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if self.ended {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return pred(self),
                Ok(None) | Ok(Some(Err(_))) => self.ended = true,
                Ok(Some(Ok(m))) => match m {
                    Message::Binary(b) => self.out.extend_from_slice(&b),
                    Message::Text(t) => self.control.push(serde_json::from_str(&t).unwrap()),
                    Message::Close(f) => self.close = Some(f),
                    _ => {}
                },
            }
        }
    }

    /// Reads until the output contains `needle`; panics with what it got otherwise.
    async fn expect_output(&mut self, needle: &str) {
        let ok = self.read_until(T, |v| v.text().contains(needle)).await;
        assert!(ok, "viewer never got {needle:?}; got:\n{}", self.text());
    }

    /// Reads until an `error` control message arrives and returns its message.
    async fn expect_error(&mut self) -> String {
        let before = self.controls("error").len();
        let ok = self
            .read_until(T, |v| v.controls("error").len() > before)
            .await;
        assert!(ok, "no error frame; controls: {:?}", self.control);
        let e = self.controls("error")[before].clone();
        assert_eq!(e["code"], "invalid_input", "{e}");
        e["message"].as_str().unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reach_the_child_and_output_reaches_every_viewer() {
    let d = Daemon::start("").await;
    let id = d.create(echo_loop()).await;
    let mut a = Viewer::connect(&d, &id).await;
    let mut b = Viewer::connect(&d, &id).await;
    for v in [&mut a, &mut b] {
        assert!(v.read_until(T, |v| !v.control.is_empty()).await);
        assert_eq!(v.control[0]["type"], "hello", "{:?}", v.control);
        assert_eq!(v.control[0]["session"]["id"], id.as_str());
    }

    // Keys typed by one viewer reach the child; its answer reaches both.
    a.send_bytes(b"from-a\r").await;
    a.expect_output("got<from-a>").await;
    b.expect_output("got<from-a>").await;
    b.send_bytes(b"from-b\r").await;
    a.expect_output("got<from-b>").await;
    b.expect_output("got<from-b>").await;
    d.wait_screen(&id, "got<from-b>", T).await;

    // A viewer arriving later first gets the current screen.
    let mut c = Viewer::connect(&d, &id).await;
    c.expect_output("got<from-a>").await;
    c.expect_output("got<from-b>").await;

    // The session ends: every viewer gets `end` after the last output, then a normal close.
    let (st, v) = d
        .req(reqwest::Method::DELETE, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for v in [&mut a, &mut b, &mut c] {
        let ok = v.read_until(T, |v| v.close.is_some() || v.ended).await;
        assert!(ok, "viewer was not closed; controls: {:?}", v.control);
        let end = v.controls("end");
        assert_eq!(end.len(), 1, "{:?}", v.control);
        assert_eq!(end[0]["state"], "stopped", "{}", end[0]);
        let frame = v.close.clone().flatten().expect("a close frame");
        assert_eq!(u16::from(frame.code), 1000);
        assert!(frame.reason.contains("stopped"), "{frame:?}");
    }
    // Attaching to an ended session: hello, the final screen, end.
    let mut late = Viewer::connect(&d, &id).await;
    late.expect_output("got<from-b>").await;
    assert!(late.read_until(T, |v| !v.controls("end").is_empty()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_and_bad_control_messages() {
    let d = Daemon::start("").await;
    let id = d.create(echo_loop()).await;
    let mut v = Viewer::connect(&d, &id).await;

    v.send_text(r#"{"type":"resize","cols":100,"rows":30}"#)
        .await;
    d.wait_session(&id, T, |s| s["cols"] == 100 && s["rows"] == 30)
        .await;

    let cases = [
        ("not json", "JSON"),
        (r#"["resize"]"#, "invalid message"),
        (r#"{"cols":80,"rows":24}"#, "invalid type"),
        (r#"{"type":"dance"}"#, "invalid type"),
        (r#"{"type":"resize","cols":0,"rows":0}"#, "invalid cols"),
        (
            r#"{"type":"resize","cols":100000,"rows":100000}"#,
            "invalid cols",
        ),
        (r#"{"type":"resize","cols":80,"rows":0}"#, "invalid rows"),
        (r#"{"type":"resize","cols":80}"#, "invalid rows"),
    ];
    for (msg, want) in cases {
        v.send_text(msg).await;
        let err = v.expect_error().await;
        assert!(err.contains(want), "{msg}: {err:?} should contain {want:?}");
    }
    // Nothing was changed, and the connection still works.
    let s = d.session(&id).await;
    assert_eq!(
        (s["cols"].as_u64(), s["rows"].as_u64()),
        (Some(100), Some(30))
    );
    v.send_bytes(b"still-here\r").await;
    v.expect_output("got<still-here>").await;

    // The query resizes before the first screen.
    let mut q = try_connect(&d, &id, "?cols=90&rows=20", Some(&d.token))
        .await
        .unwrap();
    let s = d.session(&id).await;
    assert_eq!(
        (s["cols"].as_u64(), s["rows"].as_u64()),
        (Some(90), Some(20))
    );
    q.close(None).await.unwrap();
    let (status, msg) = refusal(
        try_connect(&d, &id, "?cols=5000&rows=20", Some(&d.token))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 400);
    assert!(msg.contains("cols"), "{msg}");

    // Auth, unknown sessions, and plain HTTP requests are refused.
    let (status, _) = refusal(try_connect(&d, &id, "", None).await.unwrap_err());
    assert_eq!(status, 401);
    let (status, _) = refusal(try_connect(&d, &id, "", Some("wrong")).await.unwrap_err());
    assert_eq!(status, 401);
    let (status, msg) = refusal(
        try_connect(
            &d,
            "00000000-0000-4000-8000-000000000000",
            "",
            Some(&d.token),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(status, 404, "{msg}");
    let (st, body) = d.get(&format!("/v1/sessions/{id}/attach")).await;
    assert!(st.is_client_error(), "{st} {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("WebSocket"),
        "{body}"
    );
}

/// The local port of a viewer's TCP connection.
fn local_port(ws: &Ws) -> u16 {
    match ws.get_ref() {
        MaybeTlsStream::Plain(s) => s.local_addr().unwrap().port(),
        _ => unreachable!("plain ws:// only"),
    }
}

/// Whether the daemon still holds its end of the TCP connection
/// `daemon_port` ↔ `client_port` open (state ESTABLISHED in /proc/net/tcp).
fn daemon_side_open(daemon_port: u16, client_port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        port(f[1]) == daemon_port && port(f[2]) == client_port && f[3] == "01"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_viewer_slows_nothing_and_is_dropped() {
    const TOTAL: u64 = 20_000_000;
    let d = Daemon::start("").await;
    let daemon_port: u16 = d.url.rsplit(':').next().unwrap().parse().unwrap();
    let work = tempfile::tempdir().unwrap();
    // Waits for `go` (both viewers attached), floods, then prints one byte
    // per tick (counted) until `stop`.
    let script = format!(
        "while [ ! -e go ]; do sleep 0.05; done; head -c {TOTAL} /dev/zero | tr '\\0' y; \
         n=0; while [ ! -e stop ]; do printf .; n=$((n+1)); sleep 0.1; done; echo $n > ticks"
    );
    let id = d
        .create(json!({
            "command": ["sh", "-c", script],
            "cwd": work.path(),
            "restart": {"policy": "never"},
        }))
        .await;
    // This one never reads until the end of the test.
    let mut stalled = Viewer::connect(&d, &id).await;
    let stalled_port = local_port(&stalled.ws);
    assert!(daemon_side_open(daemon_port, stalled_port));
    let mut reader = Viewer::connect(&d, &id).await;
    assert!(reader.read_until(T, |v| !v.control.is_empty()).await);

    let started = Instant::now();
    std::fs::write(work.path().join("go"), "").unwrap();

    // The flood goes through; the reader keeps getting data; the daemon
    // answers promptly; and it drops the stalled viewer.
    let mut slowest = Duration::ZERO;
    let mut flood_took = None;
    loop {
        let t = Instant::now();
        let (st, _) = d.get("/healthz").await;
        assert_eq!(st, StatusCode::OK);
        slowest = slowest.max(t.elapsed());
        let s = d.session(&id).await;
        let out = s["metrics"]["bytes_out"].as_u64().unwrap();
        if out >= TOTAL && flood_took.is_none() {
            flood_took = Some(started.elapsed());
        }
        let dropped = !daemon_side_open(daemon_port, stalled_port);
        if flood_took.is_some() && dropped {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "after {:?}: {out} bytes out, stalled viewer dropped: {dropped}",
            started.elapsed()
        );
        reader
            .read_until(Duration::from_millis(200), |_| false)
            .await;
        assert!(!reader.ended, "the reading viewer was disconnected");
    }
    let flood_took = flood_took.unwrap();
    assert!(
        slowest < Duration::from_secs(5),
        "the daemon took {slowest:?} to answer /healthz"
    );
    assert!(
        flood_took < Duration::from_secs(60),
        "{TOTAL} bytes took {flood_took:?}"
    );

    // The session ends; every byte is counted; the reader saw it all through.
    std::fs::write(work.path().join("stop"), "").unwrap();
    let ok = reader
        .read_until(T, |v| !v.controls("end").is_empty())
        .await;
    assert!(ok, "no end for the reader: {:?}", reader.control);
    assert!(reader.text().contains("yyyy"));
    let s = d.session(&id).await;
    assert_eq!(s["state"], "stopped", "{s}");
    let ticks: u64 = read(work.path(), "ticks").trim().parse().unwrap();
    assert_eq!(
        s["metrics"]["bytes_out"].as_u64(),
        Some(TOTAL + ticks),
        "{s}"
    );
    eprintln!(
        "flood of {TOTAL} bytes took {flood_took:?}; the reader got {} bytes and {} resyncs",
        reader.out.len(),
        reader.controls("resync").len()
    );

    // The stalled viewer was dropped, not buffered for: reading it now gives
    // what the kernel held, then the end of the stream, without `end`.
    let done = stalled
        .read_until(T, |v| v.ended || v.close.is_some())
        .await;
    assert!(done, "the stalled viewer is still connected");
    assert!(
        (stalled.out.len() as u64) < TOTAL,
        "the stalled viewer got {} bytes",
        stalled.out.len()
    );
    assert!(stalled.controls("end").is_empty(), "{:?}", stalled.control);
    if let Some(Some(f)) = &stalled.close {
        assert!(f.reason.contains("stalled"), "{f:?}");
    }
}

/// A process tree in a real PTY, killed (whole process group) when dropped.
struct PtyRun {
    master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl PtyRun {
    /// Runs `sh -c script` in `dir` in an 80x24 PTY, with the daemon's URL and token.
    fn spawn(d: &Daemon, dir: &Path, script: &str, id: &str) -> PtyRun {
        let (master, child) = sh_in_pty(d, dir, script, &[("ID", id)]);
        let writer = master.take_writer().unwrap();
        let seen = common::collect_output(master.try_clone_reader().unwrap());
        PtyRun {
            master,
            writer,
            child,
            seen,
        }
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn type_bytes(&mut self, b: &[u8]) {
        self.writer.write_all(b).unwrap();
        self.writer.flush().unwrap();
    }

    async fn wait_seen(&self, needle: &str) {
        let ok = wait_until(T, || self.seen().contains(needle)).await;
        assert!(ok, "the terminal never showed {needle:?}:\n{}", self.seen());
    }

    /// Waits for the shell to exit; returns whether it did.
    async fn wait_exit(&mut self) -> bool {
        let child = &mut self.child;
        wait_until(T, || matches!(child.try_wait(), Ok(Some(_)))).await
    }
}

impl Drop for PtyRun {
    fn drop(&mut self) {
        let running = matches!(self.child.try_wait(), Ok(None));
        if let (true, Some(pid)) = (running, self.child.process_id()) {
            // The shell leads its own session and process group (setsid), as
            // does `herd attach` inside it: kill them all.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

/// `stty -g` before and after `herd attach`, and its exit code, as files.
const ATTACH_SCRIPT: &str =
    "stty -g > before; \"$HERD_BIN\" attach \"$ID\"; echo $? > rc; stty -g > after";

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_attach_in_a_terminal_types_follows_size_and_detaches() {
    let d = Daemon::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let id = d.create(echo_loop()).await;
    let (st, v) = d
        .post(
            &format!("/v1/sessions/{id}/input"),
            json!({"text": "before-attach\n"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    d.wait_screen(&id, "got<before-attach>", T).await;

    let mut pty = PtyRun::spawn(&d, dir.path(), ATTACH_SCRIPT, &id);
    // The current screen is drawn on attach; the session takes the terminal's size.
    pty.wait_seen("got<before-attach>").await;
    d.wait_session(&id, T, |s| s["cols"] == 80 && s["rows"] == 24)
        .await;

    // Raw mode: keys arrive one by one, without waiting for Enter.
    pty.type_bytes(b"partial");
    d.wait_screen(&id, "partial", T).await;
    pty.type_bytes(b"\r");
    d.wait_screen(&id, "got<partial>", T).await;
    pty.wait_seen("got<partial>").await;

    // The session follows the window size.
    pty.master
        .resize(PtySize {
            rows: 30,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    d.wait_session(&id, T, |s| s["cols"] == 100 && s["rows"] == 30)
        .await;

    // C-\ detaches; the terminal's modes are restored; the session lives on.
    pty.type_bytes(&[0x1c]);
    assert!(pty.wait_exit().await, "herd attach did not exit on C-\\");
    assert_eq!(read(dir.path(), "rc").trim(), "0", "{}", pty.seen());
    let before = read(dir.path(), "before");
    assert!(!before.trim().is_empty());
    assert_eq!(before, read(dir.path(), "after"), "terminal modes differ");
    let id8 = &id[..8];
    pty.wait_seen(&format!("[detached from {id8}]")).await;
    let s = d.session(&id).await;
    assert!(
        !matches!(s["state"].as_str(), Some("stopped" | "failed")),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_attach_exits_when_the_session_ends() {
    let d = Daemon::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let id = d
        .create(json!({
            "command": ["sh", "-c", "echo ready-marker; IFS= read -r l; echo \"bye<$l>\""],
            "restart": {"policy": "never"},
        }))
        .await;
    d.wait_screen(&id, "ready-marker", T).await;
    let mut pty = PtyRun::spawn(&d, dir.path(), ATTACH_SCRIPT, &id);
    pty.wait_seen("ready-marker").await;
    pty.type_bytes(b"ok\r");
    // The last output arrives before the end notice.
    pty.wait_seen("bye<ok>").await;
    let id8 = &id[..8];
    pty.wait_seen(&format!("[session {id8} ended: stopped]"))
        .await;
    assert!(pty.wait_exit().await, "herd attach did not exit");
    assert_eq!(read(dir.path(), "rc").trim(), "0", "{}", pty.seen());
    assert_eq!(read(dir.path(), "before"), read(dir.path(), "after"));
    let seen = pty.seen();
    assert!(seen.find("bye<ok>") < seen.find("ended: stopped"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_attach_errors_are_one_clear_line() {
    let d = Daemon::start("").await;
    let out = d.cli(&["attach", "0123abcd"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no session matches"), "{err}");

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = std::process::Command::new(herd_bin())
        .args(["attach", "0123abcd"])
        .env("HERD_URL", format!("http://127.0.0.1:{port}"))
        .env("HERD_TOKEN", "x")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
}
