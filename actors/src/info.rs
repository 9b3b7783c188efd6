//! The public snapshot of a session, as the API and the CLI show it.

use crate::cause::EndCause;
use crate::config::{LimitsConfig, RestartConfig};
use crate::events::Event;
use crate::state::{SessionState, TransitionError};
use crate::usage::Usage;
use crate::waiting::{Failure, Waiting};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;
use uuid::Uuid;

/// Counters and samples of one session.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// CPU of the child's whole process tree, in percent of one core.
    pub cpu_percent: f32,
    /// Resident memory of the child's whole process tree.
    pub rss_bytes: u64,
    /// Processes in the child's tree at the last sample.
    pub processes: u32,
    /// Bytes written to the child.
    pub bytes_in: u64,
    /// Bytes the child wrote.
    pub bytes_out: u64,
    /// Input requests delivered.
    pub inputs: u64,
    /// Restarts of the child (policy, manual, or actor recovery).
    pub restarts: u64,
    /// Failures: spawn errors, abnormal exits, actor failures.
    pub errors: u64,
}

impl SessionInfo {
    /// Moves this snapshot to `to` if the table allows it, and returns the
    /// event that says so. The one place where a state changes: the live
    /// path ([`crate::SessionHandle`]) and recovery from a store both use it.
    pub fn transition(
        &mut self,
        to: SessionState,
        reason: String,
        cause: Option<EndCause>,
    ) -> Result<Event, TransitionError> {
        let from = self.state;
        from.check(to)?;
        let at = SystemTime::now();
        self.state = to;
        self.reason = reason.clone();
        if cause.is_some() {
            self.cause = cause.clone();
        }
        self.updated_at = at;
        if to.is_final() || to == SessionState::Restarting {
            self.pid = None;
        }
        Ok(Event {
            session_id: self.id,
            task_id: self.task_id.clone(),
            project_id: self.project_id.clone(),
            from,
            to,
            reason,
            cause,
            at,
            generation: self.generation,
        })
    }
}

/// Byte counters updated on the hot path without notifying watchers; the
/// snapshot's [`Metrics`] reads them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) inputs: AtomicU64,
    /// The metrics sampler backed off (the session was idle) and waits to
    /// be woken by the next input or output.
    pub(crate) dozing: AtomicBool,
}

impl Counters {
    /// Counts `n` bytes of output; true if the sampler dozed and must be
    /// woken (once: the flag is cleared).
    pub(crate) fn count_output(&self, n: u64) -> bool {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
        self.woken()
    }

    /// Counts one input of `n` bytes; true as for [`Self::count_output`].
    pub(crate) fn count_input(&self, n: u64) -> bool {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
        self.inputs.fetch_add(1, Ordering::Relaxed);
        self.woken()
    }

    // A load first: the hot path does not write the flag's cache line.
    fn woken(&self) -> bool {
        self.dozing.load(Ordering::Relaxed) && self.dozing.swap(false, Ordering::Relaxed)
    }
}

/// Everything about a session at one moment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Stable id, across restarts.
    pub id: Uuid,
    /// Human name.
    pub name: Option<String>,
    /// Current state.
    pub state: SessionState,
    /// Why it entered that state.
    pub reason: String,
    /// Why the last child (or the session) ended, once one has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<EndCause>,
    /// Pid of the current child, while one runs.
    pub pid: Option<i32>,
    /// Which child this is: 0 for the first, +1 per restart.
    pub generation: u64,
    /// Restarts so far.
    pub restarts: u64,
    /// Exit code of the last child that exited by itself.
    pub exit_code: Option<i32>,
    /// Signal that ended the last child, if one did.
    pub exit_signal: Option<i32>,
    /// How state is read: `generic` or `claude`.
    #[serde(default)]
    pub profile: crate::spec::Profile,
    /// The question on screen while `waiting_input` (e.g. a permission dialog).
    #[serde(default)]
    pub dialog: Option<String>,
    /// What the session waits for while `waiting_input`: reason, tool,
    /// a summary of the tool's input, the choices offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// A failure the session is in (not logged in, rate limited, ...), until
    /// a turn succeeds again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// Tokens used by the session's answered messages, where known (Claude).
    #[serde(default, skip_serializing_if = "Usage::is_empty")]
    pub usage: Usage,
    /// What the answered messages cost, in US dollars (from `[prices]`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cost_usd: f64,
    /// The job runner's task.
    pub task_id: Option<String>,
    /// Project grouping.
    pub project_id: Option<String>,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Working directory.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub cwd: Option<PathBuf>,
    /// The git worktree the session runs in, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<crate::worktree::WorktreeInfo>,
    /// The cluster node the session runs on; set by a clustered daemon,
    /// absent from a daemon in no cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Terminal columns.
    pub cols: u16,
    /// Terminal rows.
    pub rows: u16,
    /// When the session was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(with = "humantime_serde")]
    pub created_at: SystemTime,
    /// When the current (or last) child started.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[serde(with = "humantime_serde::option")]
    pub started_at: Option<SystemTime>,
    /// When the state last changed.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(with = "humantime_serde")]
    pub updated_at: SystemTime,
    /// Effective restart settings.
    pub restart: RestartConfig,
    /// Effective limits.
    pub limits: LimitsConfig,
    /// Counters and samples.
    pub metrics: Metrics,
    /// The last non-blank line of the screen, at most
    /// [`crate::LAST_LINE_MAX`] characters: only in lists asked for it
    /// (`GET /v1/sessions?last_line=true`), taken from the screen then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_line: Option<String>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}
