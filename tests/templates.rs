//! `[templates.NAME]`: applied at create time, overridden by the request,
//! unknown names refused; `herd config check/show` see them.

mod common;

use common::Daemon;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn fake() -> &'static str {
    env!("CARGO_BIN_EXE_herd-fake-claude")
}

fn config(log: &std::path::Path) -> String {
    format!(
        r#"[claude]
binary = {fake:?}
hooks = false
[limits]
max_sessions = 20
[restart]
backoff_initial = "10ms"

[templates.reviewer]
profile = "claude"
env = {{ ROLE = "reviewer", LEVEL = "1" }}
restart = {{ policy = "never" }}
limits = {{ idle_timeout = "20m" }}
budget = {{ cost_usd = 2.5 }}
[templates.reviewer.claude]
model = "opus"
allowed_tools = ["Read", "Grep"]
permission_mode = "plan"
env = {{ FAKE_CLAUDE_LOG = {log:?}, FAKE_CLAUDE_STARTUP_MS = "100" }}

[templates.echo]
command = ["sh", "-c", "echo from-template $ROLE; exec sleep 600"]
env = {{ ROLE = "echoer" }}
"#,
        fake = fake(),
        log = log.display().to_string(),
    )
}

fn starts(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn after(argv: &[String], flag: &str) -> Option<String> {
    let at = argv.iter().position(|a| a == flag)?;
    argv.get(at + 1).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_applies_and_the_request_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("fake-claude.log");
    let d = Daemon::start(&config(&log)).await;
    let cwd = tmp.path().to_str().unwrap();
    // From the CLI: the template alone.
    let o = d.cli(&["new", "--template", "reviewer", "--cwd", cwd]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let first = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let v = d.session(&first).await;
    assert_eq!(v["profile"], "claude");
    assert_eq!(v["restart"]["policy"], "never");
    assert_eq!(v["limits"]["idle_timeout"], "20m");
    // Over the API: the request's model wins, env merges key by key.
    let (st, v) = d
        .post(
            "/v1/sessions",
            json!({"template": "reviewer", "cwd": cwd, "claude": {"model": "haiku"},
                   "env": {"LEVEL": "2"}, "restart": {"policy": "on-failure"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let second = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["restart"]["policy"], "on-failure");
    assert!(
        common::wait_until(T, || starts(&log).len() == 2).await,
        "two starts"
    );
    let runs = starts(&log);
    let argv =
        |i: usize| -> Vec<String> { serde_json::from_value(runs[i]["argv"].clone()).unwrap() };
    let models: Vec<Option<String>> = (0..2).map(|i| after(&argv(i), "--model")).collect();
    assert!(
        models.contains(&Some("opus".into())) && models.contains(&Some("haiku".into())),
        "{models:?}"
    );
    for i in 0..2 {
        assert_eq!(
            after(&argv(i), "--permission-mode").as_deref(),
            Some("plan")
        );
        let tools = after(&argv(i), "--allowedTools").unwrap_or_default();
        assert!(tools.contains("Read") && tools.contains("Grep"), "{tools}");
    }
    // The stored spec is the resolved one: it survives a daemon restart
    // whatever the template says then.
    let mut d = d;
    let dir = {
        d.stop();
        d.into_dir()
    };
    let d = Daemon::start_in(dir, "[limits]\nmax_sessions = 20\n").await;
    for id in [&first, &second] {
        let (st, v) = d.get(&format!("/v1/sessions/{id}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["profile"], "claude");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_command_env_and_unknown_template() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&tmp.path().join("log"))).await;
    // The template's command, no command given.
    let o = d.cli(&["new", "--template", "echo"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    d.wait_screen(&id, "from-template echoer", T).await;
    // The request's command and env win.
    let id = d
        .create(json!({"template": "echo", "command": ["sh", "-c", "echo mine $ROLE; exec sleep 600"], "env": {"ROLE": "me"}}))
        .await;
    d.wait_screen(&id, "mine me", T).await;
    let before = d.count().await;
    // Unknown: 400 naming the field, the value and the known templates.
    let (st, v) = d
        .post(
            "/v1/sessions",
            json!({"template": "reviewr", "command": ["sh"]}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("invalid template") && msg.contains("\"reviewr\""),
        "{msg}"
    );
    assert!(msg.contains("echo, reviewer"), "{msg}");
    let o = d.cli(&["new", "--template", "nope"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"nope\" is not a template"));
    // A template that makes a bad spec with the request is refused the same.
    let (st, v) = d
        .post("/v1/sessions", json!({"template": "echo", "cols": 0}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(d.count().await, before);
}

#[test]
fn config_check_and_show_see_templates() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.toml");
    std::fs::write(&good, config(&tmp.path().join("log"))).unwrap();
    let herd = |args: &[&str]| {
        std::process::Command::new(common::herd_bin())
            .args(args)
            .env_remove("HERD_CONFIG")
            .env("HERD_HOME", tmp.path())
            .output()
            .unwrap()
    };
    let o = herd(&["config", "check", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = herd(&["config", "show", "--config", good.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("templates.reviewer.claude.model = \"opus\""),
        "{text}"
    );
    assert!(
        text.contains("templates.echo.env.ROLE = \"***\""),
        "env values are hidden: {text}"
    );
    for (toml, key) in [
        ("[templates.x]\nmodle = \"opus\"\n", "modle"),
        (
            "[templates.x]\nlimits = { idle_timeout = \"1ms\" }\n",
            "templates.x.limits.idle_timeout",
        ),
        (
            "[templates.x]\nclaude = { model = \"opus\" }\n",
            "templates.x.claude",
        ),
        ("[templates.x]\nprofile = \"robot\"\n", "robot"),
    ] {
        let bad = tmp.path().join("bad.toml");
        std::fs::write(&bad, toml).unwrap();
        let o = herd(&["config", "check", bad.to_str().unwrap()]);
        assert!(!o.status.success(), "{toml}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(key), "{toml}: {err}");
    }
}
