//! The command line: `herd serve` runs the daemon, every other command talks to it.

mod admin;
mod events;
mod stats;

use crate::client::http::{enc, Client};
use crate::client::output::{age, printable, short_id, Table};
use crate::size::parse_size;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use herd_actors::{RestartPolicy, SessionInfo, SessionState};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

/// herd: a supervisor for fleets of interactive Claude Code sessions.
#[derive(Debug, Parser)]
#[command(name = "herd", version, about)]
pub struct Cli {
    /// URL of the daemon (default: <data dir>/url, else http://127.0.0.1:7777).
    #[arg(long, global = true, env = "HERD_URL")]
    pub url: Option<String>,
    /// API token (default: <data dir>/token).
    #[arg(long, global = true, env = "HERD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The daemon's data dir (default: $HERD_HOME, else ~/.local/share/herd).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (HTTP API on 127.0.0.1:7777 by default).
    Serve {
        /// Config file (TOML); the embedded defaults when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:7777.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Start a session; prints its id.
    New(NewArgs),
    /// List sessions.
    Ls {
        /// Only sessions in this state.
        #[arg(long)]
        state: Option<SessionState>,
        /// Only sessions of this task.
        #[arg(long)]
        task: Option<String>,
        /// Only sessions of this project.
        #[arg(long)]
        project: Option<String>,
        /// Include stopped and failed sessions.
        #[arg(long, short)]
        all: bool,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one session: state, pid, generation, restarts, task, metrics.
    Show {
        /// Session id or unique prefix.
        id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a session (SIGTERM, grace period, SIGKILL).
    Kill {
        /// Session id or unique prefix.
        id: String,
        /// SIGKILL at once.
        #[arg(long)]
        force: bool,
    },
    /// Replace a session's child process now.
    Restart {
        /// Session id or unique prefix.
        id: String,
    },
    /// Send raw input: key names (Enter, Escape, Tab, C-c, M-x, Up, F1, ...) or literal text.
    Keys {
        /// Session id or unique prefix.
        id: String,
        /// Keys and words, e.g. `herd keys ID 'echo hi' Enter`.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Queue a prompt; it is typed when the session is ready, then Enter.
    Send {
        /// Session id or unique prefix.
        id: String,
        /// The prompt.
        text: String,
        /// Wait until the session answered and is ready again; print the reply.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, e.g. 90s or 5m.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Answer a session's permission dialog: yes, always or no.
    Answer {
        /// Session id or unique prefix.
        id: String,
        /// yes | always | no.
        choice: String,
    },
    /// Print the session's current screen as text.
    Screen {
        /// Session id or unique prefix.
        id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the session's buffered output.
    Logs {
        /// Session id or unique prefix.
        id: String,
        /// Keep printing new output until the session ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Resize the session's terminal, e.g. `herd resize ID 120x40`.
    Resize {
        /// Session id or unique prefix.
        id: String,
        /// COLSxROWS.
        size: String,
    },
    /// SIGINT to the session's foreground process group.
    Interrupt {
        /// Session id or unique prefix.
        id: String,
    },
    /// SIGSTOP the session's process tree.
    Suspend {
        /// Session id or unique prefix.
        id: String,
    },
    /// SIGCONT the session's process tree.
    Resume {
        /// Session id or unique prefix.
        id: String,
    },
    /// Attach this terminal to a session: live output, keys go to the program.
    /// Detach with Ctrl+backslash (C-\).
    Attach {
        /// Session id or unique prefix.
        id: String,
    },
    /// State transitions: the recent ones, or every new one with --follow.
    Events(events::EventsArgs),
    /// Daemon-wide figures: sessions by state, totals, the daemon's memory and CPU.
    Stats {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy the daemon's store to FILE (SQLite online backup, while it runs).
    Backup(admin::BackupArgs),
    /// Forget stopped and failed sessions beyond the retention, with their recordings.
    Gc(admin::GcArgs),
    /// Play a recording (FILE or a session's newest) in this terminal: space
    /// pauses, Right/Left seek 5 s, q quits.
    Replay(crate::formats::replay::ReplayArgs),
    /// Convert a recording (FILE or a session's newest) to asciicast, ttyrec or JSON.
    Export(crate::formats::export::ExportArgs),
    /// Figures of a recording (FILE, or every generation of a session):
    /// duration, bytes, inputs, idle and busy time, restarts, error lines, commands.
    Analyze(crate::formats::analyze::AnalyzeArgs),
    /// Show the session of a task: its live one, else its newest.
    Task {
        /// The job runner's task id.
        task: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

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
    /// Working directory (default: the current one).
    #[arg(long)]
    cwd: Option<PathBuf>,
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
    /// The program and its arguments (after `--`); not with --claude.
    #[arg(last = true, required_unless_present = "claude", value_name = "CMD")]
    command: Vec<String>,
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<()> {
    if let Command::Serve { config, listen } = cli.command {
        return crate::daemon::serve::run(crate::daemon::serve::ServeOptions {
            config,
            listen,
            data_dir: cli.data_dir,
        })
        .await;
    }
    let client = Client::discover(cli.url, cli.token, cli.data_dir.as_deref())?;
    let c = &client;
    match cli.command {
        Command::Serve { .. } => unreachable!("handled above"),
        Command::New(args) => new(c, args).await,
        Command::Ls {
            state,
            task,
            project,
            all,
            json,
        } => {
            let mut q = vec![];
            if let Some(s) = state {
                q.push(format!("state={}", s.as_str()));
            }
            if let Some(t) = task {
                q.push(format!("task={}", enc(&t)));
            }
            if let Some(p) = project {
                q.push(format!("project={}", enc(&p)));
            }
            if all {
                q.push("all=true".into());
            }
            let path = format!("/v1/sessions?{}", q.join("&"));
            let list: Vec<Value> = c.json(Method::GET, &path, None).await?;
            if json {
                return print_json(&list);
            }
            let list: Vec<SessionInfo> = list
                .into_iter()
                .map(serde_json::from_value)
                .collect::<Result<_, _>>()
                .context("reading the session list")?;
            print_list(&list);
            Ok(())
        }
        Command::Show { id, json } => {
            let v: Value = c.json(Method::GET, &session_path(&id, ""), None).await?;
            if json {
                return print_json(&v);
            }
            let info: SessionInfo = serde_json::from_value(v).context("reading the session")?;
            print_show(&info);
            Ok(())
        }
        Command::Kill { id, force } => {
            let path = format!("{}?force={force}", session_path(&id, ""));
            let info: SessionInfo = c.json(Method::DELETE, &path, None).await?;
            println!("{} {}", short_id(&info.id), info.state);
            Ok(())
        }
        Command::Restart { id } => state_command(c, &id, "/restart", None).await,
        Command::Interrupt { id } => state_command(c, &id, "/interrupt", None).await,
        Command::Suspend { id } => state_command(c, &id, "/suspend", None).await,
        Command::Resume { id } => state_command(c, &id, "/resume", None).await,
        Command::Attach { id } => crate::client::attach::run(c, &id).await,
        Command::Events(args) => events::run(c, args).await,
        Command::Stats { json } => stats::run(c, json).await,
        Command::Backup(args) => admin::backup(c, args).await,
        Command::Gc(args) => admin::gc(c, args).await,
        Command::Replay(args) => crate::formats::replay::run(c, args).await,
        Command::Export(args) => crate::formats::export::run(c, args).await,
        Command::Analyze(args) => crate::formats::analyze::run(c, args).await,
        Command::Task { task, json } => {
            let path = format!("/v1/tasks/{}", enc(&task));
            let v: Value = c.json(Method::GET, &path, None).await?;
            if json {
                return print_json(&v);
            }
            let info: SessionInfo = serde_json::from_value(v).context("reading the session")?;
            print_show(&info);
            Ok(())
        }
        Command::Resize { id, size } => {
            let (cols, rows) = parse_size(&size)?;
            state_command(c, &id, "/resize", Some(json!({"cols": cols, "rows": rows}))).await
        }
        Command::Keys { id, keys } => {
            let body = json!({ "keys": keys });
            let _: Value = c
                .json(Method::POST, &session_path(&id, "/input"), Some(&body))
                .await?;
            Ok(())
        }
        Command::Screen { id, json } => {
            if json {
                let v: Value = c
                    .json(Method::GET, &session_path(&id, "/screen"), None)
                    .await?;
                return print_json(&v);
            }
            let path = format!("{}?format=text", session_path(&id, "/screen"));
            let text = c.send(Method::GET, &path, None).await?.text().await?;
            print!("{text}");
            Ok(())
        }
        Command::Logs { id, follow } => logs(c, &id, follow).await,
        Command::Answer { id, choice } => {
            state_command(c, &id, "/answer", Some(json!({ "choice": choice }))).await
        }
        Command::Send {
            id,
            text,
            wait,
            timeout,
            json,
        } => send(c, &id, text, wait, timeout, json).await,
    }
}

fn session_path(id: &str, rest: &str) -> String {
    format!("/v1/sessions/{}{rest}", enc(id))
}

async fn state_command(c: &Client, id: &str, route: &str, body: Option<Value>) -> Result<()> {
    let info: SessionInfo = c
        .json(Method::POST, &session_path(id, route), body.as_ref())
        .await?;
    println!("{} {}", short_id(&info.id), info.state);
    Ok(())
}

async fn new(c: &Client, a: NewArgs) -> Result<()> {
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
    let mut body = json!({
        "command": a.command,
        "cwd": cwd,
        "env": env,
    });
    if let Some(p) = &a.profile {
        body["profile"] = json!(p);
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

async fn send(
    c: &Client,
    id: &str,
    text: String,
    wait: bool,
    timeout: std::time::Duration,
    as_json: bool,
) -> Result<()> {
    let query = if wait {
        format!(
            "?wait=true&timeout={}",
            enc(&humantime::format_duration(timeout).to_string())
        )
    } else {
        String::new()
    };
    let path = format!("{}{query}", session_path(id, "/messages"));
    let m: herd_actors::Message = c
        .json(Method::POST, &path, Some(&json!({ "text": text })))
        .await?;
    if as_json {
        return print_json(&m);
    }
    if !wait {
        println!("{}", m.id);
        return Ok(());
    }
    match m.state {
        herd_actors::MessageState::Done => {
            print!("{}", m.reply.unwrap_or_default());
            Ok(())
        }
        other => bail!(
            "message {} ended {:?}: {}",
            m.id,
            other,
            m.error.unwrap_or_default()
        ),
    }
}

async fn logs(c: &Client, id: &str, follow: bool) -> Result<()> {
    let mut since = 0u64;
    let mut out = std::io::stdout();
    loop {
        let wait = if follow { "&wait=25s" } else { "" };
        let path = format!("{}?since={since}{wait}", session_path(id, "/output"));
        let resp = c.send(Method::GET, &path, None).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let end = header("herd-output-end").and_then(|v| v.parse::<u64>().ok());
        let state = header("herd-session-state").unwrap_or_default();
        let body = resp.bytes().await.context("reading output")?;
        out.write_all(&body)?;
        out.flush()?;
        since = end.unwrap_or(since + body.len() as u64);
        let ended = matches!(state.as_str(), "stopped" | "failed");
        if !follow || (ended && body.is_empty()) {
            return Ok(());
        }
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_list(list: &[SessionInfo]) {
    let mut t = Table::new([
        "ID", "NAME", "STATE", "PID", "GEN", "TASK", "PROJECT", "AGE", "COMMAND",
    ]);
    for s in list {
        t.row([
            short_id(&s.id),
            s.name.clone().unwrap_or_default(),
            s.state.to_string(),
            s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            s.generation.to_string(),
            s.task_id.clone().unwrap_or_default(),
            s.project_id.clone().unwrap_or_default(),
            age(s.created_at),
            s.command.join(" "),
        ]);
    }
    print!("{}", t.render());
}

fn print_show(s: &SessionInfo) {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let m = &s.metrics;
    let rows = [
        ("id", s.id.to_string()),
        ("name", or_dash(s.name.clone())),
        ("state", format!("{} ({})", s.state, s.reason)),
        ("pid", or_dash(s.pid.map(|p| p.to_string()))),
        ("generation", s.generation.to_string()),
        ("restarts", s.restarts.to_string()),
        (
            "exit",
            match (s.exit_code, s.exit_signal) {
                (_, Some(sig)) => format!("signal {sig}"),
                (Some(c), None) => format!("code {c}"),
                _ => "-".into(),
            },
        ),
        ("task", or_dash(s.task_id.clone())),
        ("project", or_dash(s.project_id.clone())),
        ("command", s.command.join(" ")),
        (
            "cwd",
            or_dash(s.cwd.as_ref().map(|p| p.display().to_string())),
        ),
        ("size", format!("{}x{}", s.cols, s.rows)),
        ("created", format!("{} ago", age(s.created_at))),
        (
            "restart policy",
            format!(
                "{} (max {} in {})",
                s.restart.policy.as_str(),
                s.restart.max_restarts,
                humantime::format_duration(s.restart.restart_window)
            ),
        ),
        ("cpu", format!("{:.1}%", m.cpu_percent)),
        ("rss", format!("{}", herd_actors::ByteSize(m.rss_bytes))),
        ("processes", m.processes.to_string()),
        ("bytes in/out", format!("{} / {}", m.bytes_in, m.bytes_out)),
        ("inputs", m.inputs.to_string()),
        ("errors", m.errors.to_string()),
    ];
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<w$}  {}", printable(&v));
    }
}
