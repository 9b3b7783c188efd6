//! The recorder: writes every session generation as asciicast v2, off the
//! actors, in order.
//!
//! Sessions are spread over a few writer threads by id; each thread owns the
//! open files of its sessions, so one session's events stay in order. An
//! output chunk arrives with its share of the PTY reader's budget and returns
//! it once written: a recorder that falls behind slows the child (nothing is
//! lost, memory stays bounded). Files are flushed at every marker (state
//! changes, restarts) and at least once a second, and finished when the
//! generation ends or the recorder closes, so a daemon crash loses at most
//! the last moments.

use herd_actors::{Marker, Tap, TapEvent};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// A file with pending data is flushed at least this often.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// zstd level: fast, still a good ratio on terminal output.
const ZSTD_LEVEL: i32 = 3;

enum Msg {
    Event {
        session: Uuid,
        generation: u64,
        at: Instant,
        event: TapEvent,
    },
    /// Flush (`finish` = also close) every open file, then answer.
    Flush { finish: bool, done: SyncSender<()> },
}

/// Records every session through the [`Tap`] hook.
pub struct Recorder {
    shards: Vec<Sender<Msg>>,
}

impl Recorder {
    /// Starts `shards` writer threads writing under `dir`.
    pub fn start(dir: PathBuf, compress: bool, shards: usize) -> std::io::Result<Self> {
        let mut senders = vec![];
        for i in 0..shards.max(1) {
            let (tx, rx) = mpsc::channel();
            let dir = dir.clone();
            // Detached: a thread ends when the recorder (its sender) is dropped.
            std::thread::Builder::new()
                .name(format!("herd-recorder-{i}"))
                .spawn(move || Shard::new(dir, compress).run(rx))?;
            senders.push(tx);
        }
        Ok(Self { shards: senders })
    }

    /// Flushes every open recording to the OS (and closes them with `finish`).
    pub fn flush(&self, finish: bool) {
        let waits: Vec<_> = self
            .shards
            .iter()
            .filter_map(|s| {
                let (done, wait) = mpsc::sync_channel(1);
                s.send(Msg::Flush { finish, done }).ok().map(|_| wait)
            })
            .collect();
        for w in waits {
            let _ = w.recv_timeout(Duration::from_secs(30));
        }
    }
}

impl Tap for Recorder {
    fn send(&self, session: Uuid, generation: u64, at: Instant, event: TapEvent) {
        let shard = (session.as_u128() % self.shards.len() as u128) as usize;
        let msg = Msg::Event {
            session,
            generation,
            at,
            event,
        };
        if self.shards[shard].send(msg).is_err() {
            tracing::error!(%session, "recorder thread is gone: output not recorded");
        }
    }
}

/// Path of one generation's recording.
pub fn recording_path(dir: &Path, session: Uuid, generation: u64, compress: bool) -> PathBuf {
    let ext = if compress { "cast.zst" } else { "cast" };
    dir.join(session.to_string())
        .join(format!("{generation}.{ext}"))
}

/// Where bytes go: plain or zstd-compressed.
enum Sink {
    Plain(BufWriter<File>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
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

/// One open recording.
struct Open {
    generation: u64,
    sink: Sink,
    start: Instant,
    /// Bytes of a UTF-8 character split across two chunks.
    partial: Vec<u8>,
    dirty: bool,
    last_flush: Instant,
    path: PathBuf,
}

struct Shard {
    dir: PathBuf,
    compress: bool,
    open: HashMap<Uuid, Open>,
}

impl Shard {
    fn new(dir: PathBuf, compress: bool) -> Self {
        Self {
            dir,
            compress,
            open: HashMap::new(),
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            match rx.recv_timeout(FLUSH_EVERY) {
                Ok(Msg::Event {
                    session,
                    generation,
                    at,
                    event,
                }) => self.event(session, generation, at, event),
                Ok(Msg::Flush { finish, done }) => {
                    let ids: Vec<Uuid> = self.open.keys().copied().collect();
                    for id in ids {
                        if finish {
                            self.finish(id, None);
                        } else {
                            self.flush(id);
                        }
                    }
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.flush_stale();
        }
        let ids: Vec<Uuid> = self.open.keys().copied().collect();
        for id in ids {
            self.finish(id, None);
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
        let result = match event {
            TapEvent::Output { data, credit } => {
                let r = open.output(t, &data);
                drop(credit);
                r
            }
            TapEvent::Input(data) => {
                write_event(open.sink.writer(), t, "i", &String::from_utf8_lossy(&data))
            }
            TapEvent::Resize { cols, rows } => {
                write_event(open.sink.writer(), t, "r", &format!("{cols}x{rows}"))
            }
            TapEvent::Marker(label) => {
                let r = write_event(open.sink.writer(), t, "m", &label.to_string());
                open.dirty = true;
                self.flush(session);
                r
            }
            TapEvent::End(label) => {
                self.finish(session, Some((t, Marker::exit(&label).to_string())));
                return;
            }
            TapEvent::Start { .. } => Ok(()),
        };
        match result {
            Ok(()) => {
                if let Some(o) = self.open.get_mut(&session) {
                    o.dirty = true;
                }
            }
            Err(e) => {
                tracing::error!(%session, generation, "recording write failed, recording stopped: {e}");
                self.open.remove(&session);
            }
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
        let path = recording_path(&self.dir, session, generation, self.compress);
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
        let buf = BufWriter::with_capacity(256 * 1024, file);
        let mut sink = if self.compress {
            Sink::Zstd(zstd::stream::write::Encoder::new(buf, ZSTD_LEVEL)?)
        } else {
            Sink::Plain(buf)
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
        serde_json::to_writer(sink.writer(), &header)?;
        sink.writer().write_all(b"\n")?;
        Ok(Open {
            generation,
            sink,
            start: at,
            partial: Vec::new(),
            dirty: true,
            last_flush: Instant::now(),
            path,
        })
    }

    fn flush(&mut self, session: Uuid) {
        if let Some(o) = self.open.get_mut(&session) {
            if let Err(e) = o.sink.writer().flush() {
                tracing::error!(%session, path = %o.path.display(), "recording flush failed: {e}");
            }
            o.dirty = false;
            o.last_flush = Instant::now();
        }
    }

    fn flush_stale(&mut self) {
        let stale: Vec<Uuid> = self
            .open
            .iter()
            .filter(|(_, o)| o.dirty && o.last_flush.elapsed() >= FLUSH_EVERY)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.flush(id);
        }
    }

    /// Writes the last marker, any held partial character, and closes the file.
    fn finish(&mut self, session: Uuid, last: Option<(f64, String)>) {
        let Some(mut o) = self.open.remove(&session) else {
            return;
        };
        let mut r = Ok(());
        if !o.partial.is_empty() {
            let t = last.as_ref().map(|l| l.0).unwrap_or(0.0);
            let rest = String::from_utf8_lossy(&std::mem::take(&mut o.partial)).into_owned();
            r = write_event(o.sink.writer(), t, "o", &rest);
        }
        if let Some((t, label)) = last {
            r = r.and_then(|_| write_event(o.sink.writer(), t, "m", &label));
        }
        let path = o.path.clone();
        if let Err(e) = r.and_then(|_| o.sink.finish()) {
            tracing::error!(%session, path = %path.display(), "recording could not be finished: {e}");
        }
    }
}

impl Open {
    /// Writes output as text: whole UTF-8 characters only, a character split
    /// across chunks is held back for the next one, invalid bytes become U+FFFD.
    fn output(&mut self, t: f64, data: &[u8]) -> std::io::Result<()> {
        let joined;
        let mut bytes: &[u8] = if self.partial.is_empty() {
            data
        } else {
            let mut j = std::mem::take(&mut self.partial);
            j.extend_from_slice(data);
            joined = j;
            &joined
        };
        let mut text = String::new();
        loop {
            match std::str::from_utf8(bytes) {
                Ok(s) => {
                    text.push_str(s);
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: `valid` bytes were just checked.
                    text.push_str(std::str::from_utf8(&bytes[..valid]).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            text.push('\u{FFFD}');
                            bytes = &bytes[valid + n..];
                        }
                        None => {
                            self.partial = bytes[valid..].to_vec();
                            break;
                        }
                    }
                }
            }
        }
        if text.is_empty() {
            return Ok(());
        }
        write_event(self.sink.writer(), t, "o", &text)
    }
}

fn write_event(w: &mut dyn Write, t: f64, code: &str, data: &str) -> std::io::Result<()> {
    write!(w, "[{t:.6}, \"{code}\", ")?;
    serde_json::to_writer(&mut *w, data)?;
    w.write_all(b"]\n")
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

    #[test]
    fn writes_a_cast_with_split_utf8_and_markers() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let rec = Recorder::start(dir.path().to_path_buf(), compress, 2).unwrap();
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
}
