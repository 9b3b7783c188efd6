//! `herd new`: start a session.

use crate::client::http::Client;
use crate::size::parse_size;
use anyhow::{bail, Context, Result};
use clap::Args;
use herd_actors::{RestartPolicy, SessionInfo};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Options of `herd new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Human name.
    #[arg(long)]
    name: Option<String>,
    /// Task id of the job runner.
    #[arg(long)]
    task: Option<String>,
    /// Project id.
    #[arg(long)]
    project: Option<String>,
    /// Working directory (default: the current one). With --worktree, a
    /// directory in the git repository to branch from.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Start from the config's `[templates.NAME]`; the options given here
    /// override the template's.
    #[arg(long, value_name = "NAME")]
    template: Option<String>,
    /// Run in a new git worktree of the repository at --cwd (kept in the data
    /// dir): on BRANCH (checked out if it exists, else made from HEAD), or
    /// without BRANCH on a new branch `herd/<name or short id>`.
    #[arg(long, value_name = "BRANCH", num_args = 0..=1)]
    worktree: Option<Option<String>>,
    /// In a cluster: start on this node (default: the least-loaded one).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// In a cluster: only on a node with this label, KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = super::parse_label)]
    labels: Vec<(String, String)>,
    /// Environment variable for the child, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Restart policy: always, on-failure or never.
    #[arg(long)]
    restart: Option<RestartPolicy>,
    /// Terminal size COLSxROWS (default 120x40).
    #[arg(long)]
    size: Option<String>,
    /// Run Claude Code (the `[claude]` binary) with the Claude profile: state
    /// from its screen, replies from its transcript, `--resume` on restarts.
    #[arg(long)]
    claude: bool,
    /// How herd reads the session's state: `generic` (busy while output
    /// flows, ready after quiet), `shell` (bash/zsh prompt marks: a message's
    /// reply is the command's output and exit status). For Claude Code use
    /// `--claude`.
    #[arg(long, value_parser = ["generic", "shell"], conflicts_with = "claude")]
    profile: Option<String>,
    /// Claude: model (`--model`).
    #[arg(long, requires = "claude")]
    model: Option<String>,
    /// Claude: text appended to the system prompt.
    #[arg(long, requires = "claude")]
    system_prompt: Option<String>,
    /// Claude: allowed tools, comma-separated (e.g. "Bash,Read").
    #[arg(long, requires = "claude", value_delimiter = ',')]
    allowed_tools: Vec<String>,
    /// Claude: disallowed tools, comma-separated.
    #[arg(long, requires = "claude", value_delimiter = ',')]
    disallowed_tools: Vec<String>,
    /// Claude: permission mode (default, acceptEdits, plan, bypassPermissions, dontAsk, auto).
    #[arg(long, requires = "claude")]
    permission_mode: Option<String>,
    /// Claude: maximum agentic turns, where the CLI supports it.
    #[arg(long, requires = "claude")]
    max_turns: Option<u32>,
    /// The program and its arguments (after `--`); not with --claude; from
    /// the template when --template names one with a command.
    #[arg(
        last = true,
        required_unless_present_any = ["claude", "template"],
        value_name = "CMD"
    )]
    command: Vec<String>,
}

/// Runs `herd new`: prints the new session's id alone.
pub async fn run(c: &Client, a: NewArgs) -> Result<()> {
    let mut env = serde_json::Map::new();
    for kv in &a.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                env.insert(k.to_string(), Value::String(v.to_string()));
            }
            _ => bail!("invalid --env {kv:?}: expected KEY=VALUE"),
        }
    }
    let cwd = match a.cwd {
        Some(d) => d,
        None => std::env::current_dir().context("reading the current directory")?,
    };
    let cwd = std::fs::canonicalize(&cwd)
        .with_context(|| format!("invalid --cwd {:?}", cwd.display().to_string()))?;
    let mut body = json!({ "cwd": cwd });
    // Absent fields leave the template's value in place.
    if !a.command.is_empty() {
        body["command"] = json!(a.command);
    }
    if !env.is_empty() {
        body["env"] = Value::Object(env);
    }
    if let Some(t) = &a.template {
        body["template"] = json!(t);
    }
    match &a.worktree {
        None => {}
        Some(None) => body["worktree"] = json!(true),
        Some(Some(b)) => body["worktree"] = json!(b),
    }
    if let Some(p) = &a.profile {
        body["profile"] = json!(p);
    }
    if a.node.is_some() || !a.labels.is_empty() {
        let labels: serde_json::Map<String, Value> = a
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        body["placement"] = json!({ "node": a.node, "labels": labels });
    }
    if a.claude {
        if !a.command.is_empty() {
            bail!("with --claude, give no command: herd builds the claude command line");
        }
        let mut opts = serde_json::Map::new();
        let mut put = |k: &str, v: Value| {
            opts.insert(k.into(), v);
        };
        if let Some(m) = a.model {
            put("model", json!(m));
        }
        if let Some(p) = a.system_prompt {
            put("append_system_prompt", json!(p));
        }
        if !a.allowed_tools.is_empty() {
            put("allowed_tools", json!(a.allowed_tools));
        }
        if !a.disallowed_tools.is_empty() {
            put("disallowed_tools", json!(a.disallowed_tools));
        }
        if let Some(p) = a.permission_mode {
            put("permission_mode", json!(p));
        }
        if let Some(n) = a.max_turns {
            put("max_turns", json!(n));
        }
        body["profile"] = json!("claude");
        body["claude"] = Value::Object(opts);
    }
    if let Some(n) = a.name {
        body["name"] = json!(n);
    }
    if let Some(t) = a.task {
        body["task_id"] = json!(t);
    }
    if let Some(p) = a.project {
        body["project_id"] = json!(p);
    }
    if let Some(r) = a.restart {
        body["restart"] = json!({ "policy": r.as_str() });
    }
    if let Some(s) = a.size {
        let (cols, rows) = parse_size(&s)?;
        body["cols"] = json!(cols);
        body["rows"] = json!(rows);
    }
    let info: SessionInfo = c.json(Method::POST, "/v1/sessions", Some(&body)).await?;
    println!("{}", info.id);
    Ok(())
}
