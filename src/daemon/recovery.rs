//! Bringing sessions back after the daemon stopped or died.
//!
//! For each stored session:
//! - a final one (stopped, failed) is kept as history;
//! - one stopped by a graceful daemon shutdown comes back;
//! - one that was live when the daemon died: its stale processes are killed
//!   first, then it restarts per its restart policy with the same id, task
//!   and generation + 1 (policy `never`: it is recorded as stopped);
//! - one that was stopping is recorded as stopped.
//!
//! A message that was being answered when the daemon died is marked
//! `interrupted` (never typed twice); queued ones are delivered once the
//! session is ready.

use crate::daemon::claude::ClaudeProfile;
use crate::daemon::store::{Store, StoredSession};
use anyhow::{Context, Result};
use futures_util::StreamExt;
use herd_actors::process::{self, Pid};
use herd_actors::{
    EndCause, MessageState, Registry, RestartPolicy, Restore, SessionDefaults, SessionInfo,
    SessionState,
};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// Sessions handed to the registry at once during a restore (it admits
/// them one by one, in this order).
const RESTORES_IN_FLIGHT: usize = 16;

/// What recovery did, for the log.
#[derive(Debug, Default)]
pub struct Report {
    /// Sessions started again.
    pub restarted: usize,
    /// Sessions kept as history.
    pub history: usize,
    /// Stale processes of the previous daemon that were killed.
    pub killed: usize,
    /// Messages marked interrupted.
    pub interrupted: usize,
}

/// Decides each stored session's fate and writes the decisions to the store
/// (before the writer thread starts). Returns what to hand to the registry.
pub fn settle(
    store: &mut Store,
    stored: Vec<StoredSession>,
    defaults: &SessionDefaults,
) -> Result<(Vec<(StoredSession, bool)>, Report)> {
    let mut report = Report::default();
    let mut leftovers = process::find_by_env("HERD_SESSION_ID");
    let mut out = Vec::with_capacity(stored.len());
    for mut s in stored {
        let from = s.info.state;
        let was_live = !from.is_final() && from != SessionState::Stopping;
        let back_from_shutdown =
            from == SessionState::Stopped && s.info.cause == Some(EndCause::DaemonShutdown);
        // Whatever state it was in, nothing of the session may outlive the
        // daemon that ran it (detached processes carry its id).
        report.killed += kill_stale(
            &s,
            leftovers.remove(&s.info.id.to_string()).unwrap_or_default(),
        );
        let interrupted: Vec<_> = s
            .messages
            .iter_mut()
            .filter(|m| m.state == MessageState::Delivering)
            .map(|m| {
                m.state = MessageState::Interrupted;
                m.completed_at = Some(SystemTime::now());
                m.error = Some("the daemon stopped while the message was being answered; it was not sent again".into());
                m.clone()
            })
            .collect();
        report.interrupted += interrupted.len();
        let mut events = vec![];
        let live = if was_live {
            if s.spec.effective(defaults).restart.policy == RestartPolicy::Never {
                let reason = "the daemon died; not restarted (restart policy never)";
                events.extend(stop(&mut s.info, reason, EndCause::DaemonDied)?);
                false
            } else {
                true
            }
        } else if from == SessionState::Stopping {
            let cause = s.info.cause.clone().unwrap_or(EndCause::DaemonDied);
            events.extend(stop(
                &mut s.info,
                "stopped while the daemon was down",
                cause,
            )?);
            false
        } else {
            back_from_shutdown
        };
        if !live {
            s.info.pid = None;
        }
        store
            .settle(&s.info, &events, &interrupted)
            .with_context(|| format!("recording recovery of session {}", s.info.id))?;
        if live {
            report.restarted += 1;
        } else {
            report.history += 1;
        }
        out.push((s, live));
    }
    // Processes of sessions the store no longer knows are not ours to judge: leave them.
    Ok((out, report))
}

/// Moves a stored snapshot to `stopped` through the transition table (by
/// way of `stopping` where it must), returning the events.
fn stop(info: &mut SessionInfo, reason: &str, cause: EndCause) -> Result<Vec<herd_actors::Event>> {
    let mut events = vec![];
    if info.state != SessionState::Stopping {
        events.push(info.transition(SessionState::Stopping, reason.into(), Some(cause.clone()))?);
    }
    events.push(info.transition(SessionState::Stopped, reason.into(), Some(cause))?);
    Ok(events)
}

/// Kills what is left of a session's previous generation: every process that
/// carries its id in the environment, and the recorded child if its start
/// time still matches (so a reused pid is never touched).
fn kill_stale(s: &StoredSession, mut pids: Vec<Pid>) -> usize {
    if let Some((pid, Some(start))) = s.child {
        if process::start_time(pid) == Some(start) && !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    let mut tree: Vec<Pid> = vec![];
    for p in &pids {
        for q in process::tree(*p) {
            if !tree.contains(&q) {
                tree.push(q);
            }
        }
    }
    for p in &tree {
        process::signal(*p, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while tree.iter().any(|p| process::is_alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !tree.is_empty() {
        tracing::warn!(session = %s.info.id, pids = ?tree, "killed processes left by the previous daemon");
    }
    tree.len()
}

/// Hands the settled sessions to the registry: live ones start again (a
/// Claude session's hooks rewritten for the daemon's address), the rest is
/// history. `events` are the stored transitions (oldest first), each
/// session gets its own; `last_output` reads the tail of a session's last
/// recording, shown by `logs` and `screen` of a session that ended.
pub async fn restore(
    registry: &Registry,
    settled: Vec<(StoredSession, bool)>,
    events: &[herd_actors::Event],
    claude: &ClaudeProfile,
    last_output: impl Fn(&str) -> Vec<u8>,
) -> Result<()> {
    let mut errors: HashMap<String, String> = HashMap::new();
    let mut by_session: HashMap<uuid::Uuid, Vec<herd_actors::Event>> = HashMap::new();
    for e in events {
        by_session.entry(e.session_id).or_default().push(e.clone());
    }
    // Prepared one by one, handed to the registry a few at a time: its
    // mailbox always holds the next session, instead of waiting for this
    // task to wake up between two (at 1,000 sessions the wake-ups add up
    // on a busy runtime, where every restored session is starting a child).
    let restores = settled.into_iter().map(|(s, live)| {
        let id = s.info.id;
        if live {
            // The daemon may listen on another port now: the hooks follow it.
            claude.refresh_hooks(&s.spec, id);
        }
        let output = if live {
            vec![]
        } else {
            last_output(&id.to_string())
        };
        let restore = Restore {
            info: s.info,
            messages: s.messages,
            live,
            events: by_session.remove(&id).unwrap_or_default(),
            output,
        };
        async move { (id, registry.restore(s.spec, restore).await) }
    });
    let mut done = futures_util::stream::iter(restores).buffered(RESTORES_IN_FLIGHT);
    while let Some((id, r)) = done.next().await {
        if let Err(e) = r {
            errors.insert(id.to_string(), e.to_string());
        }
    }
    if !errors.is_empty() {
        tracing::error!(?errors, "some sessions could not be restored");
    }
    Ok(())
}
