//! The real Claude Code CLI failing over (issue 16, point 4): three daemons
//! on a real etcd, a Claude session on node b running the real CLI offline
//! against the mock API of `../shared/claude-harness`; after its first turn
//! its transcript is copied to etcd, b is killed with `kill -9`, the session
//! comes back on a or c with `claude --resume`, and the next turn's request
//! to the API carries the first turn. Needs `--features cluster`, the `etcd`
//! binary (Debian: etcd-server), the harness and the CLI (`.ci/run`
//! installs it); without any of them it says it is skipped.

mod common;

#[cfg(not(feature = "cluster"))]
#[test]
fn skipped_without_the_feature() {
    eprintln!("SKIPPED the real Claude failover test: built without `--features cluster`");
}

#[cfg(feature = "cluster")]
mod real {
    use super::common::etcd::Etcd;
    use super::common::harness::{self, user_texts, Harness, KEY};
    use super::common::{alive, find_file, poll, Daemon};
    use reqwest::StatusCode;
    use serde_json::{json, Value};
    use std::path::Path;
    use std::time::{Duration, Instant};

    const TTL: Duration = Duration::from_secs(2);
    const T: Duration = Duration::from_secs(90);
    const FIRST: &str = "remember the word PINEAPPLE";
    const SECOND: &str = "what was the word?";

    /// Sends `text` to `id` through `d` and waits for the reply.
    async fn send_wait(d: &Daemon, id: &str, text: &str) -> Value {
        let m = d.send_wait(id, text, "90s").await;
        assert_eq!(m["state"], "done", "{m}");
        assert_eq!(m["reply"], format!("MOCK-REPLY: {text}"), "{m}");
        m
    }

    /// A model turn's request (not the CLI's session-title side query).
    fn is_turn(r: &Value) -> bool {
        r["body"]["output_config"]["format"]["type"] != "json_schema"
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_claude_session_fails_over_and_resumes_its_conversation() {
        let dir = match harness::available() {
            Ok(d) => d,
            Err(why) => {
                eprintln!("SKIPPED a_real_claude_session_fails_over_...: {why}");
                return;
            }
        };
        let prefix = std::env::var("CLAUDE_HARNESS_PREFIX")
            .unwrap_or_else(|_| format!("{}/target/claude-npm", env!("CARGO_MANIFEST_DIR")));
        if !Path::new(&prefix).join("node_modules/.bin/claude").exists() {
            eprintln!(
                "SKIPPED a_real_claude_session_fails_over_...: the Claude Code CLI is not installed in {prefix} (.ci/run installs it)"
            );
            return;
        }
        let Some(etcd) = Etcd::start().await else {
            return;
        };
        let h = Harness::start(&dir);
        let config = |node: &str| {
            format!(
                "[restart]\nbackoff_initial = \"10ms\"\n\
                 [claude]\nbinary = {:?}\n\
                 [claude.env]\nANTHROPIC_BASE_URL = {:?}\nCLAUDE_CODE_MAX_RETRIES = \"1\"\n\
                 [cluster]\netcd = [{:?}]\nnode = \"{node}\"\nlease_ttl = \"2s\"\n",
                h.var("CLAUDE_BIN"),
                h.var("ANTHROPIC_BASE_URL"),
                etcd.url(),
            )
        };
        let a = Daemon::start(&config("a")).await;
        let mut b = Daemon::start(&config("b")).await;
        let c = Daemon::start(&config("c")).await;
        for d in [&a, &b, &c] {
            let ok = poll(T, || async {
                let (st, v) = d.get("/v1/nodes").await;
                st == StatusCode::OK && v["nodes"].as_array().is_some_and(|n| n.len() == 3)
            })
            .await;
            assert!(ok, "three nodes through {}", d.url);
        }
        let work = h.var("CLAUDE_HARNESS_WORK_DIR").to_string();

        // A real CLI on b, created through a; its first turn through c.
        let id = a
            .create(
                json!({"profile": "claude", "cwd": work, "claude": {"api_key": KEY},
                "placement": {"node": "b"}}),
            )
            .await;
        let s = a.wait_session(&id, T, |s| s["state"] == "ready").await;
        assert_eq!(s["node"], "b", "{s}");
        let old_pid = s["pid"].as_i64().expect("pid");
        send_wait(&c, &id, FIRST).await;

        // The transcript reached etcd, whole, at the end of that turn.
        let local = find_file(&b.data_dir(), &format!("{id}.jsonl")).expect("b's transcript");
        let meta = format!("/herd/herd/transcripts/{id}/meta");
        let copied = poll(T, || async {
            let size = std::fs::metadata(&local).map(|m| m.len()).unwrap_or(0);
            let bytes = etcd
                .get(&meta)
                .await
                .and_then(|m| serde_json::from_str::<Value>(&m).ok()?["bytes"].as_u64());
            size > 0 && bytes == Some(size)
        })
        .await;
        assert!(
            copied,
            "the transcript copy in etcd ({:?}) is not the local one ({} bytes)",
            etcd.get(&meta).await,
            std::fs::metadata(&local).map(|m| m.len()).unwrap_or(0)
        );

        // kill -9 b: the session comes back on a or c, resumed.
        b.kill9();
        let killed = Instant::now();
        let deadline = killed + T;
        let moved = loop {
            let s = a.listed(&id).await;
            if let Some(s) = s
                .as_ref()
                .filter(|s| s["node"].is_string() && s["node"] != "b" && s["state"] == "ready")
            {
                break s.clone();
            }
            assert!(
                Instant::now() < deadline,
                "session {id} is not ready off b: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!(
            "the real CLI ran again, ready, on {} {:?} after kill -9 (TTL {TTL:?})",
            moved["node"],
            killed.elapsed()
        );
        assert_ne!(moved["pid"].as_i64(), Some(old_pid));
        let command: Vec<&str> = moved["command"]
            .as_array()
            .expect("command")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            command.windows(2).any(|w| w == ["--resume", id.as_str()]),
            "not resumed: {command:?}"
        );
        let owner = if moved["node"] == "a" { &a } else { &c };
        assert_eq!(
            etcd.get(&format!("/herd/herd/sessions/{id}/owner")).await,
            moved["node"].as_str().map(String::from)
        );
        // b's CLI is gone (its fence killed it when the lease ran out).
        assert!(
            poll(T, || async { !alive(old_pid) }).await,
            "b's CLI {old_pid} still runs"
        );

        // The resumed CLI draws the earlier turn.
        owner.wait_screen(&id, "PINEAPPLE", T).await;

        // The next turn, through b's survivors, goes to the API with the
        // first turn in its messages: the conversation went on.
        let before = h.requests().len();
        send_wait(&a, &id, SECOND).await;
        let requests = h.requests();
        let second = requests[before..]
            .iter()
            .filter(|r| is_turn(r))
            .find(|r| user_texts(r).iter().any(|t| t.contains(SECOND)))
            .expect("the mock never saw the second prompt");
        let texts = user_texts(second);
        assert!(
            texts.iter().any(|t| t.contains(FIRST)),
            "the resumed conversation lost its first turn: {texts:?}"
        );
        let replied = second["body"]["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["role"] == "assistant")
            .any(|m| m["content"].to_string().contains("MOCK-REPLY: remember"));
        assert!(
            replied,
            "the first reply is not in the conversation: {second}"
        );
    }
}
