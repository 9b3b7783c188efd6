//! The CLI against a real daemon; and `herd serve` refusing bad configs.

mod common;

use common::{herd_bin, Daemon};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn ok(o: std::process::Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        stdout(&o)
    );
    stdout(&o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_drives_a_session() {
    let d = Daemon::start("").await;
    let out = ok(d.cli(&[
        "new",
        "--name",
        "demo",
        "--task",
        "job-7",
        "--project",
        "p1",
        "--env",
        "X_VAL=forty-two",
        "--",
        "bash",
        "--norc",
        "--noprofile",
    ]));
    let id = out.trim().to_string();
    assert_eq!(out, format!("{id}\n"), "new prints the id alone");
    assert_eq!(id.len(), 36);
    d.wait_session(&id, T, |s| s["state"] == "ready").await;

    let list: Value = serde_json::from_str(&ok(d.cli(&["ls", "--json"]))).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    let table = ok(d.cli(&["ls"]));
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("ID") && header.contains("STATE") && header.contains("TASK"));
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.starts_with(&id[..8]) && row.contains("job-7") && row.contains("ready"),
        "{table}"
    );
    // Columns line up: STATE starts at the same offset in header and row.
    let col = header.find("STATE").unwrap();
    assert_eq!(&row[col..col + 5], "ready");

    let prefix = &id[..6];
    ok(d.cli(&["keys", prefix, "echo $X_VAL", "Enter"]));
    d.wait_screen(&id, "forty-two\n", T).await;
    let screen = ok(d.cli(&["screen", prefix]));
    assert!(screen.contains("forty-two"), "{screen}");
    let logs = ok(d.cli(&["logs", prefix]));
    assert!(logs.contains("forty-two"));

    let show: Value = serde_json::from_str(&ok(d.cli(&["show", prefix, "--json"]))).unwrap();
    common::assert_session_fields(&show);
    assert_eq!(show["task_id"], "job-7");
    let cwd = std::fs::canonicalize(std::env::current_dir().unwrap()).unwrap();
    assert_eq!(
        show["cwd"],
        cwd.to_str().unwrap(),
        "new defaults to the caller's cwd"
    );
    let human = ok(d.cli(&["show", prefix]));
    assert!(human.contains("generation") && human.contains("job-7"));

    let pid = show["pid"].as_i64().unwrap();
    ok(d.cli(&["restart", prefix]));
    let s = d
        .wait_session(&id, T, |s| s["generation"] == 1 && s["pid"].is_i64())
        .await;
    assert_ne!(s["pid"].as_i64().unwrap(), pid);

    // logs --follow streams until the session ends.
    let mut follow = Command::new(herd_bin())
        .args(["logs", "--follow", prefix])
        .env("HERD_URL", &d.url)
        .env("HERD_TOKEN", &d.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    ok(d.cli(&["keys", prefix, "echo live-$((20+3))", "Enter"]));
    d.wait_screen(&id, "live-23\n", T).await;
    ok(d.cli(&["kill", prefix, "--force"]));
    d.wait_session(&id, T, |s| s["state"] == "stopped").await;
    let reached_end = common::wait_until(T, || matches!(follow.try_wait(), Ok(Some(_)))).await;
    if !reached_end {
        let _ = follow.kill();
    }
    let out = follow.wait_with_output().unwrap();
    assert!(reached_end, "logs --follow did not end with the session");
    assert!(String::from_utf8_lossy(&out.stdout).contains("live-23"));

    let table = ok(d.cli(&["ls", "--all"]));
    assert!(table.contains("stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_are_one_clear_line() {
    let d = Daemon::start("").await;
    let cases: [(&[&str], &str); 5] = [
        (&["show", "0000dead"], "no session matches"),
        (&["keys", "zz!"], "KEYS"),
        (&["new", "--", "no-such-program-xyz"], "no-such-program-xyz"),
        (&["new", "--env", "NOEQUALS", "--", "sh"], "KEY=VALUE"),
        (&["resize", "abc", "12by4"], "COLSxROWS"),
    ];
    for (args, needle) in cases {
        let o = d.cli(args);
        assert!(!o.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let o = d.cli(&["show", "0000dead"]);
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1);
    // A wrong token is reported as such.
    let o = Command::new(herd_bin())
        .args(["ls"])
        .env("HERD_URL", &d.url)
        .env("HERD_TOKEN", "wrong-token-wrong-token")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid token"));
    // No daemon: says so.
    let o = Command::new(herd_bin())
        .args(["ls"])
        .env("HERD_URL", "http://127.0.0.1:9")
        .env("HERD_TOKEN", "x")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach the herd daemon"));
    assert_eq!(d.count().await, 0, "failed commands created sessions");
}

fn serve_fails(config: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write(dir.path(), "bad.toml", config);
    let o = Command::new(herd_bin())
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "serve should refuse {config:?} {extra:?}"
    );
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn serve_refuses_bad_config_naming_key_and_value() {
    let err = serve_fails(
        "[limits]\nidle_timeout = \"soonish\"\n",
        &["--listen", "127.0.0.1:0"],
    );
    assert!(
        err.contains("idle_timeout") && err.contains("soonish"),
        "{err}"
    );
    let err = serve_fails("[limits]\nmax_sesions = 3\n", &["--listen", "127.0.0.1:0"]);
    assert!(err.contains("max_sesions"), "{err}");
    let err = serve_fails(
        "[restart]\npolicy = \"sometimes\"\n",
        &["--listen", "127.0.0.1:0"],
    );
    assert!(err.contains("policy") && err.contains("sometimes"), "{err}");
    let err = serve_fails("", &["--listen", "0.0.0.0:0"]);
    assert!(
        err.contains("non-loopback") && err.contains("token"),
        "{err}"
    );
}
