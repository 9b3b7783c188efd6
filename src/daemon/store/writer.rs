//! The store's single writer thread: applies the journal's records in order,
//! a batch per transaction, and never acknowledges what it did not store.
//!
//! When a write fails (a full disk, an I/O error), plain records (transitions,
//! spawns, message progress) wait in a bounded backlog and are retried, in
//! order, every [`RETRY`] and before each new batch; acknowledged records
//! ([`Record::Acked`]: creates, messages, removals) are tried alone and
//! refused if they fail, so the caller changes nothing. The first failure is
//! logged once and shown by [`StoreHealth`]; the first success after it clears
//! it: the daemon recovers by itself when space returns.

use super::apply;
use herd_actors::{Record, StoreFailure, StoreFault};
use rusqlite::{Connection, ErrorCode};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// Records applied in one transaction at most.
const BATCH: usize = 2048;
/// How often a failing store is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// Records kept for a retry while the store fails; older ones are dropped
/// (and counted in the log) beyond this.
const BACKLOG_MAX: usize = 100_000;

/// Free space the data dir's disk needs before a full store counts as
/// writable again.
const RECOVER_FREE: u64 = 1024 * 1024;

/// Free bytes (for an unprivileged user) on the file system holding `path`.
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data; the call fills it from a valid path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid NUL-terminated path and a pointer to our own struct.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Whether the store takes writes now: set by the writer, read by `/healthz`.
#[derive(Debug, Clone, Default)]
pub struct StoreHealth(Arc<Mutex<Option<StoreFailure>>>);

impl StoreHealth {
    /// Why the store does not take writes now, if it does not.
    pub fn failure(&self) -> Option<StoreFailure> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, f: Option<StoreFailure>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = f;
    }
}

/// What a failed write means: a full disk, or another failure to write.
pub(super) fn failure(e: &rusqlite::Error) -> StoreFailure {
    let fault = match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreFault::Full,
        _ => StoreFault::Unavailable,
    };
    let message = match fault {
        StoreFault::Full => format!("the disk of the data dir is full ({e})"),
        StoreFault::Unavailable => format!("the store cannot be written ({e})"),
    };
    StoreFailure { fault, message }
}

/// A failure that retrying may cure (space, I/O, a lock), as opposed to a
/// record the database refuses whatever happens.
fn transient(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::OutOfMemory
                | ErrorCode::CannotOpen
        )
    )
}

pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    pub(super) health: StoreHealth,
    backlog: VecDeque<Record>,
    /// Set from the first failure until a write succeeds again.
    failing: Option<StoreFailure>,
    dropped: u64,
}

impl Writer {
    pub(super) fn new(conn: Connection, path: PathBuf, health: StoreHealth) -> Self {
        Self {
            conn,
            path,
            health,
            backlog: VecDeque::new(),
            failing: None,
            dropped: 0,
        }
    }

    pub(super) fn run(mut self, mut rx: UnboundedReceiver<Record>) {
        let timer = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => Some(rt),
            Err(e) => {
                tracing::error!("store writer: no timer, failed writes are retried only with the next change: {e}");
                None
            }
        };
        loop {
            let first = match (&timer, self.backlog.is_empty()) {
                (Some(rt), false) => {
                    // The timer must be made inside the runtime.
                    match rt.block_on(async { tokio::time::timeout(RETRY, rx.recv()).await }) {
                        Ok(Some(r)) => r,
                        Ok(None) => break,
                        Err(_) => {
                            self.retry();
                            continue;
                        }
                    }
                }
                _ => match rx.blocking_recv() {
                    Some(r) => r,
                    None => break,
                },
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.retry();
            self.write(batch);
        }
        self.retry();
        if !self.backlog.is_empty() {
            tracing::error!(
                store = %self.path.display(),
                records = self.backlog.len(),
                "store writer stopping with changes that could not be stored"
            );
        }
    }

    /// A write succeeded: the failure is over, unless the disk is still all
    /// but full (small writes fit in free pages while larger ones fail: the
    /// daemon must not flap between refusing and accepting).
    fn ok(&mut self) {
        let Some(f) = &self.failing else { return };
        if f.fault == StoreFault::Full && free_bytes(&self.path).is_some_and(|b| b < RECOVER_FREE) {
            return;
        }
        if self.failing.take().is_some() {
            tracing::info!(store = %self.path.display(), "store writable again: changes are stored, new sessions and messages accepted");
            self.health.set(None);
        }
    }

    fn fail(&mut self, e: &rusqlite::Error) -> StoreFailure {
        let f = failure(e);
        if self.failing.is_none() {
            tracing::error!(store = %self.path.display(), "{}; refusing new sessions and messages (507/503) until it can be written, running sessions go on", f.message);
            self.health.set(Some(f.clone()));
        }
        self.failing = Some(f.clone());
        f
    }

    fn current(&self) -> StoreFailure {
        self.failing.clone().unwrap_or(StoreFailure {
            fault: StoreFault::Unavailable,
            message: "earlier changes are not stored yet".into(),
        })
    }

    fn one(&mut self, r: &Record) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        apply(&tx, r)?;
        tx.commit()
    }

    /// Applies a batch in one transaction; if that fails, record by record.
    fn write(&mut self, batch: Vec<Record>) {
        if self.backlog.is_empty() {
            let result = (|| -> rusqlite::Result<()> {
                let tx = self.conn.transaction()?;
                for r in &batch {
                    apply(&tx, r)?;
                }
                tx.commit()
            })();
            match result {
                Ok(()) => {
                    self.ok();
                    for r in batch {
                        match r {
                            Record::Acked { done, .. } => {
                                let _ = done.send(Ok(()));
                            }
                            Record::Flush(done) => {
                                let _ = done.send(Ok(()));
                            }
                            _ => {}
                        }
                    }
                    return;
                }
                Err(e) => {
                    if transient(&e) {
                        self.fail(&e);
                    }
                }
            }
        }
        for r in batch {
            match r {
                Record::Flush(done) => {
                    let r = if self.backlog.is_empty() {
                        Ok(())
                    } else {
                        Err(self.current())
                    };
                    let _ = done.send(r);
                }
                Record::Acked { record, done } => {
                    let r = match self.one(&record) {
                        Ok(()) => {
                            if self.backlog.is_empty() {
                                self.ok();
                            }
                            Ok(())
                        }
                        Err(e) => Err(self.fail(&e)),
                    };
                    let _ = done.send(r);
                }
                other if !self.backlog.is_empty() => self.keep(other),
                other => match self.one(&other) {
                    Ok(()) => self.ok(),
                    Err(e) if transient(&e) => {
                        self.fail(&e);
                        self.keep(other);
                    }
                    Err(e) => {
                        tracing::error!(store = %self.path.display(), "a change was refused by the store and dropped: {e}")
                    }
                },
            }
        }
    }

    fn keep(&mut self, r: Record) {
        if self.backlog.len() >= BACKLOG_MAX {
            self.backlog.pop_front();
            self.dropped += 1;
            if self.dropped % 10_000 == 1 {
                tracing::error!(store = %self.path.display(), dropped = self.dropped, "store still failing: the oldest unstored changes are dropped");
            }
        }
        self.backlog.push_back(r);
    }

    /// Applies the backlog, oldest first, as far as the store takes it.
    fn retry(&mut self) {
        while !self.backlog.is_empty() {
            let n = self.backlog.len().min(BATCH);
            let result = (|| -> rusqlite::Result<()> {
                let tx = self.conn.transaction()?;
                for r in self.backlog.iter().take(n) {
                    apply(&tx, r)?;
                }
                tx.commit()
            })();
            match result {
                Ok(()) => {
                    self.backlog.drain(..n);
                }
                Err(e) if transient(&e) => {
                    self.fail(&e);
                    return;
                }
                Err(_) => {
                    // One record the database refuses: find it, drop it, go on.
                    while let Some(r) = self.backlog.pop_front() {
                        match self.one(&r) {
                            Ok(()) => {}
                            Err(e) if transient(&e) => {
                                self.fail(&e);
                                self.backlog.push_front(r);
                                return;
                            }
                            Err(e) => {
                                tracing::error!(store = %self.path.display(), "a change was refused by the store and dropped: {e}");
                                break;
                            }
                        }
                    }
                }
            }
        }
        self.ok();
    }
}
