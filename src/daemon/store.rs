//! The embedded store: SQLite (WAL) in the data dir.
//!
//! It holds sessions (spec, last snapshot, the pid of the running child), the
//! event log, the task→session map and the message queue. One writer thread
//! applies the actors' [`Record`]s in order, a batch per transaction; nothing
//! an actor does waits for the disk.
//!
//! Opening checks the file before anything writes to it: a read-only
//! connection reads its version and runs `PRAGMA quick_check` (every page,
//! every index), and only a store found sound is opened for writing. A store
//! that is locked, unreadable, damaged, not a database, or from a newer herd
//! is refused with an error that says what to do, and left byte-for-byte as
//! it was. [`backup`] copies a live store with SQLite's online backup.

mod schema;
mod writer;

pub use writer::StoreHealth;

use herd_actors::{EndCause, Event, Message, MessageState, Record, SessionInfo, SessionSpec};
use rusqlite::{params, Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedReceiver;

/// File name of the store in the data dir.
pub const STORE_FILE: &str = "herd.db";
/// How long opening waits for another process's lock.
const OPEN_BUSY: Duration = Duration::from_secs(2);

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds a lock on the file.
    #[error(
        "store {path} is locked by another process; is another herd daemon using this data dir?"
    )]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// The file cannot be opened or read.
    #[error("store {path} cannot be read: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `PRAGMA quick_check` found damage: nothing was written to the file.
    #[error("store {path} is damaged ({detail}); herd did not change it. Keep a copy of it (with its -wal and -shm files), then either restore a backup made with `herd backup FILE` in its place, or move the three files aside to start with an empty store (`sqlite3 {path} .recover` may salvage rows)")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What quick_check said first.
        detail: String,
    },
    /// The file was written by a newer herd.
    #[error("store {path} has schema version {found}, newer than this herd supports ({supported}); use a newer herd or another data dir")]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A query failed.
    #[error("store {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A stored value could not be decoded.
    #[error("store {path}: bad {what} for session {id}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which column.
        what: &'static str,
        /// Which row.
        id: String,
        /// The decoding error.
        reason: String,
    },
}

/// A session as stored.
#[derive(Debug, Clone)]
pub struct StoredSession {
    /// Its spec.
    pub spec: SessionSpec,
    /// Its last snapshot.
    pub info: SessionInfo,
    /// Pid of the child that was running, and its start time.
    pub child: Option<(i32, Option<u64>)>,
    /// Its messages, oldest first.
    pub messages: Vec<Message>,
}

/// An open store.
pub struct Store {
    path: PathBuf,
    conn: Connection,
}

impl Store {
    /// Opens (creating if absent) and migrates the store.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let exists = path.exists();
        if !exists {
            // Created private: SQLite gives the -wal and -shm files the
            // database file's mode, so they are private too.
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| StoreError::Unreadable {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
        }
        if exists {
            // Fail on an unreadable file before SQLite opens it.
            std::fs::File::open(&path).map_err(|e| StoreError::Unreadable {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            check_read_only(&path)?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| classify(&path, e))?;
        conn.busy_timeout(OPEN_BUSY)
            .map_err(|e| classify(&path, e))?;
        // Read-only probes first: nothing below writes until the file is known good.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| classify(&path, e))?;
        if exists {
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| classify(&path, e))?;
        }
        if version > schema::VERSION {
            return Err(StoreError::NewerSchema {
                path,
                found: version,
                supported: schema::VERSION,
            });
        }
        // Another process holding a lock must be found before we change anything.
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(|e| classify(&path, e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| classify(&path, e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| classify(&path, e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| classify(&path, e))?;
        let mut store = Self { path, conn };
        schema::migrate(&mut store.conn, version).map_err(|e| store.err(e))?;
        // A store from before this rule, or copied in: make it private.
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = store.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
        }
        Ok(store)
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        classify(&self.path, source)
    }

    /// Deletes sessions that ended more than `retention` ago, with their events and messages.
    pub fn prune(&mut self, retention: Duration) -> Result<usize, StoreError> {
        let cutoff = unix_ms().saturating_sub(retention.as_millis() as u64) as i64;
        let tx = self
            .conn
            .transaction()
            .map_err(|e| classify(&self.path, e))?;
        let ids: Vec<String> = {
            let mut q = tx
                .prepare("SELECT id FROM sessions WHERE ended_at IS NOT NULL AND ended_at < ?1")
                .map_err(|e| classify(&self.path, e))?;
            let rows = q
                .query_map([cutoff], |r| r.get(0))
                .map_err(|e| classify(&self.path, e))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| classify(&self.path, e))?
        };
        for id in &ids {
            delete_session(&tx, id).map_err(|e| classify(&self.path, e))?;
        }
        tx.commit().map_err(|e| classify(&self.path, e))?;
        Ok(ids.len())
    }

    /// Every stored session with its messages, oldest first.
    pub fn load(&self) -> Result<Vec<StoredSession>, StoreError> {
        let mut q = self
            .conn
            .prepare("SELECT id, spec, info, pid, pid_start FROM sessions ORDER BY created_at, id")
            .map_err(|e| self.err(e))?;
        type Row = (String, String, String, Option<i32>, Option<i64>);
        let rows: Vec<Row> = q
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, spec, info, pid, pid_start) in rows {
            let spec: SessionSpec =
                serde_json::from_str(&spec).map_err(|e| self.corrupt("spec", &id, e))?;
            let info: SessionInfo =
                serde_json::from_str(&info).map_err(|e| self.corrupt("info", &id, e))?;
            let messages = self.messages(&id)?;
            out.push(StoredSession {
                spec,
                info,
                child: pid.map(|p| (p, pid_start.map(|s| s as u64))),
                messages,
            });
        }
        Ok(out)
    }

    /// The newest `limit` stored transitions, oldest first, each with its
    /// session's task and project (for filters), so event history outlives
    /// the daemon.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut q = self
            .conn
            .prepare(
                "SELECT e.session_id, e.from_state, e.to_state, e.reason, e.at, e.generation, e.cause,
                        s.task_id, s.project_id
                   FROM events e LEFT JOIN sessions s ON s.id = e.session_id
                  ORDER BY e.seq DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        type Row = (
            String,
            String,
            String,
            String,
            String,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = q
            .query_map([limit as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, from, to, reason, at, generation, cause, task_id, project_id) in
            rows.into_iter().rev()
        {
            let bad = |what: &'static str, e: String| self.corrupt(what, &id, e);
            let state = |s: &str| {
                serde_json::from_value(serde_json::Value::String(s.to_string()))
                    .map_err(|e| bad("event state", e.to_string()))
            };
            out.push(Event {
                session_id: id
                    .parse()
                    .map_err(|e: uuid::Error| bad("event session", e.to_string()))?,
                task_id,
                project_id,
                from: state(&from)?,
                to: state(&to)?,
                reason,
                cause: cause
                    .map(|c| serde_json::from_str(&c))
                    .transpose()
                    .map_err(|e| bad("event cause", e.to_string()))?,
                at: humantime::parse_rfc3339(&at).map_err(|e| bad("event time", e.to_string()))?,
                generation: generation.max(0) as u64,
            });
        }
        Ok(out)
    }

    fn messages(&self, session: &str) -> Result<Vec<Message>, StoreError> {
        let mut q = self
            .conn
            .prepare_cached("SELECT body FROM messages WHERE session_id = ?1 ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        let bodies: Vec<String> = q
            .query_map([session], |r| r.get(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| self.corrupt("message", session, e)))
            .collect()
    }

    fn corrupt(&self, what: &'static str, id: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
            id: id.to_string(),
            reason: e.to_string(),
        }
    }

    /// Writes a session's snapshot as recovery decided it (e.g. stopped while
    /// the daemon was down), with the events that took it there, and its
    /// messages, in one transaction.
    pub fn settle(
        &mut self,
        info: &SessionInfo,
        events: &[Event],
        messages: &[Message],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| classify(&self.path, e))?;
        for event in events {
            apply(
                &tx,
                &Record::Transition {
                    event: event.clone(),
                    info: Box::new(info.clone()),
                },
            )
            .map_err(|e| classify(&self.path, e))?;
        }
        for m in messages {
            apply(&tx, &Record::Message(Box::new(m.clone())))
                .map_err(|e| classify(&self.path, e))?;
        }
        tx.commit().map_err(|e| classify(&self.path, e))
    }

    /// Starts the writer thread: it applies records in order until every
    /// journal sender is gone, and reports whether the store takes writes
    /// through `health`.
    pub fn spawn_writer(
        self,
        rx: UnboundedReceiver<Record>,
        health: StoreHealth,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("herd-store".into())
            .spawn(move || writer::Writer::new(self.conn, self.path, health).run(rx))
    }
}

/// Reads the store through a read-only connection: it must be a database
/// whose pages and indexes `quick_check` finds sound, of a schema this herd
/// knows. Nothing is written (SQLite may create the -shm index beside it).
fn check_read_only(path: &Path) -> Result<(), StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, e))?;
    conn.busy_timeout(OPEN_BUSY)
        .map_err(|e| classify(path, e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| damaged(path, e))?;
    if version > schema::VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: schema::VERSION,
        });
    }
    let verdict: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut q| {
            q.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(|e| damaged(path, e))?;
    match verdict.first().map(String::as_str) {
        Some("ok") => Ok(()),
        _ => Err(StoreError::Damaged {
            path: path.to_path_buf(),
            detail: verdict.join("; "),
        }),
    }
}

/// A failure while reading the store for the check: a lock or an unreadable
/// file keep their own errors; anything else means damage.
fn damaged(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied,
        ) => classify(path, e),
        Some(ErrorCode::NotADatabase) => StoreError::Unreadable {
            path: path.to_path_buf(),
            reason: format!("{e}: not a herd store"),
        },
        _ => StoreError::Damaged {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
    }
}

/// Copies the live store at `store` into `dest` with SQLite's online backup
/// (a consistent snapshot, while the daemon keeps writing), then checks the
/// copy. `dest` is written beside itself first and renamed into place, mode
/// 0600; an existing `dest` is refused unless `overwrite`. Returns its size.
pub fn backup(store: &Path, dest: &Path, overwrite: bool) -> Result<u64, StoreError> {
    let fail = |reason: String| StoreError::Unreadable {
        path: dest.to_path_buf(),
        reason,
    };
    if !overwrite && dest.exists() {
        return Err(fail("exists already (use --force to overwrite)".into()));
    }
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".herd-backup-")
        .tempfile_in(dir)
        .map_err(|e| fail(format!("cannot write in {}: {e}", dir.display())))?;
    let src = Connection::open_with_flags(
        store,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(store, e))?;
    let mut dst = Connection::open(tmp.path()).map_err(|e| classify(tmp.path(), e))?;
    {
        let b = rusqlite::backup::Backup::new(&src, &mut dst).map_err(|e| classify(store, e))?;
        // All pages in one step (-1): one consistent snapshot of the store.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            use rusqlite::backup::StepResult;
            match b.step(-1).map_err(|e| classify(store, e))? {
                StepResult::Done => break,
                _ if std::time::Instant::now() > deadline => {
                    return Err(fail("the store stayed busy for a minute".into()))
                }
                // Busy or locked by the writer for a moment: try again.
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    let ok: String = dst
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| classify(tmp.path(), e))?;
    if ok != "ok" {
        return Err(fail(format!("the copy does not check out: {ok}")));
    }
    drop(dst);
    let file = tmp
        .persist(dest)
        .map_err(|e| fail(format!("cannot move the copy into place: {e}")))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| fail(e.to_string()))
}

fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked { path },
        Some(
            ErrorCode::NotADatabase
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::ReadOnly,
        ) => StoreError::Unreadable {
            path,
            reason: e.to_string(),
        },
        _ => StoreError::Sqlite { path, source: e },
    }
}

/// Milliseconds since the epoch (the unit of `sessions.ended_at`).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn json<T: serde::Serialize>(v: &T) -> rusqlite::Result<String> {
    serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn delete_session(tx: &rusqlite::Transaction<'_>, id: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM events WHERE session_id = ?1", [id])?;
    tx.execute("DELETE FROM messages WHERE session_id = ?1", [id])?;
    tx.execute("DELETE FROM tasks WHERE session_id = ?1", [id])?;
    tx.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
    Ok(())
}

fn map_task(tx: &rusqlite::Transaction<'_>, info: &SessionInfo) -> rusqlite::Result<()> {
    if let Some(task) = &info.task_id {
        tx.execute(
            "INSERT INTO tasks (task_id, session_id, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(task_id) DO UPDATE SET session_id = excluded.session_id, updated_at = excluded.updated_at",
            params![task, info.id.to_string(), rfc3339(SystemTime::now())],
        )?;
    }
    Ok(())
}

/// Applies one record inside a transaction.
fn apply(tx: &rusqlite::Transaction<'_>, r: &Record) -> rusqlite::Result<()> {
    match r {
        Record::Created { info, spec } => {
            tx.execute(
                "INSERT INTO sessions (id, spec, info, state, reason, generation, task_id, project_id, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                params![
                    info.id.to_string(),
                    json(spec)?,
                    json(info)?,
                    info.state.as_str(),
                    info.reason,
                    info.generation as i64,
                    info.task_id,
                    info.project_id,
                    rfc3339(info.created_at),
                ],
            )?;
            map_task(tx, info)
        }
        Record::Transition { event, info } => {
            tx.execute(
                "INSERT INTO events (session_id, from_state, to_state, reason, at, generation, cause) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    event.session_id.to_string(),
                    event.from.as_str(),
                    event.to.as_str(),
                    event.reason,
                    rfc3339(event.at),
                    event.generation as i64,
                    event.cause.as_ref().map(json).transpose()?,
                ],
            )?;
            // A session stopped by a daemon shutdown comes back at the next
            // start: it has not ended, and must not be pruned as history.
            let paused = info.cause == Some(EndCause::DaemonShutdown);
            let ended = (info.state.is_final() && !paused).then(|| unix_ms() as i64);
            tx.execute(
                "UPDATE sessions SET info = ?2, state = ?3, reason = ?4, generation = ?5, updated_at = ?6, ended_at = ?7,
                 pid = CASE WHEN ?8 IS NULL THEN NULL ELSE pid END
                 WHERE id = ?1",
                params![
                    info.id.to_string(),
                    json(info)?,
                    info.state.as_str(),
                    info.reason,
                    info.generation as i64,
                    rfc3339(event.at),
                    ended,
                    info.pid,
                ],
            )?;
            Ok(())
        }
        Record::Updated { info, spec } => {
            tx.execute(
                "UPDATE sessions SET spec = ?2, info = ?3, task_id = ?4, project_id = ?5 WHERE id = ?1",
                params![info.id.to_string(), json(spec)?, json(info)?, info.task_id, info.project_id],
            )?;
            map_task(tx, info)
        }
        Record::Spawned {
            session_id,
            generation,
            pid,
            start_time,
        } => {
            tx.execute(
                "UPDATE sessions SET pid = ?2, pid_start = ?3, generation = ?4 WHERE id = ?1",
                params![
                    session_id.to_string(),
                    pid,
                    start_time.map(|s| s as i64),
                    *generation as i64
                ],
            )?;
            Ok(())
        }
        Record::Message(m) => {
            tx.execute(
                "INSERT INTO messages (id, session_id, state, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET state = excluded.state, body = excluded.body",
                params![
                    m.id.to_string(),
                    m.session_id.to_string(),
                    message_state(m.state),
                    json(m)?
                ],
            )?;
            Ok(())
        }
        Record::Removed(id) => delete_session(tx, &id.to_string()),
        Record::Acked { record, .. } => apply(tx, record),
        Record::Flush(_) => Ok(()),
    }
}

fn message_state(s: MessageState) -> &'static str {
    match s {
        MessageState::Queued => "queued",
        MessageState::Delivering => "delivering",
        MessageState::Done => "done",
        MessageState::Interrupted => "interrupted",
        MessageState::Cancelled => "cancelled",
        MessageState::Failed => "failed",
    }
}
