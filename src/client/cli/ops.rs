//! Commands for job runners: `wait`, `rm`, `cancel`, and `restart` that
//! reports the new generation.

use super::print_json;
use crate::client::exit::{CliError, Exit};
use crate::client::http::{session_path, Client};
use crate::client::output::short_id;
use anyhow::{Context, Result};
use herd_actors::{SessionInfo, SessionState};
use reqwest::Method;
use std::io::Write;
use std::time::{Duration, Instant};

/// `herd wait ID --state S[,S] [--timeout T]`.
pub async fn wait(
    c: &Client,
    id: &str,
    states: &[SessionState],
    timeout: Option<Duration>,
    json: bool,
) -> Result<()> {
    let info = c.wait(id, states, timeout).await?;
    if json {
        return print_json(&info);
    }
    println!("{} {}", short_id(&info.id), info.state);
    Ok(())
}

/// `herd rm ID... [--stopped]`: every id is tried; the exit code is the
/// first failure's.
pub async fn rm(
    c: &Client,
    ids: Vec<String>,
    stopped: bool,
    force: bool,
    json: bool,
) -> Result<()> {
    let mut targets = ids;
    if stopped {
        for s in c.list("all=true").await? {
            if s.state.is_final() {
                targets.push(s.id.to_string());
            }
        }
    }
    let mut removed: Vec<SessionInfo> = vec![];
    let mut first_error: Option<anyhow::Error> = None;
    for id in &targets {
        match c.remove(id, force).await {
            Ok((info, note)) => {
                if !json {
                    println!("{} removed", short_id(&info.id));
                }
                if let Some(n) = note {
                    eprintln!("herd: {}: {n}", short_id(&info.id));
                }
                removed.push(info);
            }
            Err(e) => {
                eprintln!("herd: {id}: {e:#}");
                first_error.get_or_insert(e);
            }
        }
    }
    if json {
        print_json(&removed)?;
    }
    match first_error {
        // Already printed: exit with its code, without printing it twice.
        Some(e) => Err(CliError::error(
            exit_of(&e),
            format!(
                "{} of {} not removed",
                targets.len() - removed.len(),
                targets.len()
            ),
        )),
        None => Ok(()),
    }
}

fn exit_of(e: &anyhow::Error) -> Exit {
    [
        Exit::Unreachable,
        Exit::Unauthorized,
        Exit::NotFound,
        Exit::Conflict,
    ]
    .into_iter()
    .find(|x| crate::client::http::is_exit(e, *x))
    .unwrap_or(Exit::Failure)
}

/// `herd cancel ID MESSAGE`.
pub async fn cancel(c: &Client, id: &str, message: &str, json: bool) -> Result<()> {
    let m = c.cancel(id, message).await?;
    if json {
        return print_json(&m);
    }
    println!("{} {}", m.id, m.state);
    Ok(())
}

/// How long `restart` waits to report the new child.
const RESTART_REPORT: Duration = Duration::from_secs(10);

/// `herd restart ID`: prints the state of the new generation, not the old one.
pub async fn restart(c: &Client, id: &str, json: bool) -> Result<()> {
    let before = c.session(id).await?;
    let path = crate::client::http::session_path(id, "/restart");
    let mut info: SessionInfo = c.json(reqwest::Method::POST, &path, None).await?;
    // The answer comes as the restart begins; poll until the new child is
    // up (or the session settles otherwise), with a deadline.
    let deadline = Instant::now() + RESTART_REPORT;
    let settled = |i: &SessionInfo| {
        i.generation > before.generation
            && !matches!(
                i.state,
                SessionState::Pending | SessionState::Starting | SessionState::Restarting
            )
    };
    while !settled(&info) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        info = c.session(&info.id.to_string()).await?;
    }
    if json {
        return print_json(&info);
    }
    println!(
        "{} {} (generation {})",
        short_id(&info.id),
        info.state,
        info.generation
    );
    Ok(())
}

/// `herd diff ID`: the worktree's changes since its base, as a unified diff.
pub async fn diff(c: &Client, id: &str) -> Result<()> {
    let bytes = c
        .send(Method::GET, &session_path(id, "/diff"), None)
        .await?
        .bytes()
        .await
        .context("reading the diff")?;
    std::io::stdout()
        .write_all(&bytes)
        .context("writing the diff")
}
