//! PtyActor: one child process in a pseudo-terminal.
//!
//! portable-pty is blocking, so each child gets three small threads, each
//! ending on its own when its peer goes away:
//! - the reader sends `Output` to the SessionActor, under a byte budget
//!   ([`Credits`]) so a flooding child meets backpressure;
//! - the waiter detects the exit (not the reader's EOF, which a grandchild
//!   holding the terminal can delay), lets the reader drain, reaps the child
//!   and sends `ChildExited` — after the last `Output`, so no tail is lost;
//! - the writer performs writes, so a child that does not read never stalls
//!   the actor.
//!
//! The child is killed from a drop guard in the actor's state, because ractor
//! skips `post_stop` for killed or panicking actors.

use crate::credits::{CreditToken, Credits};
use crate::handle::lock;
use crate::policy::ExitStatus;
use crate::process::{self, Pid};
use bytes::Bytes;
use portable_pty::{native_pty_system, MasterPty, PtySize};
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes of output in flight between the reader and the session.
const OUTPUT_BUDGET: usize = 256 * 1024;
/// Size of one read from the terminal.
const READ_CHUNK: usize = 64 * 1024;
/// Pending writes before input is refused as backed up.
const WRITE_QUEUE: usize = 256;
/// The waiter stops waiting for the reader once it has been stuck in
/// `read` this long with no bytes (e.g. an escaped process holds the terminal).
const DRAIN_BOUND: Duration = Duration::from_millis(500);
/// ...and in any case after this long.
const DRAIN_MAX: Duration = Duration::from_secs(60);
/// Stack of each helper thread: they hold little on the stack.
const THREAD_STACK: usize = 128 * 1024;

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

/// State of a running PtyActor.
pub(crate) struct PtyState {
    master: Box<dyn MasterPty + Send>,
    writes: SyncSender<Bytes>,
    pid: Pid,
    // Kills the child when the state is dropped, however the actor ends.
    _guard: ChildGuard,
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
                let r = match state.writes.try_send(data) {
                    Ok(()) => Ok(()),
                    Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Err(()),
                };
                let _ = reply.send(r);
            }
            PtyMsg::Resize(cols, rows) => {
                let size = PtySize {
                    rows,
                    cols,
                    pixel_width: 0,
                    pixel_height: 0,
                };
                if let Err(e) = state.master.resize(size) {
                    tracing::warn!(pid = state.pid, "resize failed: {e}");
                }
            }
            PtyMsg::Signal(sig, SignalTarget::Tree) => process::signal_tree(state.pid, sig),
            PtyMsg::Signal(sig, SignalTarget::Foreground) => {
                let pgid = state.master.process_group_leader().unwrap_or(state.pid);
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
    // Reported before the reader thread exists: the session (and its
    // recorder) must hear of the generation before any of its output.
    if let Err(e) = args.session.send_message(PtyEvent::Spawned {
        generation: args.generation,
        pid,
    }) {
        tracing::debug!("session gone before child start was reported: {e}");
    }
    let reader = reader_of(pair.master.as_ref())?;
    let progress = Arc::new(Progress::default());
    let writer = pair
        .master
        .take_writer()
        .map_err(|e| io_err("pty writer", e))?;
    let (writes, write_rx) = sync_channel(WRITE_QUEUE);
    let (drained_tx, drained_rx) = sync_channel::<()>(1);
    let session = args.session.clone();
    let generation = args.generation;
    let read_progress = Arc::clone(&progress);
    thread("herd-pty-read", move || {
        read_loop(
            reader,
            session,
            generation,
            credits,
            drained_tx,
            read_progress,
        )
    })?;
    thread("herd-pty-write", move || write_loop(writer, write_rx))?;
    let session = args.session.clone();
    let marks = args.marks.clone();
    thread("herd-pty-wait", move || {
        wait_loop(
            pid, reaped, drained_rx, session, generation, progress, marks,
        )
    })?;
    Ok(PtyState {
        master: pair.master,
        writes,
        pid,
        _guard: guard,
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

fn thread(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), std::io::Error> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(THREAD_STACK)
        .spawn(f)
        .map(|_| ())
}

/// What the waiter needs to know of the reader to tell draining from stuck.
#[derive(Debug, Default)]
struct Progress {
    /// Bytes read so far.
    bytes: AtomicU64,
    /// The reader waits for the session to take earlier chunks.
    waiting: AtomicBool,
}

/// Our own descriptor of the master, so the reader can poll it.
fn reader_of(master: &(dyn MasterPty + Send)) -> Result<std::fs::File, std::io::Error> {
    use std::os::fd::FromRawFd;
    let fd = master
        .as_raw_fd()
        .ok_or_else(|| std::io::Error::other("pty master has no descriptor"))?;
    // SAFETY: duplicating a descriptor we own; the copy is close-on-exec.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io_err("pty reader", std::io::Error::last_os_error()));
    }
    // SAFETY: `dup` is a fresh descriptor that nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(dup) })
}

/// True if more output is ready to read at once.
fn more_ready(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    unsafe { libc::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLIN != 0 }
}

fn read_loop(
    mut reader: std::fs::File,
    session: DerivedActorRef<PtyEvent>,
    generation: u64,
    credits: Arc<Credits>,
    drained: SyncSender<()>,
    progress: Arc<Progress>,
) {
    use std::os::fd::AsRawFd;
    let fd = reader.as_raw_fd();
    let mut buf = vec![0u8; READ_CHUNK];
    'outer: loop {
        let mut n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO: every process holding the terminal has gone.
            Err(_) => break,
        };
        // The tty hands out a few KiB per read: take what is already there,
        // so a fast child costs one message per 64 KiB, not per 4 KiB.
        while n < buf.len() && more_ready(fd) {
            match reader.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(m) => n += m,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
        progress.waiting.store(true, Ordering::Relaxed);
        let credit = credits.acquire(n);
        progress.waiting.store(false, Ordering::Relaxed);
        let Some(credit) = credit else {
            break 'outer;
        };
        let msg = PtyEvent::Output {
            generation,
            data: Bytes::copy_from_slice(&buf[..n]),
            credit: CreditToken::new(credit),
        };
        if session.send_message(msg).is_err() {
            break;
        }
    }
    let _ = drained.try_send(());
}

fn write_loop(mut writer: Box<dyn Write + Send>, rx: Receiver<Bytes>) {
    while let Ok(data) = rx.recv() {
        if let Err(e) = writer.write_all(&data).and_then(|_| writer.flush()) {
            tracing::debug!("pty write failed: {e}");
            break;
        }
    }
}

fn wait_loop(
    pid: Pid,
    reaped: Arc<Mutex<bool>>,
    drained: Receiver<()>,
    session: DerivedActorRef<PtyEvent>,
    generation: u64,
    progress: Arc<Progress>,
    marks: Vec<(String, String)>,
) {
    // Wait for the exit without reaping: the zombie keeps the pid (and group
    // id) reserved, so cleaning up the group cannot hit a reused pid.
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a siginfo_t owned by this frame.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    // The generation is over: nothing of it may linger (background jobs,
    // daemonized helpers). Their exit also lets the reader reach EOF.
    process::signal_tree(pid, libc::SIGKILL);
    // ...nor anything that left the tree (double fork, setsid): it still
    // carries the generation's marker. Done before the exit is reported, so
    // the next generation (same session, next number) cannot be hit.
    if !marks.is_empty() {
        let marks: Vec<(&str, &str)> = marks
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let n = process::kill_marked(&marks);
        if n > 0 {
            tracing::info!(
                pid,
                generation,
                killed = n,
                "killed processes that had left the session's tree"
            );
        }
    }
    // Let the reader drain what the tree wrote. It makes progress while bytes
    // come or while it waits for the session to take them; it is stuck only
    // when it sits in `read` with nothing for DRAIN_BOUND.
    let started = std::time::Instant::now();
    let mut seen = progress.bytes.load(Ordering::Relaxed);
    let mut still_since = std::time::Instant::now();
    loop {
        match drained.recv_timeout(Duration::from_millis(20)) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        let now = progress.bytes.load(Ordering::Relaxed);
        if now != seen || progress.waiting.load(Ordering::Relaxed) {
            seen = now;
            still_since = std::time::Instant::now();
        } else if still_since.elapsed() >= DRAIN_BOUND || started.elapsed() >= DRAIN_MAX {
            break;
        }
    }
    let mut status = 0;
    let exit = {
        let mut reaped = lock(&reaped);
        // SAFETY: plain syscall on our own child.
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
