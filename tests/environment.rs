//! Clean environments: a generic session gets a small allowlist of the
//! daemon's environment plus its own; the daemon's secrets never pass unless
//! `inherit_env` (config or session) names them.

mod common;

use common::Daemon;
use serde_json::json;
use std::time::Duration;

const SECRETS: &[(&str, &str)] = &[
    ("ANTHROPIC_API_KEY", "sk-daemon-secret-0123456789"),
    ("HERD_TOKEN", "daemon-token-0123456789abcdef"),
    ("AWS_SECRET_ACCESS_KEY", "aws-secret-0123456789"),
    ("HERD_TEST_OPT_IN", "opted-in-value"),
    ("LC_HERD_TEST", "lc-value"),
];

/// The environment the session's child sees, one `KEY=VALUE` a line.
async fn child_env(d: &Daemon, extra: serde_json::Value) -> String {
    let mut body = json!({"command": ["sh", "-c", "env; echo ENV-DONE; exec sleep 600"]});
    if let serde_json::Value::Object(m) = extra {
        for (k, v) in m {
            body[k] = v;
        }
    }
    let id = d.create(body).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = d
            .http
            .get(format!("{}/v1/sessions/{id}/output", d.url))
            .bearer_auth(&d.token)
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        if text.contains("ENV-DONE") {
            return text.replace('\r', "");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no env output: {text}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn has(env: &str, key: &str) -> bool {
    env.lines().any(|l| l.starts_with(&format!("{key}=")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_sessions_get_an_allowlist_and_never_the_daemons_secrets() {
    let d = Daemon::start_env("", SECRETS).await;
    let env = child_env(&d, json!({"env": {"OWN": "mine"}})).await;
    for (k, v) in SECRETS.iter().filter(|(k, _)| !k.starts_with("LC_")) {
        assert!(!has(&env, k) && !env.contains(v), "{k} leaked:\n{env}");
    }
    assert!(has(&env, "PATH"), "{env}");
    assert!(has(&env, "LC_HERD_TEST"), "LC_* passes:\n{env}");
    assert!(env.contains("OWN=mine"), "{env}");
    assert!(env.contains("TERM=xterm-256color"), "{env}");
    assert!(has(&env, "HERD_SESSION_ID"), "{env}");
    // More only when asked: per session...
    let env = child_env(&d, json!({"inherit_env": ["HERD_TEST_*"]})).await;
    assert!(env.contains("HERD_TEST_OPT_IN=opted-in-value"), "{env}");
    assert!(!has(&env, "ANTHROPIC_API_KEY"), "{env}");
    // ...and a bad pattern is refused, naming the field.
    let (st, v) = d
        .post(
            "/v1/sessions",
            json!({"command": ["true"], "inherit_env": ["A=B"]}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("inherit_env"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_can_pass_more_of_the_daemons_environment() {
    let d = Daemon::start_env("[session]\ninherit_env = [\"AWS_*\"]\n", SECRETS).await;
    let env = child_env(&d, json!({})).await;
    assert!(
        env.contains("AWS_SECRET_ACCESS_KEY=aws-secret-0123456789"),
        "{env}"
    );
    assert!(!has(&env, "ANTHROPIC_API_KEY"), "{env}");
}
