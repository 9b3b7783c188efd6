//! `herd show` and `herd task`: one session as `key  value` lines.
//!
//! Read from the API's JSON, not a fixed struct: the known fields come first
//! in a readable form, then every other field the daemon sends (new ones
//! appear without a client change).

use crate::client::output::age;
use anyhow::{Context, Result};
use herd_actors::SessionInfo;
use serde_json::Value;

/// Fields printed in their own form; the rest are printed generically.
const KNOWN: &[&str] = &[
    "id",
    "name",
    "state",
    "reason",
    "cause",
    "pid",
    "generation",
    "restarts",
    "exit_code",
    "exit_signal",
    "task_id",
    "project_id",
    "command",
    "cwd",
    "cols",
    "rows",
    "created_at",
    "started_at",
    "updated_at",
    "restart",
    "limits",
    "metrics",
    "profile",
    "dialog",
    "worktree",
];

/// The text of `herd show` for a session's JSON.
pub fn render(v: &Value) -> Result<String> {
    let s: SessionInfo = serde_json::from_value(v.clone()).context("reading the session")?;
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let m = &s.metrics;
    let mut rows: Vec<(String, String)> = vec![
        ("id".into(), s.id.to_string()),
        ("name".into(), or_dash(s.name.clone())),
        ("state".into(), format!("{} ({})", s.state, s.reason)),
        (
            "profile".into(),
            v["profile"].as_str().unwrap_or("generic").to_string(),
        ),
        ("pid".into(), or_dash(s.pid.map(|p| p.to_string()))),
        ("generation".into(), s.generation.to_string()),
        ("restarts".into(), s.restarts.to_string()),
        (
            "exit".into(),
            match (s.exit_code, s.exit_signal) {
                (_, Some(sig)) => format!("signal {sig}"),
                (Some(c), None) => format!("code {c}"),
                _ => "-".into(),
            },
        ),
        ("task".into(), or_dash(s.task_id.clone())),
        ("project".into(), or_dash(s.project_id.clone())),
        ("command".into(), s.command.join(" ")),
        (
            "cwd".into(),
            s.cwd
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(the daemon's working directory)".into()),
        ),
        ("size".into(), format!("{}x{}", s.cols, s.rows)),
        ("created".into(), format!("{} ago", age(s.created_at))),
        (
            "restart policy".into(),
            format!(
                "{} (at most {} restarts within {})",
                s.restart.policy.as_str(),
                s.restart.max_restarts,
                humantime::format_duration(s.restart.restart_window)
            ),
        ),
        ("cpu".into(), format!("{:.1}%", m.cpu_percent)),
        (
            "rss".into(),
            format!("{}", herd_actors::ByteSize(m.rss_bytes)),
        ),
        ("processes".into(), m.processes.to_string()),
        (
            "bytes in/out".into(),
            format!("{} / {}", m.bytes_in, m.bytes_out),
        ),
        ("inputs".into(), m.inputs.to_string()),
        ("errors".into(), m.errors.to_string()),
    ];
    if let Some(d) = &s.dialog {
        rows.push(("dialog".into(), d.clone()));
    }
    if let Some(w) = &s.worktree {
        rows.push(("worktree".into(), w.path.display().to_string()));
        rows.push((
            "branch".into(),
            format!("{} (from {})", w.branch, w.repo.display()),
        ));
        rows.push(("changes".into(), worktree_brief(w)));
    }
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            if KNOWN.contains(&k.as_str()) || val.is_null() {
                continue;
            }
            let text = match val {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            rows.push((k.replace('_', " "), text));
        }
    }
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    Ok(rows
        .iter()
        .map(|(k, v)| format!("{k:<w$}  {}\n", crate::client::output::printable(v)))
        .collect())
}

/// A worktree's branch, dirty mark and diff stat in one short cell:
/// `herd/fix* 2 files +10 -3` (`*`: uncommitted changes; `?`: not looked at yet).
pub fn worktree_brief(w: &herd_actors::WorktreeInfo) -> String {
    match (w.dirty, w.diffstat) {
        (Some(dirty), Some(d)) => format!(
            "{}{} {} file{} +{} -{}",
            w.branch,
            if dirty { "*" } else { "" },
            d.files,
            if d.files == 1 { "" } else { "s" },
            d.insertions,
            d.deletions
        ),
        _ => format!("{} ?", w.branch),
    }
}
