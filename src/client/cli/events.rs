//! `herd events`: the recent state transitions, or every new one with `--follow`.

use crate::client::http::{enc, Client};
use crate::client::output::short_id;
use anyhow::{bail, Context, Result};
use clap::Args;
use futures_util::StreamExt;
use herd_actors::Event;
use reqwest::Method;
use serde_json::Value;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Options of `herd events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new transitions as they happen, until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// Only this session (full id or prefix).
    #[arg(long)]
    session: Option<String>,
    /// Only sessions of this task.
    #[arg(long)]
    task: Option<String>,
    /// Only sessions of this project.
    #[arg(long)]
    project: Option<String>,
    /// Print JSON: the API's array, or with --follow one event per line.
    #[arg(long)]
    json: bool,
}

impl EventsArgs {
    /// `?session=..&task=..&project=..` (empty without filters).
    fn query(&self) -> String {
        let pairs: Vec<String> = [
            ("session", &self.session),
            ("task", &self.task),
            ("project", &self.project),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
        if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", pairs.join("&"))
        }
    }
}

/// Runs `herd events`.
pub async fn run(c: &Client, a: EventsArgs) -> Result<()> {
    let path = format!("/v1/events{}", a.query());
    if a.follow {
        return follow(c, &path, a.json).await;
    }
    let list: Vec<Value> = c.json(Method::GET, &path, None).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    for v in list {
        let e: Event = serde_json::from_value(v).context("reading an event")?;
        println!("{}", line(&e));
    }
    Ok(())
}

/// Prints every frame of the `/v1/events` WebSocket. The stream has no end
/// of its own: it fails when the daemon goes away (e.g. shuts down).
async fn follow(c: &Client, path: &str, json: bool) -> Result<()> {
    let mut ws = c.ws_connect(path).await?;
    while let Some(frame) = ws.next().await {
        match frame {
            Ok(Message::Text(text)) => print_frame(text.as_str(), json)?,
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(WsError::Protocol(_) | WsError::Io(_) | WsError::ConnectionClosed) => break,
            Err(e) => return Err(e).context("reading events from the daemon"),
        }
    }
    bail!("the daemon at {} closed the event stream", c.base())
}

/// One frame: an event, or a notice that this viewer fell behind.
fn print_frame(text: &str, json: bool) -> Result<()> {
    let v: Value = serde_json::from_str(text).context("reading an event from the daemon")?;
    if v.get("type").and_then(Value::as_str) == Some("lagged") {
        eprintln!(
            "herd: this viewer fell behind: {} events were skipped",
            v["missed"]
        );
        return Ok(());
    }
    if json {
        println!("{text}");
        return Ok(());
    }
    let e: Event = serde_json::from_value(v).context("reading an event from the daemon")?;
    println!("{}", line(&e));
    Ok(())
}

/// One aligned line: time, short id, from → to, generation, reason.
pub fn line(e: &Event) -> String {
    let text = format!(
        "{}  {}  {:<13} → {:<13}  gen {:<3}  {}",
        humantime::format_rfc3339_millis(e.at),
        short_id(&e.session_id),
        e.from.as_str(),
        e.to.as_str(),
        e.generation,
        e.reason
    );
    text.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_actors::SessionState;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn lines_are_aligned_whatever_the_states() {
        let mut e = Event {
            session_id: "1a2b3c4d-5e6f-4a0b-8c0d-0123456789ab".parse().unwrap(),
            task_id: None,
            project_id: None,
            from: SessionState::Pending,
            to: SessionState::Starting,
            reason: "spawned".into(),
            cause: None,
            at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            generation: 0,
        };
        let a = line(&e);
        assert_eq!(
            a,
            "2023-11-14T22:13:20.123Z  1a2b3c4d  pending       → starting       gen 0    spawned"
        );
        e.from = SessionState::WaitingInput;
        e.to = SessionState::Busy;
        e.generation = 12;
        let b = line(&e);
        assert_eq!(a.find("gen"), b.find("gen"), "{a}\n{b}");
        assert!(b.ends_with("gen 12   spawned"), "{b}");
    }

    #[test]
    fn filters_become_an_encoded_query() {
        let a = EventsArgs {
            follow: false,
            session: Some("1a2b".into()),
            task: Some("t 1&x".into()),
            project: None,
            json: false,
        };
        assert_eq!(a.query(), "?session=1a2b&task=t%201%26x");
        let none = EventsArgs {
            session: None,
            task: None,
            ..a
        };
        assert_eq!(none.query(), "");
    }
}
