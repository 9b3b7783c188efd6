//! One API, any node (issue 16 point 3), against a real etcd and three real
//! daemons on loopback: a session on node a is listed, read, sent to,
//! attached to (WebSocket and `herd attach`) and followed (`/v1/events`)
//! through node c, which forwards to a with the cluster token; the loop
//! guard holds, and a dead owner is a 502 naming it. Needs `--features
//! cluster` and the `etcd` binary (Debian: etcd-server); without them these
//! tests say they are skipped.

mod common;

#[cfg(not(feature = "cluster"))]
#[test]
fn skipped_without_the_feature() {
    eprintln!("SKIPPED the cluster proxy tests: built without `--features cluster`");
}

#[cfg(feature = "cluster")]
mod proxy {
    use super::common::etcd::{self, Etcd};
    use super::common::{collect_output, poll, sh_in_pty, Daemon};
    use futures_util::{SinkExt, StreamExt};
    use reqwest::StatusCode;
    use serde_json::{json, Value};
    use std::io::Write;
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    const T: Duration = Duration::from_secs(20);

    fn config(etcd: &Etcd, node: &str, ttl: &str) -> String {
        format!(
            "[cluster]\netcd = [\"{}\"]\nnode = \"{node}\"\nlease_ttl = \"{ttl}\"\n",
            etcd.url()
        )
    }

    fn bash(task: &str) -> Value {
        json!({
            "command": ["bash", "--norc", "--noprofile"],
            "task_id": task,
            "limits": {"quiet_after": "800ms"},
        })
    }

    /// `spec` placed on `node`.
    fn on(mut spec: Value, node: &str) -> Value {
        spec["placement"] = json!({ "node": node });
        spec
    }

    /// A WebSocket to `path` on `d`, with its token.
    async fn ws(d: &Daemon, path: &str) -> Ws {
        let url = format!("{}{path}", d.url.replacen("http://", "ws://", 1));
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", d.token).parse().unwrap(),
        );
        tokio_tungstenite::connect_async(req).await.unwrap().0
    }

    type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// The next JSON text frame.
    async fn next_event(w: &mut Ws) -> Value {
        loop {
            match tokio::time::timeout(T, w.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return serde_json::from_str::<Value>(t.as_str()).unwrap()
                }
                Ok(Some(Ok(_))) => continue,
                other => panic!("no event: {other:?}"),
            }
        }
    }

    /// Kills a session's process group left behind by a killed daemon.
    fn kill_group(pid: i64) {
        // SAFETY: kill has no memory-safety preconditions; the group is the
        // session's, started by the daemon this test started.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn any_node_answers_for_a_session_on_another() {
        let Some(etcd) = Etcd::start().await else {
            return;
        };
        // a's lease outlives its kill -9 below: its keys stay, it does not answer.
        let mut a = Daemon::start(&config(&etcd, "a", "60s")).await;
        let b = Daemon::start(&config(&etcd, "b", "5s")).await;
        let c = Daemon::start_logged(
            tempfile::tempdir().unwrap(),
            &config(&etcd, "c", "5s"),
            "info",
        )
        .await;
        let id = a.create(on(bash("t-proxy"), "a")).await;
        let on_b = b
            .create(
                json!({"command": ["sleep", "300"], "task_id": "t-b", "placement": {"node": "b"}}),
            )
            .await;
        let short = &id[..8];

        // The owner key names a; every node shares one cluster token.
        assert_eq!(
            etcd.get(&format!("/herd/herd/sessions/{id}/owner"))
                .await
                .as_deref(),
            Some("a")
        );
        let token = etcd.get("/herd/herd/token").await.unwrap();
        assert_eq!(token.len(), 64);
        let by_token = reqwest::Client::new()
            .get(format!("{}/v1/sessions?local=true", a.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            by_token.status(),
            StatusCode::OK,
            "the cluster token opens a"
        );

        // `ls` through c: every node's sessions, each with its node.
        let (st, list) = c.get("/v1/sessions").await;
        assert_eq!(st, StatusCode::OK, "{list}");
        let node_of = |list: &Value, id: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id)
                .map(|s| s["node"].clone())
        };
        assert_eq!(node_of(&list, &id), Some(json!("a")), "{list}");
        assert_eq!(node_of(&list, &on_b), Some(json!("b")), "{list}");
        let (_, mine) = c.get("/v1/sessions?local=true").await;
        assert_eq!(mine, json!([]), "local=true: c's own only");
        let (_, task) = c.get("/v1/sessions?task=t-b").await;
        assert_eq!(
            task.as_array().unwrap().len(),
            1,
            "filters reach every node: {task}"
        );
        let out = c.cli(&["ls"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("NODE"), "{text}");
        let row = text.lines().find(|l| l.starts_with(short)).unwrap_or("");
        assert!(row.split_whitespace().any(|w| w == "a"), "{text}");

        // Read and drive a's session through c, by a prefix.
        let (st, v) = c.get(&format!("/v1/sessions/{short}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(
            (v["id"].as_str(), v["node"].as_str()),
            (Some(&*id), Some("a"))
        );
        let (st, m) = c
            .post(
                &format!("/v1/sessions/{short}/messages?wait=true&timeout=20s"),
                json!({"text": "echo answer-$((6*7))"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{m}");
        assert!(m["reply"].as_str().unwrap().contains("answer-42"), "{m}");
        c.wait_screen(&id, "answer-42", T).await;
        let out = c.cli(&["logs", short]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("answer-42"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = c.cli(&[
            "send",
            short,
            "echo cli-$((40+2))",
            "--wait",
            "--timeout",
            "20s",
        ]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("cli-42"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The owner's refusals pass through as they are.
        let (st, v) = c
            .post(
                &format!("/v1/sessions/{short}/resize"),
                json!({"cols": 0, "rows": 5}),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("cols"),
            "{v}"
        );

        // Attach through c: type a command, see its output, close.
        let mut w = ws(&c, &format!("/v1/sessions/{short}/attach")).await;
        let hello = match w.next().await {
            Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
            other => panic!("no hello: {other:?}"),
        };
        assert_eq!(hello["session"]["id"], id.as_str(), "{hello}");
        w.send(Message::Binary(b"echo via-$((6*7))\n".to_vec().into()))
            .await
            .unwrap();
        let mut seen = Vec::new();
        let got = tokio::time::timeout(T, async {
            while let Some(Ok(m)) = w.next().await {
                if let Message::Binary(b) = m {
                    seen.extend_from_slice(&b);
                    if String::from_utf8_lossy(&seen).contains("via-42") {
                        return true;
                    }
                }
            }
            false
        })
        .await;
        assert_eq!(got.ok(), Some(true), "{}", String::from_utf8_lossy(&seen));
        w.close(None).await.unwrap();
        let closed = tokio::time::timeout(T, async {
            loop {
                match w.next().await {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the close did not come back through c");

        // `herd attach` through c, in a real terminal.
        herd_attach(&c, short).await;

        // Events of a's sessions on c: replayed, then live.
        let ev = a
            .create(
                json!({"command": ["sleep", "300"], "task_id": "t-ev", "placement": {"node": "a"}}),
            )
            .await;
        a.wait_session(&ev, T, |v| v["state"] == "ready").await;
        let mut w = ws(&c, "/v1/events?task=t-ev&since_recent=true").await;
        let first = next_event(&mut w).await;
        assert_eq!(first["session_id"], ev.as_str(), "{first}");
        let (st, v) = c
            .req(reqwest::Method::DELETE, &format!("/v1/sessions/{ev}"), None)
            .await;
        assert!(st.is_success(), "{v}");
        let stopped = tokio::time::timeout(T, async {
            loop {
                let e = next_event(&mut w).await;
                if e["session_id"] == ev.as_str() && e["to"] == "stopped" {
                    return e;
                }
            }
        })
        .await
        .expect("no stopped event of a's session through c");
        assert_eq!(stopped["task_id"], "t-ev");
        let (_, list) = c.get("/v1/events?task=t-ev").await;
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .any(|e| e["to"] == "stopped"),
            "{list}"
        );
        drop(w);

        // An id prefix that matches sessions on two nodes is ambiguous, as
        // it is on one node.
        let twin = format!("{short}-0000-4000-8000-000000000000");
        let twin_key = format!("/herd/herd/sessions/{twin}/owner");
        etcd.call(
            "put",
            json!({"key": etcd::b64(twin_key.as_bytes()), "value": etcd::b64(b"b")}),
        )
        .await;
        let (st, v) = c.get(&format!("/v1/sessions/{short}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["code"], "ambiguous_id", "{v}");
        etcd.call(
            "deleterange",
            json!({"key": etcd::b64(twin_key.as_bytes())}),
        )
        .await;

        // The loop guard: a forwarded request is answered where it lands.
        let r = reqwest::Client::new()
            .get(format!("{}/v1/sessions/{id}", c.url))
            .bearer_auth(&c.token)
            .header("x-herd-forwarded", "b")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);

        // The cluster token never reaches a log.
        assert!(c.log().contains("cluster token from"), "{}", c.log());
        assert!(!c.log().contains(&token));

        // a dies: its keys live on (60 s lease) but nobody answers there.
        let pid = a.session(&id).await["pid"].as_i64().unwrap();
        a.kill9();
        kill_group(pid);
        let (st, v) = c.get(&format!("/v1/sessions/{id}")).await;
        assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
        assert_eq!(v["error"]["code"], "node_unreachable", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("node a at http://127.0.0.1:"), "{msg}");
        // The list leaves a out and says so.
        let r = reqwest::Client::new()
            .get(format!("{}/v1/sessions", c.url))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()
                .get("x-herd-missing-nodes")
                .and_then(|v| v.to_str().ok()),
            Some("a")
        );
        let list: Value = r.json().await.unwrap();
        assert_eq!(node_of(&list, &on_b), Some(json!("b")), "{list}");
        let out = c.cli(&["ls"]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("nodes a did not answer"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `herd attach` through `d` in an 80x24 PTY: types a command, sees its
    /// output, detaches with Ctrl+\.
    async fn herd_attach(d: &Daemon, id: &str) {
        let dir = tempfile::tempdir().unwrap();
        let (master, mut child) = sh_in_pty(
            d,
            dir.path(),
            "\"$HERD_BIN\" attach \"$ID\"; echo rc=$?",
            &[("ID", id)],
        );
        let mut writer = master.take_writer().unwrap();
        let seen = collect_output(master.try_clone_reader().unwrap());
        let text = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        let attached = poll(T, || async { text().contains("attached to") }).await;
        assert!(attached, "{}", text());
        writer.write_all(b"echo pty-$((6*7))\r").unwrap();
        writer.flush().unwrap();
        let echoed = poll(T, || async { text().contains("pty-42") }).await;
        assert!(echoed, "{}", text());
        writer.write_all(&[0x1c]).unwrap();
        writer.flush().unwrap();
        let detached = poll(T, || async { text().contains("rc=0") }).await;
        if !detached {
            if let Some(pid) = child.process_id() {
                // SAFETY: kill has no memory-safety preconditions; our child's group.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
        }
        let _ = child.wait();
        assert!(detached, "herd attach did not detach: {}", text());
    }
}
