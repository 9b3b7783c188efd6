//! The job-runner example (`examples/jobs/`) against a real daemon and the
//! fake `claude`: killed with SIGKILL in the middle of a run and started
//! again, it finishes every task with one session per task and each prompt
//! typed once; a task whose API call keeps failing is retried, then reported
//! failed.

mod common;

use common::Daemon;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(90);

/// The example's binary, built once by cargo into this test's target dir
/// (a test target does not build the examples).
fn jobs_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/jobs-<hash>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let target = profile_dir.parent().unwrap();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--example", "jobs"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", target);
        // What cargo set for this test only (CARGO_MANIFEST_DIR, CARGO_PKG_*,
        // OUT_DIR, ...) must not reach the inner cargo: build scripts that
        // watch such a variable (ring's) would be rebuilt, here and again
        // by the next outer build.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            let user_setting = [
                "CARGO_HOME",
                "CARGO_INCREMENTAL",
                "CARGO_TERM_",
                "CARGO_BUILD_",
                "CARGO_PROFILE_",
                "CARGO_NET_",
                "CARGO_REGISTR",
                "CARGO_HTTP_",
                "CARGO_TARGET_",
                "CARGO_UNSTABLE_",
            ]
            .iter()
            .any(|p| k.starts_with(p));
            if (k.starts_with("CARGO_") && !user_setting) || k == "OUT_DIR" {
                cmd.env_remove(k.as_ref());
            }
        }
        if profile_dir.file_name().unwrap() == "release" {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("cargo build --example jobs");
        assert!(st.success(), "cargo build --example jobs: {st}");
        profile_dir.join("examples").join("jobs")
    })
}

fn config() -> String {
    format!(
        "[claude]\nbinary = {:?}\n[limits]\nmax_sessions = 20\n[restart]\nbackoff_initial = \"10ms\"\n",
        env!("CARGO_BIN_EXE_herd-fake-claude")
    )
}

/// Starts the runner on `tasks` with its state, results and output in `dir`.
fn run(d: &Daemon, dir: &Path, tasks: &Path, log: &str) -> Child {
    Command::new(jobs_bin())
        .arg(tasks)
        .args(["--url", &d.url, "--state"])
        .arg(dir.join("state.json"))
        .arg("--out")
        .arg(dir.join("out"))
        .args([
            "--parallel",
            "2",
            "--max-attempts",
            "2",
            "--backoff",
            "200ms",
            "--poll",
            "100ms",
            "--keep-sessions",
        ])
        .env("HERD_TOKEN", &d.token)
        .env_remove("HERD_HOME")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(log)).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{log}.err"))).unwrap())
        .spawn()
        .expect("start the job runner")
}

/// Waits for the runner to exit, killing it (by pid) past the deadline.
async fn exit_code(child: &mut Child, dir: &Path, log: &str) -> i32 {
    let deadline = Instant::now() + T;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the runner did not finish: {}",
                std::fs::read_to_string(dir.join(log)).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state(dir: &Path) -> Value {
    std::fs::read(dir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// A task with a prompt typed and not answered yet, per the state file.
fn in_flight(state: &Value) -> bool {
    state["tasks"].as_object().is_some_and(|tasks| {
        tasks.values().any(|t| {
            t["status"] == "pending"
                && t["attempts"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|a| a["message_id"].is_string() && a["outcome"].is_null())
                })
        })
    })
}

fn results(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("out"))
        .map(|r| r.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_run_finishes_every_task_once_and_retries_failures() {
    jobs_bin();
    let d = Daemon::start(&config()).await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    let prompt = |n: usize| format!("task {n}: summarise the report MOCK-WAIT=1200");
    let failing = "task 4: MOCK-STATUS=500 this one always fails";
    let mut lines = String::from("# six tasks, one of them failing\n");
    for n in 1..=6 {
        let text = if n == 4 {
            failing.to_string()
        } else {
            prompt(n)
        };
        let task = json!({
            "id": format!("t{n}"), "prompt": text, "cwd": "work",
            "session": {"claude": {"env": {
                "FAKE_CLAUDE_STARTUP_MS": "100", "FAKE_CLAUDE_BUSY_MS": "100"}}},
        });
        lines.push_str(&format!("{task}\n"));
    }
    let tasks = common::write(dir.path(), "tasks.jsonl", &lines);

    // First run: killed once two tasks have results and another's prompt
    // is being answered.
    let mut first = run(&d, dir.path(), &tasks, "run1.log");
    let ok = common::wait_until(T, || {
        results(dir.path()) >= 2 && in_flight(&state(dir.path()))
    })
    .await;
    let _ = first.kill(); // SIGKILL, by pid
    let _ = first.wait();
    assert!(
        ok,
        "no point with two results and a prompt in flight: {}\n{}",
        std::fs::read_to_string(dir.path().join("run1.log")).unwrap_or_default(),
        state(dir.path())
    );
    let finished_first = results(dir.path());
    assert!(finished_first < 6, "killed before the end");
    let at_kill = state(dir.path());

    // Second run: continues; one task fails (exit 1).
    let mut second = run(&d, dir.path(), &tasks, "run2.log");
    let code = exit_code(&mut second, dir.path(), "run2.log").await;
    let log2 = std::fs::read_to_string(dir.path().join("run2.log")).unwrap();
    assert_eq!(code, 1, "{log2}");
    assert!(log2.contains("6 tasks: 5 done, 1 failed, 0 left"), "{log2}");
    // What the first run had done, the second did not do again.
    for (task, rec) in at_kill["tasks"].as_object().unwrap() {
        if rec["session_id"].is_string() {
            assert!(
                !log2.contains(&format!("{task}: session")),
                "{task}: {log2}"
            );
        }
        for a in rec["attempts"].as_array().unwrap() {
            if a["message_id"].is_string() {
                let again = format!("{task}: prompt sent (attempt {}", a["n"]);
                assert!(!log2.contains(&again), "{task}: {log2}");
            }
        }
        if rec["status"] != "pending" {
            assert!(
                log2.contains(&format!("{task}: ")),
                "{task} reported: {log2}"
            );
        }
    }

    // Every task: one session; its prompt in its queue once, answered.
    for n in 1..=6 {
        let (_, list) = d.get(&format!("/v1/sessions?task=t{n}&all=true")).await;
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 1, "t{n}: one session: {list:?}");
        let sid = list[0]["id"].as_str().unwrap();
        let (_, queue) = d.get(&format!("/v1/sessions/{sid}/queue")).await;
        let queue = queue.as_array().unwrap();
        let result: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("out").join(format!("t{n}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(result["session_id"], json!(sid), "{result}");
        if n == 4 {
            // Retried once (max_attempts 2), then reported failed.
            assert_eq!(queue.len(), 2, "t4: two attempts: {queue:?}");
            for m in queue {
                assert_eq!(m["text"], failing);
                assert_eq!(m["state"], "failed", "{m}");
                assert_eq!(m["failure"]["kind"], "api_error", "{m}");
            }
            assert_eq!(result["status"], "failed", "{result}");
            assert_eq!(result["attempts"], 2, "{result}");
            let reason = result["reason"].as_str().unwrap();
            assert!(
                reason.contains("api_error") && reason.contains("attempts spent"),
                "{reason}"
            );
            continue;
        }
        assert_eq!(queue.len(), 1, "t{n}: one prompt typed: {queue:?}");
        assert_eq!(queue[0]["text"], prompt(n));
        assert_eq!(queue[0]["state"], "done", "{:?}", queue[0]);
        assert_eq!(result["status"], "done", "{result}");
        assert_eq!(result["message_id"], queue[0]["id"], "{result}");
        assert_eq!(result["attempts"], 1, "{result}");
        let reply = result["reply"].as_str().unwrap();
        assert!(reply.contains(&format!("MOCK-REPLY: task {n}")), "{reply}");
        assert!(
            result["usage"]["input_tokens"].as_u64().unwrap() > 0,
            "{result}"
        );
    }

    // A third run finds everything done: nothing sent, nothing created.
    let mut third = run(&d, dir.path(), &tasks, "run3.log");
    assert_eq!(exit_code(&mut third, dir.path(), "run3.log").await, 1);
    let log3 = std::fs::read_to_string(dir.path().join("run3.log")).unwrap();
    assert!(
        !log3.contains("prompt sent") && !log3.contains("created"),
        "{log3}"
    );
    let (_, all) = d.get("/v1/sessions?all=true").await;
    assert_eq!(all.as_array().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tasks_file_is_refused_naming_the_line_and_field() {
    let d = Daemon::start(&config()).await;
    let dir = tempfile::tempdir().unwrap();
    let tasks = common::write(
        dir.path(),
        "tasks.jsonl",
        "{\"id\": \"ok\", \"prompt\": \"hi\"}\n{\"id\": \"t2\", \"promt\": \"typo\"}\n",
    );
    let mut child = run(&d, dir.path(), &tasks, "bad.log");
    assert_eq!(exit_code(&mut child, dir.path(), "bad.log").await, 2);
    let err = std::fs::read_to_string(dir.path().join("bad.log.err")).unwrap();
    assert!(err.contains("line 2") && err.contains("promt"), "{err}");
    let tasks = common::write(
        dir.path(),
        "bad-id.jsonl",
        "{\"id\": \"a/b\", \"prompt\": \"hi\"}\n",
    );
    let mut child = run(&d, dir.path(), &tasks, "bad2.log");
    assert_eq!(exit_code(&mut child, dir.path(), "bad2.log").await, 2);
    let err = std::fs::read_to_string(dir.path().join("bad2.log.err")).unwrap();
    assert!(err.contains("\"a/b\""), "{err}");
    let tasks = common::write(
        dir.path(),
        "tasks.toml",
        "[[task]]\nid = \"t1\"\nprompt = \"hi\"\nmax_attempts = 0\n",
    );
    let mut child = run(&d, dir.path(), &tasks, "bad3.log");
    assert_eq!(exit_code(&mut child, dir.path(), "bad3.log").await, 2);
    let err = std::fs::read_to_string(dir.path().join("bad3.log.err")).unwrap();
    assert!(
        err.contains("max_attempts") && err.contains("tasks.toml"),
        "{err}"
    );
    assert_eq!(d.count().await, 0, "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_died_before_writing_down_adopts_the_session_and_the_prompt() {
    // The daemon acknowledged a session (x2) and a prompt (x1) whose answers
    // the runner never wrote down: the next run finds both instead of
    // making them again (even were the daemon's idempotency keys lost).
    let d = Daemon::start(&config()).await;
    let dir = tempfile::tempdir().unwrap();
    let env =
        json!({"claude": {"env": {"FAKE_CLAUDE_STARTUP_MS": "100", "FAKE_CLAUDE_BUSY_MS": "100"}}});
    let task = |id: &str| json!({"id": id, "prompt": format!("{id}: MOCK-WAIT=300 hello"), "cwd": dir.path(), "session": env});
    let tasks = common::write(
        dir.path(),
        "tasks.jsonl",
        &format!("{}\n{}\n", task("x1"), task("x2")),
    );
    let mut ids = vec![];
    for id in ["x1", "x2"] {
        let mut body = env.clone();
        body["profile"] = json!("claude");
        body["cwd"] = json!(dir.path());
        body["task_id"] = json!(id);
        ids.push(d.create(body).await);
    }
    let (st, m) = d
        .post(
            &format!("/v1/sessions/{}/messages", ids[0]),
            json!({"text": "x1: MOCK-WAIT=300 hello"}),
        )
        .await;
    assert!(st.is_success(), "{m}");
    let state = json!({"tasks": {"x1": {"status": "pending", "attempts": [
        {"n": 1, "session_id": ids[0], "key": "herd-jobs:x1:prompt:1"}]}}});
    std::fs::write(dir.path().join("state.json"), state.to_string()).unwrap();
    let mut child = run(&d, dir.path(), &tasks, "adopt.log");
    let code = exit_code(&mut child, dir.path(), "adopt.log").await;
    let log = std::fs::read_to_string(dir.path().join("adopt.log")).unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("x1: prompt found sent"), "{log}");
    assert!(
        log.contains("x2: session") && log.contains("found"),
        "{log}"
    );
    assert_eq!(d.count().await, 2, "no second session: {log}");
    for (n, sid) in ids.iter().enumerate() {
        let (_, queue) = d.get(&format!("/v1/sessions/{sid}/queue")).await;
        let queue = queue.as_array().unwrap();
        assert_eq!(queue.len(), 1, "x{}: one prompt: {queue:?}", n + 1);
        assert_eq!(queue[0]["state"], "done");
    }
    let result: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/x1.json")).unwrap()).unwrap();
    assert_eq!(result["message_id"], m["id"], "{result}");
}
