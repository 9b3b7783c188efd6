//! API limits: slow clients are cut off by the header timeout and cannot
//! keep a quick request from its answer (past the cap the slowest is
//! dropped to make room); out of descriptors, a 503 rather than a hang; the
//! open-file limit is raised at start; an oversized WebSocket frame is
//! closed with 1009 and a reason.

mod common;

use common::Daemon;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(d: &Daemon) -> String {
    d.url.trim_start_matches("http://").to_string()
}

/// A client that sends half a request head and then nothing.
async fn slow_client(d: &Daemon) -> TcpStream {
    let mut s = TcpStream::connect(addr(d)).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    s
}

/// One `GET /healthz` on a fresh connection: status and body.
async fn raw_healthz(d: &Daemon) -> (u16, String) {
    let mut s = TcpStream::connect(addr(d)).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("an answer, not a hang")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_time_out_and_never_block_a_quick_request() {
    let d = Daemon::start("[server]\nmax_connections = 8\nheader_timeout = \"1s\"\n").await;
    let mut flood = Vec::new();
    for _ in 0..12 {
        flood.push(slow_client(&d).await);
    }
    // 8 normal slots and the 4 short-leash ones are taken: the slowest
    // client is dropped to make room, and a quick request gets its answer.
    let (status, text) = raw_healthz(&d).await;
    assert_eq!(status, 200, "{text}");
    // The header timeout closes every slow connection.
    let started = Instant::now();
    for s in &mut flood {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the slow connection is closed by the server");
        // Closed (EOF or reset), perhaps after a 408.
        if let Ok(n) = n {
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(n == 0 || head.starts_with("HTTP/1.1 408"), "{head}");
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // Over the normal cap, a quick request still gets its answer.
    let mut flood = Vec::new();
    for _ in 0..9 {
        flood.push(slow_client(&d).await);
    }
    let (status, text) = raw_healthz(&d).await;
    assert_eq!(status, 200, "{text}");
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_answers_503_and_the_limit_is_raised() {
    let d = Daemon::start_nofile("[server]\nheader_timeout = \"30s\"\n", 128).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(
        nums[0], nums[1],
        "soft limit raised to the hard one: {line}"
    );
    // Hold idle connections until the daemon has no descriptor left.
    let mut held = Vec::new();
    for _ in 0..160 {
        if let Ok(s) = TcpStream::connect(addr(&d)).await {
            held.push(s);
        }
    }
    let (status, text) = raw_healthz(&d).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("out_of_descriptors"), "{text}");
    // Descriptors return: the daemon answers again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = raw_healthz(&d).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_websocket_frame_is_closed_with_1009_and_a_reason() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let d = Daemon::start("").await;
    let id = d
        .create(serde_json::json!({"command": ["sleep", "600"]}))
        .await;
    let url = format!(
        "{}/v1/sessions/{id}/attach",
        d.url.replace("http://", "ws://")
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", d.token).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let big = "x".repeat(2 * 1024 * 1024);
    let _ = ws.send(Message::text(big)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let frame = loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the server answers");
        match m {
            Some(Ok(Message::Close(f))) => break f,
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
        assert!(Instant::now() < deadline);
    };
    let frame = frame.expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1009, "{frame:?}");
    assert!(frame.reason.contains("too big"), "{frame:?}");
}
