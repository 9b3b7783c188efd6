//! PtyActor: one child process in a pseudo-terminal.
//!
//! Nothing here blocks a thread: the master is non-blocking in the runtime's
//! reactor ([`io`]) and the exit is a readable `pidfd` ([`exit`]), so the
//! daemon's thread count does not grow with its sessions. Three tasks per
//! child, each ending on its own when its peer goes away:
//! - the reader sends `Output` to the SessionActor, under a byte budget
//!   ([`Credits`]) so a flooding child meets backpressure;
//! - the waiter detects the exit (not the reader's EOF, which a grandchild
//!   holding the terminal can delay), lets the reader drain, reaps the child
//!   and sends `ChildExited` — after the last `Output`, so no tail is lost;
//! - the writer performs writes, so a child that does not read never stalls
//!   the actor or the reader.
//!
//! The child is killed from a drop guard in the actor's state, because ractor
//! skips `post_stop` for killed or panicking actors; the waiter outlives the
//! actor so that the child is always reaped.

mod exit;
mod io;

use crate::credits::{CreditToken, Credits};
use crate::handle::lock;
use crate::policy::ExitStatus;
use crate::process::{self, Pid};
use bytes::Bytes;
use io::Progress;
use portable_pty::{native_pty_system, PtySize};
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// Bytes of output in flight between the reader and the session.
const OUTPUT_BUDGET: usize = 256 * 1024;
/// Pending writes before input is refused as backed up.
const WRITE_QUEUE: usize = 256;
/// The waiter stops waiting for the reader once it has been stuck in
/// `read` this long with no bytes (e.g. an escaped process holds the terminal).
const DRAIN_BOUND: Duration = Duration::from_millis(500);
/// ...and in any case after this long.
const DRAIN_MAX: Duration = Duration::from_secs(60);

/// What to start. (No `Debug`: it carries secrets.)
#[derive(Clone)]
pub(crate) struct PtyArgs {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// The session's own environment.
    pub env: Vec<(String, String)>,
    /// Variables of the daemon's environment passed on (names, or prefixes
    /// ending in `*`); nothing else of it reaches the child.
    pub inherit: Vec<String>,
    /// Secret environment: set in the child, never printed.
    pub secret_env: Vec<(String, crate::spec::Secret)>,
    /// Terminal size.
    pub cols: u16,
    /// Terminal size.
    pub rows: u16,
    /// Generation tag for every message sent to the session.
    pub generation: u64,
    /// The marker of this generation in the environment of all its
    /// processes: what remains of it is found and killed by it at the end.
    pub marks: Vec<(String, String)>,
    /// Where output and exit go: the owner sees only [`PtyEvent`]s.
    pub session: DerivedActorRef<PtyEvent>,
}

/// What a PtyActor reports to its owner, in order: `Spawned`, every
/// `Output`, then `Exited` once the output is drained.
#[derive(Debug)]
pub(crate) enum PtyEvent {
    /// The child started.
    Spawned {
        /// Generation of the child.
        generation: u64,
        /// Its pid (and process group id).
        pid: Pid,
    },
    /// The child wrote output.
    Output {
        /// Generation of the child.
        generation: u64,
        /// The bytes.
        data: Bytes,
        /// The chunk's share of the reader's budget, released once handled.
        credit: CreditToken,
    },
    /// The child exited and was reaped; no more output of it will follow.
    Exited {
        /// Generation of the child.
        generation: u64,
        /// How it ended.
        status: ExitStatus,
    },
}

/// Which processes a signal goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignalTarget {
    /// The child's process group and every descendant.
    Tree,
    /// The terminal's foreground process group (what Ctrl-C would reach).
    Foreground,
}

/// Messages of the PtyActor.
#[derive(Debug)]
pub(crate) enum PtyMsg {
    /// Write bytes to the child's terminal; fails if the writer is backed up.
    Write(Bytes, ractor::RpcReplyPort<Result<(), ()>>),
    /// Resize the terminal.
    Resize(u16, u16),
    /// Send a signal.
    Signal(i32, SignalTarget),
    /// SIGTERM now, SIGKILL after `grace`.
    Terminate(Duration),
    /// SIGKILL the whole tree now.
    Kill,
}

/// Kills the child's tree when dropped, unless the waiter already reaped it.
struct ChildGuard {
    pid: Pid,
    reaped: Arc<Mutex<bool>>,
    credits: Arc<Credits>,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Holding the lock keeps the waiter from reaping meanwhile, so the
        // pid cannot have been reused by an unrelated process.
        let reaped = lock(&self.reaped);
        if !*reaped {
            process::signal_tree(self.pid, libc::SIGCONT);
            process::signal_tree(self.pid, libc::SIGKILL);
        }
        drop(reaped);
        self.credits.close();
    }
}

/// Ends the reader and the writer with the actor (the waiter goes on, to reap).
struct TaskGuard(Vec<AbortHandle>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// State of a running PtyActor.
pub(crate) struct PtyState {
    master: io::Master,
    writes: mpsc::Sender<Bytes>,
    pid: Pid,
    // Kills the child when the state is dropped, however the actor ends.
    _guard: ChildGuard,
    // Dropped after `_guard`, so the tree is already signalled.
    _tasks: TaskGuard,
    kill_scheduled: bool,
}

/// The actor owning one child process.
pub(crate) struct PtyActor;

impl Actor for PtyActor {
    type Msg = PtyMsg;
    type State = PtyState;
    type Arguments = PtyArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: PtyArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        spawn_child(args).map_err(|e| e.into())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: PtyMsg,
        state: &mut PtyState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PtyMsg::Write(data, reply) => {
                let r = state.writes.try_send(data).map_err(|_| ());
                let _ = reply.send(r);
            }
            PtyMsg::Resize(cols, rows) => {
                let size = PtySize {
                    rows,
                    cols,
                    pixel_width: 0,
                    pixel_height: 0,
                };
                if let Err(e) = state.master.get_ref().pty().resize(size) {
                    tracing::warn!(pid = state.pid, "resize failed: {e}");
                }
            }
            PtyMsg::Signal(sig, SignalTarget::Tree) => process::signal_tree(state.pid, sig),
            PtyMsg::Signal(sig, SignalTarget::Foreground) => {
                let leader = state.master.get_ref().pty().process_group_leader();
                let pgid = leader.unwrap_or(state.pid);
                process::signal_group(pgid, sig);
            }
            PtyMsg::Terminate(grace) => {
                if grace.is_zero() {
                    process::signal_tree(state.pid, libc::SIGKILL);
                } else {
                    process::signal_tree(state.pid, libc::SIGTERM);
                    // Interactive shells ignore SIGTERM but end on SIGHUP, as when a terminal closes.
                    process::signal_tree(state.pid, libc::SIGHUP);
                    // A stopped process only acts on SIGTERM once continued.
                    process::signal_tree(state.pid, libc::SIGCONT);
                    if !std::mem::replace(&mut state.kill_scheduled, true) {
                        myself.send_after(grace, || PtyMsg::Kill);
                    }
                }
            }
            PtyMsg::Kill => process::signal_tree(state.pid, libc::SIGKILL),
        }
        Ok(())
    }
}

fn spawn_child(args: PtyArgs) -> Result<PtyState, std::io::Error> {
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: args.rows,
            cols: args.cols,
            pixel_width: 0,
            pixel_height: 0,
        })
        .map_err(|e| io_err("openpty", e))?;
    let argv0 = args.argv.first().cloned().unwrap_or_default();
    let env = child_env(&args);
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.to_string_lossy().into_owned());
    let program = crate::spec::find_program(&argv0, args.cwd.as_deref(), path.as_deref())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("spawn {argv0:?}: program not found or not executable"),
            )
        })?;
    let tty = pair
        .master
        .tty_name()
        .ok_or_else(|| std::io::Error::other("the pty has no slave device name"))?;
    let pid = {
        // Registered as a leader before any reaper can look: its waiter reaps it.
        let mut leaders = process::leaders();
        let pid = crate::spawn::spawn_on_tty(&program, &args.argv, &env, args.cwd.as_deref(), &tty)
            .map_err(|e| io_err(&format!("spawn {argv0:?}"), e))?;
        leaders.get_or_insert_with(Default::default).insert(pid);
        pid
    };
    // Our copy of the slave must be closed, or the reader never sees EOF.
    drop(pair.slave);
    let credits = Credits::new(OUTPUT_BUDGET);
    let reaped = Arc::new(Mutex::new(false));
    let guard = ChildGuard {
        pid,
        reaped: Arc::clone(&reaped),
        credits: Arc::clone(&credits),
    };
    // Reported before the reader task exists: the session (and its
    // recorder) must hear of the generation before any of its output.
    if let Err(e) = args.session.send_message(PtyEvent::Spawned {
        generation: args.generation,
        pid,
    }) {
        tracing::debug!("session gone before child start was reported: {e}");
    }
    // The waiter first: whatever fails below, the child is killed (guard)
    // and still reaped.
    let progress = Arc::new(Progress::default());
    let (drained_tx, drained_rx) = oneshot::channel();
    // Made here, not in the task: a task the runtime drops before it first
    // runs still drops its arguments, and with them this guard.
    let last_resort = ReapOnDrop { pid, reaped };
    tokio::spawn(wait_loop(
        exit::ExitWatch::new(pid),
        last_resort,
        drained_rx,
        args.session.clone(),
        args.generation,
        Arc::clone(&progress),
        args.marks.clone(),
    ));
    let master = io::register(pair.master).map_err(|e| io_err("pty master", e))?;
    let (writes, write_rx) = mpsc::channel(WRITE_QUEUE);
    let reader = tokio::spawn(io::read_loop(
        Arc::clone(&master),
        args.session.clone(),
        args.generation,
        credits,
        drained_tx,
        progress,
    ));
    let writer = tokio::spawn(io::write_loop(Arc::clone(&master), write_rx));
    Ok(PtyState {
        master,
        writes,
        pid,
        _guard: guard,
        _tasks: TaskGuard(vec![reader.abort_handle(), writer.abort_handle()]),
        kill_scheduled: false,
    })
}

/// portable-pty returns `anyhow::Error`; the session only needs its text.
fn io_err(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{what}: {e}"))
}

/// The child's environment: what it inherits of the daemon's (an
/// allowlist), then `TERM`, the session's variables and its secrets.
fn child_env(args: &PtyArgs) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut env: std::collections::BTreeMap<std::ffi::OsString, std::ffi::OsString> =
        std::env::vars_os()
            .filter(|(k, _)| {
                k.to_str()
                    .is_some_and(|k| crate::config::env_matches(k, &args.inherit))
            })
            .collect();
    env.insert("TERM".into(), "xterm-256color".into());
    for (k, v) in &args.env {
        env.insert(k.into(), v.into());
    }
    for (k, v) in &args.secret_env {
        env.insert(k.into(), v.expose().into());
    }
    env.into_iter().collect()
}

/// How long a waiter dropped with its runtime waits for its killed child
/// to exit (a process in uninterruptible sleep cannot die at once).
const LAST_REAP: Duration = Duration::from_secs(5);

/// Kills and reaps the child when its waiter is dropped before it reaped
/// (the runtime shut down), so that no child of a stopped runtime is left
/// running or a zombie.
struct ReapOnDrop {
    pid: Pid,
    reaped: Arc<Mutex<bool>>,
}

impl Drop for ReapOnDrop {
    fn drop(&mut self) {
        let mut reaped = lock(&self.reaped);
        if *reaped {
            return;
        }
        process::signal_tree(self.pid, libc::SIGCONT);
        process::signal_tree(self.pid, libc::SIGKILL);
        let deadline = std::time::Instant::now() + LAST_REAP;
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child, with a pointer to a local.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r != 0 || std::time::Instant::now() >= deadline {
                *reaped = r != 0;
                break;
            }
            // A SIGKILLed process is gone within moments; no runtime is
            // left to wait on its pidfd.
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(l) = process::leaders().as_mut() {
            l.remove(&self.pid);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn wait_loop(
    exit: exit::ExitWatch,
    // If the runtime shuts down before this task is done, the child is
    // still killed and reaped (on the thread dropping this task).
    last_resort: ReapOnDrop,
    mut drained: oneshot::Receiver<()>,
    session: DerivedActorRef<PtyEvent>,
    generation: u64,
    progress: Arc<Progress>,
    marks: Vec<(String, String)>,
) {
    let pid = last_resort.pid;
    // Wait for the exit without reaping: the zombie keeps the pid (and group
    // id) reserved, so cleaning up the group cannot hit a reused pid.
    exit.exited().await;
    // The generation is over: nothing of it may linger (background jobs,
    // daemonized helpers). Their exit also lets the reader reach EOF.
    // ...nor anything that left the tree (double fork, setsid): it still
    // carries the generation's marker. Done before the exit is reported, so
    // the next generation (same session, next number) cannot be hit. Both
    // walk /proc, on one thread for all sessions, one walk for all the
    // generations that ended meanwhile (a shutdown ends thousands at once).
    let swept = crate::sweep::sweep(pid, marks).await;
    match swept {
        n if n > 0 => tracing::info!(
            pid,
            generation,
            killed = n,
            "killed processes that had left the session's tree"
        ),
        _ => {}
    }
    // Let the reader drain what the tree wrote. It makes progress while bytes
    // come or while it waits for the session to take them; it is stuck only
    // when it waits for the terminal with nothing for DRAIN_BOUND.
    let started = tokio::time::Instant::now();
    let mut seen = progress.bytes.load(Ordering::Relaxed);
    let mut still_since = tokio::time::Instant::now();
    loop {
        // Sent or dropped: the reader has ended either way.
        if tokio::time::timeout(Duration::from_millis(20), &mut drained)
            .await
            .is_ok()
        {
            break;
        }
        let now = progress.bytes.load(Ordering::Relaxed);
        if now != seen || progress.waiting.load(Ordering::Relaxed) {
            seen = now;
            still_since = tokio::time::Instant::now();
        } else if still_since.elapsed() >= DRAIN_BOUND || started.elapsed() >= DRAIN_MAX {
            break;
        }
    }
    let mut status = 0;
    let exit = {
        let mut reaped = lock(&last_resort.reaped);
        // SAFETY: plain syscall on our own child, which has exited: it
        // returns at once.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        *reaped = true;
        if let Some(l) = process::leaders().as_mut() {
            l.remove(&pid);
        }
        if r == pid {
            ExitStatus::from_wait_status(status)
        } else {
            ExitStatus {
                code: None,
                signal: None,
            }
        }
    };
    let _ = session.send_message(PtyEvent::Exited {
        generation,
        status: exit,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ractor::Actor;
    use std::os::unix::process::CommandExt;

    /// Takes the waiter's reports and drops them.
    struct Sink;

    impl Actor for Sink {
        type Msg = PtyEvent;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _myself: ActorRef<PtyEvent>,
            _args: (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    #[test]
    fn a_waiter_dropped_before_it_ever_ran_still_kills_and_reaps_its_child() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pid = rt.block_on(async {
            let (sink, _) = Actor::spawn(None, Sink, ()).await.unwrap();
            // Its own process group, as a session's child is. Reaped by the
            // waiter's guard: that is what the test is about.
            #[allow(clippy::zombie_processes)]
            let child = std::process::Command::new("sleep")
                .arg("600")
                .process_group(0)
                .spawn()
                .unwrap();
            let pid = child.id() as Pid;
            let (_drained_tx, drained_rx) = oneshot::channel();
            let waiter = wait_loop(
                exit::ExitWatch::new(pid),
                ReapOnDrop {
                    pid,
                    reaped: Arc::new(Mutex::new(false)),
                },
                drained_rx,
                sink.get_derived(),
                0,
                Arc::default(),
                vec![],
            );
            // What a runtime shutting down does to a task it never ran.
            drop(waiter);
            sink.stop(None);
            pid
        });
        drop(rt);
        // Gone from /proc: killed, and reaped (a zombie would still show).
        let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !gone {
            process::signal_group(pid, libc::SIGKILL);
            // SAFETY: reaping our own child by pid.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
        assert!(gone, "the child {pid} was left running or a zombie");
    }
}
