//! The real Claude Code CLI, offline, through `../shared/claude-harness`:
//! its mock Messages API, started and stopped by pid.

use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The API key the sessions are given (the mock accepts any).
pub const KEY: &str = "sk-test-herd-SECRET-9f8e7d6c5b4a";

/// The harness folder, or why the real-CLI tests are skipped.
pub fn available() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/claude-harness");
    if !dir.join("prepare.sh").exists() {
        return Err(format!("{} is absent", dir.display()));
    }
    Ok(dir)
}

/// The mock API and its run dir, stopped and removed on drop (by its pid).
pub struct Harness {
    /// The variables prepare.sh exported.
    vars: HashMap<String, String>,
}

impl Harness {
    /// Starts the mock with prepare.sh of the harness in `dir`.
    pub fn start(dir: &Path) -> Harness {
        let prefix = std::env::var("CLAUDE_HARNESS_PREFIX")
            .unwrap_or_else(|_| format!("{}/target/claude-npm", env!("CARGO_MANIFEST_DIR")));
        let script = format!(
            "set -e; eval \"$(bash {}/prepare.sh --first-delay-ms 300 --delay-ms 40)\"; env -0",
            dir.display()
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("CLAUDE_HARNESS_PREFIX", &prefix)
            .env("MOCK_API_KEY", KEY)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run prepare.sh");
        assert!(out.status.success(), "prepare.sh failed");
        let vars = out
            .stdout
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        Harness { vars }
    }

    /// A variable prepare.sh exported (empty if not).
    pub fn var(&self, k: &str) -> &str {
        self.vars.get(k).map(String::as_str).unwrap_or_default()
    }

    /// Every POST /v1/messages the mock received.
    pub fn requests(&self) -> Vec<Value> {
        let log = PathBuf::from(self.var("CLAUDE_HARNESS_RUN_DIR")).join("requests.jsonl");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| {
                r["method"] == "POST"
                    && r["path"].as_str().unwrap_or("").starts_with("/v1/messages")
            })
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Ok(pid) = self.var("CLAUDE_HARNESS_MOCK_PID").parse::<i32>() {
            // SAFETY: the mock is the harness's child we were told the pid of.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let run = self.var("CLAUDE_HARNESS_RUN_DIR");
        if run.contains("claude-harness.") {
            let _ = std::fs::remove_dir_all(run);
        }
    }
}

/// The texts of a request's user turns.
pub fn user_texts(request: &Value) -> Vec<String> {
    let mut out = vec![];
    for m in request["body"]["messages"].as_array().into_iter().flatten() {
        if m["role"] != "user" {
            continue;
        }
        match &m["content"] {
            Value::String(s) => out.push(s.clone()),
            Value::Array(blocks) => out.extend(
                blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str().map(str::to_string)),
            ),
            _ => {}
        }
    }
    out
}
