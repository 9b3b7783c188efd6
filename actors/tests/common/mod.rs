//! Helpers shared by the integration tests: fast defaults, polling with a
//! deadline (never a fixed sleep), an event log fed by the bus, and a
//! registry guard that leaves no process behind even when a test fails.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use herd_actors::process::{self, Pid};
use herd_actors::{
    Event, ListFilter, Registry, RestartPolicy, SessionDefaults, SessionInfo, SessionSpec,
    SessionState,
};
use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

/// Generous deadline for anything to happen: the machine has 2 cores and may be loaded.
pub const WAIT: Duration = Duration::from_secs(20);

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);

/// Defaults that keep the tests fast: short quiet period, short backoff,
/// short stop grace, room for many sessions.
pub fn fast_defaults() -> SessionDefaults {
    let mut d = SessionDefaults::default();
    d.limits.max_sessions = 50;
    d.limits.quiet_after = Duration::from_millis(100);
    d.limits.stop_grace = Duration::from_secs(2);
    d.restart.policy = RestartPolicy::OnFailure;
    d.restart.max_restarts = 10;
    d.restart.restart_window = Duration::from_secs(60);
    d.restart.backoff_initial = Duration::from_millis(20);
    d.restart.backoff_max = Duration::from_millis(200);
    d.restart.backoff_reset_after = Duration::from_secs(60);
    d.metrics.sample_interval = Duration::from_millis(200);
    d
}

/// `sh -c script`.
pub fn sh(script: &str) -> SessionSpec {
    SessionSpec::new(["sh", "-c", script])
}

/// `sh -c script` with a restart policy.
pub fn sh_with(script: &str, policy: RestartPolicy) -> SessionSpec {
    let mut spec = sh(script);
    spec.restart.policy = Some(policy);
    spec
}

/// A child that writes a line every 0.2 s forever.
pub const TICKER: &str = "while true; do echo tick; sleep 0.2; done";

/// A registry that, if the test panics, SIGKILLs the process tree of every
/// session it knows (by the pid in the session info), so a failed test
/// leaves nothing running. [`Herd::finish`] is the orderly end.
pub struct Herd {
    pub reg: Registry,
}

impl Herd {
    pub async fn start(defaults: SessionDefaults) -> Self {
        let reg = Registry::start(defaults).await.expect("registry starts");
        Self { reg }
    }

    /// Shuts the registry down and checks that every session ended and no
    /// child of it is left.
    pub async fn finish(self) {
        let before = self.reg.list(&all());
        let pids: Vec<Pid> = before.iter().filter_map(|i| i.pid).collect();
        self.reg.shutdown(Duration::from_secs(10)).await;
        for info in self.reg.list(&all()) {
            assert!(
                info.state.is_final(),
                "session {} is {} after shutdown",
                info.id,
                info.state
            );
            assert_eq!(info.pid, None, "session {} still has a pid", info.id);
        }
        wait_until(WAIT, "every child to be gone after shutdown", || {
            pids.iter().all(|p| !process::is_alive(*p))
        })
        .await;
    }
}

impl std::ops::Deref for Herd {
    type Target = Registry;
    fn deref(&self) -> &Registry {
        &self.reg
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for info in self.reg.list(&all()) {
                if let Some(pid) = info.pid {
                    process::signal_tree(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// The filter that lists every session, final ones included.
pub fn all() -> ListFilter {
    ListFilter {
        all: true,
        ..Default::default()
    }
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_until(timeout: Duration, what: impl Display, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Current info of a session (panics if it is unknown).
pub fn snapshot(reg: &Registry, id: Uuid) -> SessionInfo {
    reg.get(id).expect("session exists").info()
}

/// Waits until the session satisfies `pred`.
pub async fn wait_info(
    reg: &Registry,
    id: Uuid,
    what: &str,
    pred: impl Fn(&SessionInfo) -> bool,
) -> SessionInfo {
    match reg.wait_for(id, WAIT, pred).await {
        Ok(i) => i,
        Err(e) => panic!("waiting for {what}: {e}; session: {:?}", snapshot(reg, id)),
    }
}

/// True for states in which a child runs and is not suspended.
pub fn is_up(s: SessionState) -> bool {
    matches!(
        s,
        SessionState::Starting
            | SessionState::Ready
            | SessionState::Busy
            | SessionState::WaitingInput
    )
}

/// Waits until the session runs a child of `generation` and returns its info (pid set).
pub async fn wait_running(reg: &Registry, id: Uuid, generation: u64) -> SessionInfo {
    wait_info(reg, id, &format!("generation {generation} to run"), |i| {
        is_up(i.state) && i.pid.is_some() && i.generation == generation
    })
    .await
}

/// Waits until the session is stopped or failed.
pub async fn wait_final(reg: &Registry, id: Uuid) -> SessionInfo {
    wait_info(reg, id, "a final state", |i| i.state.is_final()).await
}

/// The whole buffered output of a session, as text.
pub fn output_text(reg: &Registry, id: Uuid) -> String {
    let out = reg.get(id).expect("session exists").output(0, usize::MAX);
    String::from_utf8_lossy(&out.data).into_owned()
}

/// Waits until the session's output contains `needle`, returns the output.
pub async fn wait_output(reg: &Registry, id: Uuid, needle: &str) -> String {
    wait_until(WAIT, format!("output {needle:?} from {id}"), || {
        output_text(reg, id).contains(needle)
    })
    .await;
    output_text(reg, id)
}

/// A process seen at one moment: pid plus start time, so that a reused pid
/// is never mistaken for the same process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: Pid,
    pub start: u64,
}

impl Proc {
    pub fn of(pid: Pid) -> Option<Self> {
        process::start_time(pid).map(|start| Self { pid, start })
    }

    /// Still the same process, and not a zombie.
    pub fn alive(&self) -> bool {
        process::is_alive(self.pid) && process::start_time(self.pid) == Some(self.start)
    }
}

/// The command name of a process (`/proc/<pid>/comm`).
pub fn comm(pid: Pid) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The state letter of a process (`R`, `S`, `T`, `Z`, ...), if it exists.
pub fn proc_state(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The session id of a process (field 6 of `/proc/<pid>/stat`).
pub fn proc_sid(pid: Pid) -> Option<Pid> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// Processes in the tree of `root` (root included) whose command is `name`.
pub fn named_in_tree(root: Pid, name: &str) -> Vec<Pid> {
    process::tree(root)
        .into_iter()
        .filter(|p| comm(*p) == name)
        .collect()
}

/// Every event of the bus since [`EventLog::start`], collected by a task.
#[derive(Clone)]
pub struct EventLog {
    events: Arc<Mutex<Vec<Event>>>,
    lagged: Arc<Mutex<bool>>,
}

impl EventLog {
    pub fn start(reg: &Registry) -> Self {
        let mut rx = reg.events().subscribe();
        let log = Self {
            events: Arc::default(),
            lagged: Arc::default(),
        };
        let (events, lagged) = (Arc::clone(&log.events), Arc::clone(&log.lagged));
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => events.lock().unwrap().push(e),
                    Err(RecvError::Lagged(_)) => *lagged.lock().unwrap() = true,
                    Err(RecvError::Closed) => break,
                }
            }
        });
        log
    }

    /// Events of one session so far, in order.
    pub fn of(&self, id: Uuid) -> Vec<Event> {
        assert!(!*self.lagged.lock().unwrap(), "the event log lagged");
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|e| e.session_id == id)
            .cloned()
            .collect()
    }

    /// Waits until the events of `id` satisfy `cond`; returns them.
    pub async fn wait(&self, id: Uuid, what: &str, cond: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        wait_until(WAIT, what, || cond(&self.of(id))).await;
        self.of(id)
    }
}

/// Transitions of a list of events as `from>to` strings, for readable asserts.
pub fn transitions(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{}>{}", e.from, e.to))
        .collect()
}

/// A unique path in the temp dir, removed when dropped (even if the test fails).
pub struct TempPath(pub std::path::PathBuf);

impl TempPath {
    pub fn new(prefix: &str) -> Self {
        Self(std::env::temp_dir().join(format!("{prefix}-{}", Uuid::new_v4())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
