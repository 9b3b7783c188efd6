//! The tasks file: JSON lines (one task per line) or TOML (`[[task]]` tables).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One unit of work: a prompt for a session of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// The task's id: the session's `task_id`, and the root of every
    /// idempotency key and file name the runner derives for it.
    pub id: String,
    /// What the session is asked.
    pub prompt: String,
    /// The session's working directory; relative to the tasks file.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// The session's profile (`claude` unless given).
    #[serde(default)]
    pub profile: Option<String>,
    /// A named session template of the daemon's config.
    #[serde(default)]
    pub template: Option<String>,
    /// The session's budget, as the API takes it (`tokens`, `cost_usd`, ...).
    #[serde(default)]
    pub budget: Option<Value>,
    /// Attempts before the task is reported failed (over `--max-attempts`).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Further fields of `POST /v1/sessions` (`env`, `claude`, `name`, ...).
    #[serde(default)]
    pub session: Option<Map<String, Value>>,
}

/// The TOML form: `[[task]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlTasks {
    task: Vec<Task>,
}

impl Task {
    /// The body of `POST /v1/sessions` for this task.
    pub fn session_body(&self) -> Value {
        let mut body = self.session.clone().unwrap_or_default();
        body.insert("task_id".into(), Value::from(self.id.clone()));
        body.insert(
            "profile".into(),
            Value::from(self.profile.clone().unwrap_or_else(|| "claude".into())),
        );
        if let Some(cwd) = &self.cwd {
            body.insert(
                "cwd".into(),
                Value::from(cwd.to_string_lossy().into_owned()),
            );
        }
        if let Some(t) = &self.template {
            body.insert("template".into(), Value::from(t.clone()));
        }
        if let Some(b) = &self.budget {
            body.insert("budget".into(), b.clone());
        }
        Value::Object(body)
    }

    fn check(&mut self, base: &Path) -> Result<()> {
        let id_ok = (1..=128).contains(&self.id.len())
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !self.id.starts_with('.');
        if !id_ok {
            bail!(
                "id {:?}: must be 1 to 128 of A-Z a-z 0-9 . _ - (not starting with '.')",
                self.id
            );
        }
        if self.prompt.trim().is_empty() {
            bail!("prompt of task {:?}: empty", self.id);
        }
        if self.max_attempts == Some(0) {
            bail!("max_attempts of task {:?}: 0, must be at least 1", self.id);
        }
        if let Some(cwd) = &self.cwd {
            if cwd.is_relative() {
                self.cwd = Some(base.join(cwd));
            }
        }
        Ok(())
    }
}

/// Reads and checks a tasks file: `.toml` as TOML, anything else as JSON lines
/// (blank lines and lines starting with `#` are skipped).
pub fn load(path: &Path) -> Result<Vec<Task>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let base = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut tasks = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str::<TomlTasks>(&text)
            .with_context(|| format!("{}: not a TOML tasks file", path.display()))?
            .task
    } else {
        let mut tasks = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let task: Task = serde_json::from_str(line)
                .with_context(|| format!("{}, line {}", path.display(), n + 1))?;
            tasks.push(task);
        }
        tasks
    };
    let mut seen = BTreeSet::new();
    for t in &mut tasks {
        t.check(&base)
            .with_context(|| format!("{}: task {:?}", path.display(), t.id))?;
        if !seen.insert(t.id.clone()) {
            bail!("{}: task id {:?} appears twice", path.display(), t.id);
        }
    }
    if tasks.is_empty() {
        bail!("{}: no tasks", path.display());
    }
    Ok(tasks)
}
