//! (Over 600 lines with its tests: one writer, its pause/resume and its cap belong together.)
//!
//! The recorder: writes every session generation as asciicast v2, off the
//! actors, in order.
//!
//! Sessions are spread over a few writer threads by id; each thread owns the
//! open files of its sessions, so one session's events stay in order. An
//! output chunk arrives with its share of the PTY reader's budget. While its
//! thread has less than [`SLACK`] bytes of output queued, the share goes back
//! to the reader at once; beyond that it is held until the chunk is written.
//! So a recorder that falls behind slows the child (nothing is lost, memory
//! stays bounded), but a writer thread that merely waits its turn for a CPU
//! does not. Files are flushed at every marker (state
//! changes, restarts) and at least once a second, and finished when the
//! generation ends or the recorder closes, so a daemon crash loses at most
//! the last moments.
//!
//! The writer threads run as background work (`SCHED_BATCH`, nice 19):
//! recording is work nobody waits for, and on a busy machine it must not
//! take a CPU from the sessions it records, yet it must not starve either
//! (see [`background`]).

mod line;

use herd_actors::{Marker, Tap, TapEvent};
use line::event_line;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// A file with pending data is flushed at least this often.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// zstd level: fast, still a good ratio on terminal output.
const ZSTD_LEVEL: i32 = 3;
/// Output bytes a writer thread may have queued whose readers already have
/// their budget back. A reader's budget is 256 KiB, a few milliseconds of a
/// fast child; a writer thread on a busy two-core machine can wait longer
/// than that for a CPU, and every reader it held stalled meanwhile (the
/// recording cost 10-15 % of a 200 MB drain). 4 MiB per thread absorbs
/// such waits; it is a bound per thread, not per session.
const SLACK: usize = 4 << 20;
/// How long a writer thread rests after writing output before it looks at
/// its queue again. A flooding session sends a chunk every 1 ms or so;
/// waking the writer for each one woke an idle CPU a thousand times a
/// second on the machine the sessions run on. At 60 MB/s a pause queues
/// ~300 KiB, far inside [`SLACK`]; a recording is flushed once a second
/// anyway.
const GATHER: Duration = Duration::from_millis(5);

enum Msg {
    Event {
        session: Uuid,
        generation: u64,
        at: Instant,
        event: TapEvent,
        /// Bytes of [`Slack`] this event holds until it is written.
        slack: usize,
    },
    /// Flush (`finish` = also close) every open file, then answer.
    Flush { finish: bool, done: SyncSender<()> },
    /// The session is gone for good: drop its open file, delete its folder,
    /// then answer with the bytes deleted.
    Forget {
        session: Uuid,
        done: tokio::sync::oneshot::Sender<std::io::Result<u64>>,
    },
}

/// Records every session through the [`Tap`] hook.
pub struct Recorder {
    shards: Vec<ShardHandle>,
}

/// The way to one writer thread, and its slack.
struct ShardHandle {
    tx: Sender<Msg>,
    slack: Arc<Slack>,
}

/// The output bytes a writer thread has queued with their credits given
/// back, up to a limit.
#[derive(Debug)]
struct Slack {
    queued: AtomicUsize,
    limit: usize,
}

impl Slack {
    fn new(limit: usize) -> Self {
        Self {
            queued: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `n` bytes of slack if they fit.
    fn take(&self, n: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                q.checked_add(n).filter(|t| *t <= self.limit)
            })
            .is_ok()
    }

    /// Gives back `n` bytes taken earlier (their chunk is written).
    fn give(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
    }
}

impl Recorder {
    /// Starts `shards` writer threads writing under `dir`.
    /// Each generation's file stops growing at `max_bytes` (0: no limit).
    pub fn start(
        dir: PathBuf,
        compress: bool,
        max_bytes: u64,
        shards: usize,
    ) -> std::io::Result<Self> {
        let settings = Settings {
            dir,
            compress,
            max_bytes,
        };
        let mut senders = vec![];
        for i in 0..shards.max(1) {
            let (tx, rx) = mpsc::channel();
            let settings = settings.clone();
            let slack = Arc::new(Slack::new(SLACK));
            let given = Arc::clone(&slack);
            // Detached: a thread ends when the recorder (its sender) is dropped.
            std::thread::Builder::new()
                .name(format!("herd-recorder-{i}"))
                .spawn(move || Shard::new(settings).run(rx, &given))?;
            senders.push(ShardHandle { tx, slack });
        }
        Ok(Self { shards: senders })
    }

    /// The writer thread of `session`: always the same one, so its events
    /// stay in order.
    fn shard_of(&self, session: Uuid) -> usize {
        (session.as_u128() % self.shards.len() as u128) as usize
    }

    /// Flushes every open recording to the OS (and closes them with `finish`).
    pub fn flush(&self, finish: bool) {
        let waits: Vec<_> = self
            .shards
            .iter()
            .filter_map(|s| {
                let (done, wait) = mpsc::sync_channel(1);
                s.tx.send(Msg::Flush { finish, done }).ok().map(|_| wait)
            })
            .collect();
        for w in waits {
            let _ = w.recv_timeout(Duration::from_secs(30));
        }
    }
}

/// How long deleting a session's recordings waits for its writer thread
/// before deleting them itself (the writer still deletes what it writes
/// later).
const FORGET_WAIT: Duration = Duration::from_secs(10);

/// A daemon's recordings on disk, and the recorder writing them when
/// recording is on: the one way to delete a session's recordings.
#[derive(Clone)]
pub struct Recordings {
    dir: PathBuf,
    recorder: Option<Arc<Recorder>>,
}

impl Recordings {
    /// The recordings under `dir`, written by `recorder`.
    pub fn new(dir: PathBuf, recorder: Option<Arc<Recorder>>) -> Self {
        Self { dir, recorder }
    }

    /// The folder of `session`'s recordings.
    pub fn folder(&self, session: Uuid) -> PathBuf {
        session_folder(&self.dir, session)
    }

    /// Deletes the recordings of a session that is gone for good (removed
    /// or collected); the bytes deleted.
    ///
    /// The writer thread deletes them, after every event already sent for
    /// the session: deleting the folder from here could race a writer that
    /// has yet to open the session's file, and the folder would come back.
    pub async fn delete(&self, session: Uuid) -> std::io::Result<u64> {
        let folder = self.folder(session);
        let Some(recorder) = &self.recorder else {
            return delete_folder(&folder);
        };
        let shard = &recorder.shards[recorder.shard_of(session)];
        let (done, answer) = tokio::sync::oneshot::channel();
        if shard.tx.send(Msg::Forget { session, done }).is_err() {
            return delete_folder(&folder);
        }
        match tokio::time::timeout(FORGET_WAIT, answer).await {
            Ok(Ok(deleted)) => deleted,
            _ => {
                tracing::warn!(%session, "the recorder is slow to delete recordings: deleting them here");
                delete_folder(&folder)
            }
        }
    }
}

/// Deletes `folder` and everything in it; the bytes its files held. A
/// folder that is not there is deleted already.
fn delete_folder(folder: &Path) -> std::io::Result<u64> {
    let bytes = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    match std::fs::remove_dir_all(folder) {
        Ok(()) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

impl Tap for Recorder {
    fn send(&self, session: Uuid, generation: u64, at: Instant, event: TapEvent) {
        let ShardHandle { tx, slack } = &self.shards[self.shard_of(session)];
        let mut taken = 0;
        let event = match event {
            TapEvent::Output { data, credit } if credit.is_some() && slack.take(data.len()) => {
                // The reader has its budget back now; the slack holds it.
                taken = data.len();
                drop(credit);
                TapEvent::Output { data, credit: None }
            }
            other => other,
        };
        let msg = Msg::Event {
            session,
            generation,
            at,
            event,
            slack: taken,
        };
        if tx.send(msg).is_err() {
            slack.give(taken);
            tracing::error!(%session, "recorder thread is gone: output not recorded");
        }
    }
}

/// Makes the calling writer thread background work: `SCHED_BATCH` at
/// nice 19. As batch work it never preempts a thread when it wakes; at
/// nice 19 any thread that wakes soon takes the CPU from it. Yet it keeps a
/// share of a busy CPU, so its files, markers and flushes go on when the
/// machine is saturated.
///
/// Measured on a 2-core machine draining 200 MB through one recorded
/// session, the escaping and writing took ~4 % of a core yet slowed the
/// drain by ~10 %: each time the writer ran, the child, the kernel's tty
/// worker or the session's reader waited for it. `SCHED_IDLE` won 3–5 % of
/// the drain back, but it starves: on a CI machine loaded by many tests a
/// short session's recording was still not on disk after the session had
/// stopped, and a starved writer would also hold a flooding session's
/// output credits. Batch at nice 19 drained as fast as `SCHED_IDLE` (paired
/// rounds, ratio 0.97–1.00) with five times its share of a contended CPU;
/// batch at nice 0 lost the gain, and `nice 10` alone gained nothing
/// (docs/PERFORMANCE.md). It cannot lose output: beyond [`SLACK`] a chunk
/// keeps its reader's credit until it is written. Linux lets any thread
/// lower its own priority; where that fails the writer simply stays a
/// normal thread.
fn background() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` outlives the call.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            tracing::debug!(
                "recorder thread stays a normal thread: {}",
                std::io::Error::last_os_error()
            );
        }
        // After the policy: the legacy call keeps the nice value, but a
        // policy change is no place to rely on that. On Linux the nice value
        // is per thread, and `who` 0 is the calling thread.
        // SAFETY: a plain priority change of the calling thread.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) } != 0 {
            tracing::debug!(
                "recorder thread keeps its nice value: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// The nice value of the writer threads: the lowest priority there is.
#[cfg(target_os = "linux")]
const BACKGROUND_NICE: libc::c_int = 19;

/// The folder of one session's recordings under the recordings `dir`.
fn session_folder(dir: &Path, session: Uuid) -> PathBuf {
    dir.join(session.to_string())
}

/// Path of one generation's recording.
pub fn recording_path(dir: &Path, session: Uuid, generation: u64, compress: bool) -> PathBuf {
    let ext = if compress { "cast.zst" } else { "cast" };
    session_folder(dir, session).join(format!("{generation}.{ext}"))
}

/// Where bytes go: plain or zstd-compressed. Writes go through
/// [`Open::push`], which keeps what a failed write did not take.
enum Sink {
    Plain(File),
    Zstd(zstd::stream::write::Encoder<'static, File>),
}

impl Sink {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Plain(w) => w,
            Sink::Zstd(w) => w,
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Plain(mut w) => w.flush(),
            Sink::Zstd(w) => w.finish()?.flush(),
        }
    }
}

/// Where a shard writes, and how.
#[derive(Clone)]
struct Settings {
    dir: PathBuf,
    compress: bool,
    /// `recording.max_bytes` per generation (0: no limit).
    max_bytes: u64,
}

struct Shard {
    settings: Settings,
    open: HashMap<Uuid, Open>,
    /// When `flush_stale` last walked the open files.
    swept: Instant,
}

/// `flush_stale` walks every open file of the shard (4,000 of them at
/// 4,000 sessions): at most this often, not after every chunk, so a file is
/// flushed within `FLUSH_EVERY` plus this.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

impl Shard {
    fn new(settings: Settings) -> Self {
        Self {
            settings,
            open: HashMap::new(),
            swept: Instant::now(),
        }
    }

    fn run(mut self, rx: Receiver<Msg>, slack: &Slack) {
        background();
        loop {
            let mut output = match rx.recv_timeout(FLUSH_EVERY) {
                Ok(msg) => self.handle(msg, slack),
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Everything queued meanwhile, in one go.
            while let Ok(msg) = rx.try_recv() {
                output |= self.handle(msg, slack);
            }
            if self.swept.elapsed() >= SWEEP_EVERY {
                self.flush_stale();
                self.swept = Instant::now();
            }
            if output {
                // Let a flood's chunks gather: one wake-up per pause instead
                // of one per chunk (see [`GATHER`]).
                std::thread::sleep(GATHER);
            }
        }
        let ids: Vec<Uuid> = self.open.keys().copied().collect();
        for id in ids {
            self.finish(id, None);
        }
    }

    /// Handles one message; whether it was output.
    fn handle(&mut self, msg: Msg, slack: &Slack) -> bool {
        match msg {
            Msg::Event {
                session,
                generation,
                at,
                event,
                slack: taken,
            } => {
                let output = matches!(event, TapEvent::Output { .. });
                self.event(session, generation, at, event);
                slack.give(taken);
                output
            }
            Msg::Flush { finish, done } => {
                let ids: Vec<Uuid> = self.open.keys().copied().collect();
                for id in ids {
                    if finish {
                        self.finish(id, None);
                    } else {
                        self.flush(id);
                    }
                }
                let _ = done.send(());
                false
            }
            Msg::Forget { session, done } => {
                // Every event sent for it came before: nothing of it follows.
                self.open.remove(&session);
                let folder = session_folder(&self.settings.dir, session);
                let _ = done.send(delete_folder(&folder));
                false
            }
        }
    }

    fn event(&mut self, session: Uuid, generation: u64, at: Instant, event: TapEvent) {
        if let TapEvent::Start {
            cols,
            rows,
            command,
            title,
            started,
        } = event
        {
            if self.open.contains_key(&session) {
                self.finish(session, None);
            }
            match self.create(
                session, generation, cols, rows, &command, &title, started, at,
            ) {
                Ok(open) => {
                    self.open.insert(session, open);
                }
                Err(e) => tracing::error!(%session, generation, "cannot start recording: {e}"),
            }
            return;
        }
        let Some(open) = self
            .open
            .get_mut(&session)
            .filter(|o| o.generation == generation)
        else {
            // Not recorded: the generation has no file (ended, or never started).
            return;
        };
        let t = at.saturating_duration_since(open.start).as_secs_f64();
        match event {
            TapEvent::Output { data, credit } => {
                open.output(t, &data);
                // Released once taken (or dropped while paused): a full disk
                // never holds the child back.
                drop(credit);
            }
            TapEvent::Input(data) => open.emit(t, "i", &String::from_utf8_lossy(&data)),
            TapEvent::Resize { cols, rows } => open.emit(t, "r", &format!("{cols}x{rows}")),
            TapEvent::Marker(label) => {
                open.emit(t, "m", &label.to_string());
                open.push(true);
            }
            TapEvent::End(label) => {
                self.finish(session, Some((t, Marker::exit(&label).to_string())));
                return;
            }
            TapEvent::Start { .. } => {}
        }
        // A paused recording tries again at most once a second.
        if open.paused.is_some() && open.last_try.elapsed() >= RETRY_EVERY {
            open.push(true);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        session: Uuid,
        generation: u64,
        cols: u16,
        rows: u16,
        command: &[String],
        title: &str,
        started: SystemTime,
        at: Instant,
    ) -> std::io::Result<Open> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let Settings {
            dir,
            compress,
            max_bytes,
        } = &self.settings;
        let path = recording_path(dir, session, generation, *compress);
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        let sink = if *compress {
            Sink::Zstd(zstd::stream::write::Encoder::new(file, ZSTD_LEVEL)?)
        } else {
            Sink::Plain(file)
        };
        let header = serde_json::json!({
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "command": shell_words(command),
            "title": title,
            "env": {"TERM": "xterm-256color"},
        });
        let mut pending = serde_json::to_vec(&header)?;
        pending.push(b'\n');
        let mut open = Open {
            generation,
            sink,
            start: at,
            partial: Vec::new(),
            pending,
            accepted: 0,
            max_bytes: *max_bytes,
            capped: false,
            paused: None,
            lost: 0,
            last_try: Instant::now(),
            dirty: true,
            last_flush: Instant::now(),
            path,
        };
        // The header reaches the file now: a file that exists is playable.
        open.push(true);
        Ok(open)
    }

    fn flush(&mut self, session: Uuid) {
        if let Some(o) = self.open.get_mut(&session) {
            o.push(true);
        }
    }

    fn flush_stale(&mut self) {
        for o in self.open.values_mut() {
            let due = if o.paused.is_some() {
                o.last_try.elapsed() >= RETRY_EVERY
            } else {
                o.dirty && o.last_flush.elapsed() >= FLUSH_EVERY
            };
            if due {
                o.push(true);
            }
        }
    }

    /// Writes the last marker, any held partial character, and closes the file.
    fn finish(&mut self, session: Uuid, last: Option<(f64, String)>) {
        let Some(mut o) = self.open.remove(&session) else {
            return;
        };
        let t = last.as_ref().map(|l| l.0).unwrap_or(0.0);
        if !o.partial.is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut o.partial)).into_owned();
            o.emit(t, "o", &rest);
        }
        // One more try: a recording paused by a full disk ends with its gap marked.
        if o.paused.is_some() {
            o.push(false);
        }
        if let Some((t, label)) = last {
            if o.paused.is_none() {
                // The exit marker is written even past max_bytes.
                o.pending.extend_from_slice(&event_line(t, "m", &label));
            }
        }
        o.push(true);
        let path = o.path.clone();
        if let Some(why) = &o.paused {
            tracing::error!(%session, path = %path.display(), lost = o.lost, "recording closed while the disk refused writes: {why}");
        }
        if let Err(e) = o.sink.finish() {
            tracing::error!(%session, path = %path.display(), "recording could not be finished: {e}");
        }
    }
}

/// Lines buffered before they are handed to the file.
const PENDING_MAX: usize = 256 * 1024;
/// A paused recording tries to write again this often.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// One open recording.
///
/// Events become whole lines in `pending`, and only whole lines ever reach
/// the file, in order: when a write fails (a full disk) the recording
/// pauses, keeps what it had accepted, counts what it drops, and on the next
/// successful write resumes with a [`Marker::Gap`]; the file stays valid
/// asciicast throughout.
struct Open {
    generation: u64,
    sink: Sink,
    start: Instant,
    /// Bytes of a UTF-8 character split across two chunks.
    partial: Vec<u8>,
    /// Whole lines not yet written to the sink.
    pending: Vec<u8>,
    /// Bytes accepted for this generation (the `max_bytes` budget).
    accepted: u64,
    /// `recording.max_bytes` (0: no limit).
    max_bytes: u64,
    /// The limit was reached: only the exit marker is written now.
    capped: bool,
    /// Why writing fails, while it does.
    paused: Option<String>,
    /// Bytes dropped while paused.
    lost: u64,
    last_try: Instant,
    dirty: bool,
    last_flush: Instant,
    path: PathBuf,
}

impl Open {
    /// Accepts one event line, unless paused or over the limit.
    fn emit(&mut self, t: f64, code: &str, data: &str) {
        self.emit_with(t, code, |out| {
            line::escape(out, data.as_bytes());
            data.len()
        });
    }

    /// Accepts one event line whose data `body` escapes straight into the
    /// pending buffer, returning the size of what it took (counted as lost
    /// while paused); a line with no data is not written.
    fn emit_with(&mut self, t: f64, code: &str, body: impl FnOnce(&mut Vec<u8>) -> usize) {
        let mark = self.pending.len();
        line::begin(&mut self.pending, t, code);
        let head = self.pending.len();
        let size = body(&mut self.pending);
        let empty = self.pending.len() == head;
        line::end(&mut self.pending);
        let len = (self.pending.len() - mark) as u64;
        if empty || self.paused.is_some() || self.capped {
            self.pending.truncate(mark);
            if self.paused.is_some() {
                self.lost += size as u64;
            }
            return;
        }
        if self.max_bytes > 0 && self.accepted + len > self.max_bytes {
            self.pending.truncate(mark);
            self.capped = true;
            let marker = Marker::Truncated {
                limit: self.max_bytes,
            };
            self.pending
                .extend_from_slice(&event_line(t, "m", &marker.to_string()));
            self.dirty = true;
            return;
        }
        self.accepted += len;
        self.dirty = true;
        if self.pending.len() >= PENDING_MAX {
            self.push(false);
        }
    }

    /// Writes what is pending (and flushes the file with `flush`); a failure
    /// pauses the recording, a success after one resumes it with a gap marker.
    fn push(&mut self, flush: bool) {
        self.last_try = Instant::now();
        let mut r = Ok(());
        while !self.pending.is_empty() {
            match self.sink.writer().write(&self.pending) {
                Ok(0) => {
                    r = Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        if r.is_ok() && flush {
            r = self.sink.writer().flush();
            self.dirty = false;
            self.last_flush = Instant::now();
        }
        match (r, self.paused.take()) {
            (Ok(()), None) => {}
            (Ok(()), Some(why)) => {
                tracing::info!(path = %self.path.display(), lost = self.lost, "recording resumed");
                let t = self.start.elapsed().as_secs_f64();
                let gap = Marker::Gap {
                    bytes: std::mem::take(&mut self.lost),
                    reason: why,
                };
                self.pending
                    .extend_from_slice(&event_line(t, "m", &gap.to_string()));
                self.dirty = true;
            }
            (Err(e), was) => {
                if was.is_none() {
                    tracing::error!(path = %self.path.display(), "recording paused, it resumes when the disk takes writes again: {e}");
                }
                self.paused = Some(was.unwrap_or_else(|| e.to_string()));
            }
        }
    }

    /// Writes output as text: whole UTF-8 characters only, a character split
    /// across chunks is held back for the next one, invalid bytes become U+FFFD.
    fn output(&mut self, t: f64, data: &[u8]) {
        let joined;
        let bytes: &[u8] = if self.partial.is_empty() {
            data
        } else {
            let mut j = std::mem::take(&mut self.partial);
            j.extend_from_slice(data);
            joined = j;
            &joined
        };
        let mut partial = Vec::new();
        self.emit_with(t, "o", |out| line::escape_lossy(out, bytes, &mut partial));
        self.partial = partial;
    }
}

/// The argv as one shell-like line (for the header's `command`).
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Policy and nice value of every thread of this process named `name`.
    #[cfg(target_os = "linux")]
    fn priorities_of(name: &str) -> Vec<(i32, i32)> {
        let mut out = vec![];
        for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == name {
                let tid: i32 = t.file_name().to_string_lossy().parse().unwrap();
                // SAFETY: plain queries by thread id.
                let policy = unsafe { libc::sched_getscheduler(tid) };
                let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
                out.push((policy, nice));
            }
        }
        out
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn writer_threads_run_as_background_work() {
        let dir = tempfile::tempdir().unwrap();
        // Shard names are per process: take an index no other test uses.
        let rec = Recorder::start(dir.path().to_path_buf(), false, 0, 7).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let p = priorities_of("herd-recorder-6");
            if p.contains(&(libc::SCHED_BATCH, BACKGROUND_NICE)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "writer thread (policy, nice): {p:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(rec);
    }

    #[test]
    fn slack_is_taken_up_to_its_limit_and_given_back_as_chunks_are_written() {
        let s = Slack::new(100);
        assert!(s.take(60));
        assert!(s.take(40), "exactly the limit fits");
        assert!(!s.take(1), "beyond the limit the chunk keeps its credit");
        s.give(60);
        assert!(!s.take(61));
        assert!(s.take(60));
        assert!(
            !Slack::new(100).take(101),
            "a chunk over the limit never fits"
        );
        // Concurrent takers never overdraw it.
        let s = Arc::new(Slack::new(1000));
        let taken: usize = (0..4)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || (0..1000).filter(|_| s.take(7)).count() * 7)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(taken, 994, "142 chunks of 7 fit in 1000");
        assert_eq!(s.queued.load(Ordering::Acquire), 994);
    }

    fn read_events(path: &Path) -> (serde_json::Value, Vec<serde_json::Value>) {
        let text = if path.extension().is_some_and(|e| e == "zst") {
            String::from_utf8(zstd::decode_all(File::open(path).unwrap()).unwrap()).unwrap()
        } else {
            std::fs::read_to_string(path).unwrap()
        };
        let mut lines = text.lines();
        let header = serde_json::from_str(lines.next().unwrap()).unwrap();
        (
            header,
            lines.map(|l| serde_json::from_str(l).unwrap()).collect(),
        )
    }

    fn start() -> TapEvent {
        TapEvent::Start {
            cols: 80,
            rows: 24,
            command: vec!["sh".into(), "-c".into(), "echo hi there".into()],
            title: "t".into(),
            started: SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn deleted_recordings_stay_deleted_behind_a_slow_writer() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Arc::new(Recorder::start(dir.path().to_path_buf(), false, 0, 1).unwrap());
        let recordings = Recordings::new(dir.path().to_path_buf(), Some(Arc::clone(&rec)));
        let (early, late) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = Instant::now();
        // `early` is on disk; `late`'s events are still queued (a flush
        // holds the writer meanwhile) when its deletion is asked for.
        rec.send(early, 0, t0, start());
        rec.flush(false);
        assert!(dir.path().join(early.to_string()).exists());
        let (hold, held) = mpsc::sync_channel(0);
        let (go, wait) = mpsc::channel::<()>();
        rec.shards[0]
            .tx
            .send(Msg::Flush {
                finish: false,
                done: hold,
            })
            .unwrap();
        let blocker = std::thread::spawn(move || {
            // The writer blocks in `send` until this end takes it.
            let _ = wait.recv();
            held.recv().unwrap();
        });
        rec.send(late, 0, t0, start());
        let output = TapEvent::Output {
            data: "late output".into(),
            credit: None,
        };
        rec.send(late, 0, t0, output);
        let mut deleting = Box::pin(recordings.delete(late));
        // Its first step queues the request behind the held writer.
        assert!(futures_util::poll!(&mut deleting).is_pending());
        go.send(()).unwrap();
        let late_bytes = deleting.await;
        let early_bytes = recordings.delete(early).await;
        blocker.join().unwrap();
        assert!(
            late_bytes.unwrap() > 0,
            "the late file was written, then deleted"
        );
        assert!(early_bytes.unwrap() > 0);
        // Anything still queued for them is done: nothing came back.
        rec.flush(true);
        for id in [early, late] {
            assert!(!dir.path().join(id.to_string()).exists(), "{id} came back");
        }
        // Deleting what is gone is no error, with or without a recorder.
        assert_eq!(recordings.delete(late).await.unwrap(), 0);
        let plain = Recordings::new(dir.path().to_path_buf(), None);
        assert_eq!(plain.delete(Uuid::new_v4()).await.unwrap(), 0);
    }

    #[test]
    fn writes_a_cast_with_split_utf8_and_markers() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let rec = Recorder::start(dir.path().to_path_buf(), compress, 0, 2).unwrap();
            let id = Uuid::new_v4();
            let t0 = Instant::now();
            rec.send(id, 0, t0, start());
            let euro = "€".as_bytes();
            rec.send(
                id,
                0,
                t0,
                TapEvent::Output {
                    data: [b"a", &euro[..1]].concat().into(),
                    credit: None,
                },
            );
            rec.send(
                id,
                0,
                t0 + Duration::from_millis(5),
                TapEvent::Output {
                    data: [&euro[1..], b"b\xffc"].concat().into(),
                    credit: None,
                },
            );
            rec.send(id, 0, t0, TapEvent::Input("ls\r".into()));
            rec.send(
                id,
                0,
                t0,
                TapEvent::Resize {
                    cols: 100,
                    rows: 30,
                },
            );
            rec.send(
                id,
                7,
                t0,
                TapEvent::Output {
                    data: "other generation".into(),
                    credit: None,
                },
            );
            rec.send(
                id,
                0,
                t0,
                TapEvent::End(herd_actors::EndCause::Exited { code: 0 }),
            );
            rec.flush(true);
            let path = recording_path(dir.path(), id, 0, compress);
            let (header, events) = read_events(&path);
            assert_eq!(header["version"], 2);
            assert_eq!(header["command"], "sh -c 'echo hi there'");
            let out: String = events
                .iter()
                .filter(|e| e[1] == "o")
                .map(|e| e[2].as_str().unwrap())
                .collect();
            assert_eq!(out, "a€b\u{FFFD}c");
            assert!(events.iter().any(|e| e[1] == "i" && e[2] == "ls\r"));
            assert!(events.iter().any(|e| e[1] == "r" && e[2] == "100x30"));
            assert_eq!(events.last().unwrap()[2], "exit: exited with code 0");
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    fn output(data: &str) -> TapEvent {
        TapEvent::Output {
            data: data.to_string().into(),
            credit: None,
        }
    }

    #[test]
    fn max_bytes_truncates_with_a_marker_and_keeps_the_exit() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::start(dir.path().to_path_buf(), false, 2000, 1).unwrap();
        let id = Uuid::new_v4();
        let t0 = Instant::now();
        rec.send(id, 0, t0, start());
        for _ in 0..100 {
            rec.send(id, 0, t0, output(&"x".repeat(100)));
        }
        rec.send(
            id,
            0,
            t0,
            TapEvent::End(herd_actors::EndCause::Exited { code: 0 }),
        );
        rec.flush(true);
        let path = recording_path(dir.path(), id, 0, false);
        let (_, events) = read_events(&path);
        let n = events.len();
        assert_eq!(events[n - 1][2], "exit: exited with code 0");
        assert_eq!(
            Marker::parse(events[n - 2][2].as_str().unwrap()),
            Some(Marker::Truncated { limit: 2000 })
        );
        let recorded: usize = events
            .iter()
            .filter(|e| e[1] == "o")
            .map(|e| e[2].as_str().unwrap().len())
            .sum();
        assert!(recorded > 1000 && recorded < 2000, "{recorded}");
    }

    #[test]
    fn a_full_disk_pauses_the_recording_and_it_resumes_with_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            dir: dir.path().to_path_buf(),
            compress: false,
            max_bytes: 0,
        };
        let mut shard = Shard::new(settings);
        let id = Uuid::new_v4();
        let t0 = Instant::now();
        shard.event(id, 0, t0, start());
        shard.event(id, 0, t0, output("before "));
        shard.flush(id);
        // The disk fills: every write fails with ENOSPC.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let path = recording_path(dir.path(), id, 0, false);
        let real = std::mem::replace(
            &mut shard.open.get_mut(&id).unwrap().sink,
            Sink::Plain(full),
        );
        shard.event(id, 0, t0, output("accepted "));
        shard.flush(id);
        let o = shard.open.get_mut(&id).unwrap();
        assert!(o.paused.is_some(), "a failed write pauses the recording");
        shard.event(id, 0, t0, output("lost-while-full"));
        assert_eq!(shard.open[&id].lost, "lost-while-full".len() as u64);
        // Space returns.
        shard.open.get_mut(&id).unwrap().sink = real;
        shard.flush(id);
        assert!(shard.open[&id].paused.is_none(), "resumed");
        shard.event(id, 0, t0, output("after"));
        shard.event(
            id,
            0,
            t0,
            TapEvent::End(herd_actors::EndCause::Exited { code: 0 }),
        );
        let (_, events) = read_events(&path);
        let out: String = events
            .iter()
            .filter(|e| e[1] == "o")
            .map(|e| e[2].as_str().unwrap())
            .collect();
        assert_eq!(
            out, "before accepted after",
            "accepted output is kept, in order"
        );
        let gap = events
            .iter()
            .find_map(|e| {
                Marker::parse(e[2].as_str().unwrap()).filter(|m| matches!(m, Marker::Gap { .. }))
            })
            .expect("a gap marker");
        match gap {
            Marker::Gap { bytes, reason } => {
                assert_eq!(bytes, "lost-while-full".len() as u64);
                assert!(reason.contains("No space left"), "{reason}");
            }
            _ => unreachable!(),
        }
        assert_eq!(events.last().unwrap()[2], "exit: exited with code 0");
    }
}
