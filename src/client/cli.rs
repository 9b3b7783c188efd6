//! The command line: `herd serve` runs the daemon, every other command talks to it.
// Over 600 lines: the one list of subcommands and their dispatch, kept together.

mod admin;
mod doctor;
mod events;
mod new;
mod nodes;
mod open;
mod ops;
mod setup;
mod show;
mod stats;

use crate::client::http::{enc, session_path, Client};
use crate::client::output::{age, short_id, Table};
use crate::size::parse_size;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use herd_actors::{SessionInfo, SessionState};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

/// herd: a supervisor for fleets of interactive Claude Code sessions.
#[derive(Debug, Parser)]
#[command(
    name = "herd",
    version = crate::version::LONG,
    about,
    after_help = crate::client::exit::Exit::TABLE
)]
pub struct Cli {
    /// URL of the daemon (default: <data dir>/url, else http://127.0.0.1:7777).
    /// Also accepted after the subcommand, except `serve` (see [`command`]).
    #[arg(long, env = "HERD_URL")]
    pub url: Option<String>,
    /// API token (default: <data dir>/token).
    #[arg(long, env = "HERD_TOKEN", hide_env_values = true)]
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
        /// Config file (TOML); else $HERD_CONFIG, $XDG_CONFIG_HOME/herd/config.toml,
        /// /etc/herd/config.toml, else the embedded defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:7777.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Join a cluster through this etcd URL (repeatable; replaces cluster.etcd).
        #[arg(long, value_name = "URL")]
        etcd: Vec<String>,
        /// This node's name in the cluster (default: cluster.node, else the host name).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// The URL other nodes reach this one at (default: from --listen).
        #[arg(long, value_name = "URL")]
        advertise: Option<String>,
        /// A label of this node, k=v (repeatable; over cluster.labels).
        #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Wait until a session is in one of the given states. Exits 0 when it
    /// is, 7 on timeout, 6 if it ended in another state.
    Wait {
        /// Session id or unique prefix.
        id: String,
        /// States to wait for, comma-separated (ready, busy, waiting_input, stopped, ...).
        #[arg(long, required = true, value_delimiter = ',')]
        state: Vec<SessionState>,
        /// Give up after this long, e.g. 30s or 2h (default: wait as long as it takes).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Print the session's JSON when reached.
        #[arg(long)]
        json: bool,
    },
    /// Remove stopped or failed sessions with their data (store rows, recordings).
    Rm {
        /// Session ids or unique prefixes.
        #[arg(required_unless_present = "stopped")]
        ids: Vec<String>,
        /// Every stopped and failed session.
        #[arg(long)]
        stopped: bool,
        /// Remove a worktree session's worktree even with uncommitted changes
        /// (without it, such a worktree is kept; the branch is kept either way).
        #[arg(long)]
        force: bool,
        /// Print the removed sessions' JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a worktree session's diff: its branch's commits since its base
    /// and its uncommitted changes (new files included).
    Diff {
        /// Session id or unique prefix.
        id: String,
    },
    /// Cancel a queued message (one not yet typed into the session).
    Cancel {
        /// Session id or unique prefix.
        id: String,
        /// The message id (`herd send` prints it).
        message: String,
        /// Print the message's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `herd completions bash > /etc/bash_completion.d/herd`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `herd man > herd.1`.
    Man,
    /// The configuration: the effective one with its origins, or check a file.
    #[command(subcommand)]
    Config(setup::ConfigCommand),
    /// Check the data dir, token, daemon, port, store and Claude binary; say what to fix.
    Doctor {
        /// Config file, as for `herd serve`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a session; prints its id.
    New(new::NewArgs),
    /// List the cluster's nodes: health, load, capacity, labels.
    Nodes {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Act on one node of the cluster.
    #[command(subcommand)]
    Node(NodeCommand),
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
    /// Stop a session (SIGTERM, grace period, SIGKILL); one that ended already is left as it is.
    Kill {
        /// Session id or unique prefix.
        id: String,
        /// SIGKILL at once.
        #[arg(long)]
        force: bool,
        /// Print the session's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace a session's child process now; a stopped or failed session starts again.
    Restart {
        /// Session id or unique prefix.
        id: String,
        /// Print the session's JSON.
        #[arg(long)]
        json: bool,
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
    /// Answer a waiting_input session's dialog by meaning: yes, always, no,
    /// or a free text answer.
    Answer {
        /// Session id or unique prefix.
        id: String,
        /// yes | always | no | TEXT.
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
    /// Interrupt the current turn the profile's way: Ctrl-C (SIGINT to the
    /// foreground process group) for programs and shells, Escape for Claude.
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
    /// A live view of the fleet: state, waiting reason, CPU, memory, tokens,
    /// cost, last line; keys to attach, answer, interrupt, restart (`?`).
    Top,
    /// State transitions: the recent ones, or every new one with --follow.
    Events(events::EventsArgs),
    /// Webhooks (`[[notify]]`): `herd notify test` queues a test notification to each.
    Notify {
        /// What to do.
        #[command(subcommand)]
        action: NotifyAction,
    },
    /// A one-time login link to the web dashboard (opened in $BROWSER when set).
    Open {
        /// Only print the link, even when $BROWSER is set.
        #[arg(long)]
        print: bool,
    },
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

/// The command line as clap sees it. `--url` and `--token` are accepted
/// after every client subcommand too; `serve` takes no `--url` (it listens
/// on `--listen`) and its `--token` is the one clients must present.
pub fn command() -> clap::Command {
    use clap::{Arg, CommandFactory};
    let url = Arg::new("url")
        .long("url")
        .env("HERD_URL")
        .help("URL of the daemon (default: <data dir>/url, else http://127.0.0.1:7777)");
    let token = |help: &'static str| {
        Arg::new("token")
            .long("token")
            .env("HERD_TOKEN")
            .hide_env_values(true)
            .help(help)
    };
    let mut cmd = Cli::command();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(&name, |s| {
            if name == "serve" {
                s.arg(token(
                    "API token clients must present (default: server.token, else <data dir>/token, generated at first start)",
                ))
            } else {
                s.arg(url.clone())
                    .arg(token("API token (default: <data dir>/token)"))
            }
        });
    }
    cmd
}

/// Parses the command line with [`command`]: `--url`/`--token` given after
/// the subcommand win over those before it.
pub fn parse(matches: &clap::ArgMatches) -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let mut cli = Cli::from_arg_matches(matches)?;
    if let Some((_, sub)) = matches.subcommand() {
        let get = |id: &str| sub.try_get_one::<String>(id).ok().flatten().cloned();
        if let Some(u) = get("url") {
            cli.url = Some(u);
        }
        if let Some(t) = get("token") {
            cli.token = Some(t);
        }
    }
    Ok(cli)
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            etcd,
            node,
            advertise,
            labels,
        } => {
            return crate::daemon::serve::run(crate::daemon::serve::ServeOptions {
                config,
                listen,
                data_dir: cli.data_dir,
                token: cli.token,
                etcd,
                node,
                advertise,
                labels,
            })
            .await;
        }
        Command::Completions { shell } => return setup::completions(shell),
        Command::Man => return setup::man(),
        Command::Config(c) => return setup::config(c, cli.data_dir.as_deref()),
        Command::Doctor { config, json } => {
            return doctor::run(cli.url, cli.token, cli.data_dir.as_deref(), config, json).await
        }
        _ => {}
    }
    let client = Client::discover(cli.url, cli.token, cli.data_dir.as_deref())?;
    let c = &client;
    match cli.command {
        Command::Serve { .. }
        | Command::Completions { .. }
        | Command::Man
        | Command::Config(_)
        | Command::Doctor { .. } => unreachable!("handled above"),
        Command::Wait {
            id,
            state,
            timeout,
            json,
        } => ops::wait(c, &id, &state, timeout, json).await,
        Command::Rm {
            ids,
            stopped,
            force,
            json,
        } => ops::rm(c, ids, stopped, force, json).await,
        Command::Diff { id } => ops::diff(c, &id).await,
        Command::Cancel { id, message, json } => ops::cancel(c, &id, &message, json).await,
        Command::New(args) => new::run(c, args).await,
        Command::Nodes { json } => nodes::run(c, json).await,
        Command::Node(NodeCommand::Drain { name, json }) => nodes::drain(c, &name, json).await,
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
            let resp = c.send(Method::GET, &path, None).await?;
            // In a cluster, nodes that did not answer in time are named.
            if let Some(m) = resp
                .headers()
                .get("x-herd-missing-nodes")
                .and_then(|v| v.to_str().ok())
            {
                eprintln!(
                    "warning: cluster nodes {m} did not answer: their sessions are not listed"
                );
            }
            let list: Vec<Value> = resp.json().await.context("reading the daemon's answer")?;
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
            print!("{}", show::render(&v)?);
            Ok(())
        }
        Command::Kill { id, force, json } => {
            let info = c.stop(&id, force).await?;
            if json {
                return print_json(&info);
            }
            println!("{} {}", short_id(&info.id), info.state);
            Ok(())
        }
        Command::Restart { id, json } => ops::restart(c, &id, json).await,
        Command::Interrupt { id } => state_command(c, &id, "/interrupt", None).await,
        Command::Suspend { id } => state_command(c, &id, "/suspend", None).await,
        Command::Resume { id } => state_command(c, &id, "/resume", None).await,
        Command::Attach { id } => crate::client::attach::run(c, &id).await,
        Command::Events(args) => events::run(c, args).await,
        Command::Top => crate::client::top::run(c).await,
        Command::Stats { json } => stats::run(c, json).await,
        Command::Notify {
            action: NotifyAction::Test { json },
        } => {
            let v: Value = c.json(Method::POST, "/v1/notify/test", None).await?;
            if json {
                return print_json(&v);
            }
            for q in v.as_array().into_iter().flatten() {
                println!(
                    "queued {} to {}",
                    q["id"].as_str().unwrap_or("?"),
                    q["url"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        Command::Open { print } => open::run(c, print).await,
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
            print!("{}", show::render(&v)?);
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

async fn state_command(c: &Client, id: &str, route: &str, body: Option<Value>) -> Result<()> {
    let info: SessionInfo = c
        .json(Method::POST, &session_path(id, route), body.as_ref())
        .await?;
    println!("{} {}", short_id(&info.id), info.state);
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
        herd_actors::MessageState::Failed => Err(crate::client::exit::CliError::error(
            crate::client::exit::Exit::MessageFailed,
            format!(
                "message {} failed: {}",
                m.id,
                m.failure
                    .map(|f| f.to_string())
                    .or(m.error)
                    .unwrap_or_default()
            ),
        )),
        other => Err(crate::client::exit::CliError::error(
            crate::client::exit::Exit::MessageFailed,
            format!(
                "message {} ended {other}: {}",
                m.id,
                m.error.unwrap_or_default()
            ),
        )),
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

/// Prints a value as pretty JSON (every `--json`).
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_list(list: &[SessionInfo]) {
    // The node column only in a cluster (a session there has its node).
    if list.iter().any(|s| s.node.is_some()) {
        let mut t = Table::new([
            "ID", "NAME", "NODE", "STATE", "PID", "TASK", "AGE", "COMMAND",
        ]);
        for s in list {
            t.row([
                short_id(&s.id),
                s.name.clone().unwrap_or_default(),
                s.node.clone().unwrap_or_default(),
                s.state.to_string(),
                s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                s.task_id.clone().unwrap_or_default(),
                age(s.created_at),
                s.command.join(" "),
            ]);
        }
        print!("{}", t.render_fit(crate::client::output::terminal_width()));
        return;
    }
    // The worktree column only when a session has one: most fleets have none.
    if list.iter().any(|s| s.worktree.is_some()) {
        let mut t = Table::new([
            "ID", "NAME", "STATE", "PID", "TASK", "AGE", "WORKTREE", "COMMAND",
        ]);
        for s in list {
            t.row([
                short_id(&s.id),
                s.name.clone().unwrap_or_default(),
                s.state.to_string(),
                s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                s.task_id.clone().unwrap_or_default(),
                age(s.created_at),
                s.worktree
                    .as_ref()
                    .map(show::worktree_brief)
                    .unwrap_or_default(),
                s.command.join(" "),
            ]);
        }
        print!("{}", t.render_fit(crate::client::output::terminal_width()));
        return;
    }
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
    print!("{}", t.render_fit(crate::client::output::terminal_width()));
}

/// `herd notify ...`
#[derive(Debug, Subcommand)]
pub enum NotifyAction {
    /// Queue a `test` notification to every webhook; prints the delivery ids.
    Test {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `herd node ...`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Move every session of node NAME to the other nodes (Claude
    /// conversations carried); it takes no new sessions until it restarts.
    Drain {
        /// The node.
        name: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `--label k=v` of `herd serve` (the key and value are checked with
/// `[cluster] labels`).
pub(crate) fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE, such as zone=eu-west")),
    }
}
