//! A session's snapshot as readers see it, and its JSON kept ready.
//!
//! A fleet list serialises every session's snapshot; at thousands of
//! sessions that was most of `GET /v1/sessions`. Most snapshots do not change
//! between two lists, so each one's JSON is kept here, next to the snapshot,
//! and made again only after the snapshot or its I/O counters changed. Every
//! write goes through [`Snapshot`] (the same calls as `watch::Sender`), which
//! bumps a revision, so no write, notified or silent, can leave the JSON stale.

use crate::info::{Counters, SessionInfo};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::watch;

/// What the kept JSON was made from: a newer revision or other counters
/// make it stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    rev: u64,
    bytes_in: u64,
    bytes_out: u64,
    inputs: u64,
}

/// The snapshot of one session: a watch channel whose every write bumps a
/// revision, and the JSON of the last revision serialised.
#[derive(Debug)]
pub(crate) struct Snapshot {
    tx: watch::Sender<SessionInfo>,
    /// Bumped after every write (notified or not), so a reader that saw the
    /// old revision serialises again next time.
    rev: AtomicU64,
    json: Mutex<Option<(Key, Bytes)>>,
}

impl Snapshot {
    pub(crate) fn new(info: SessionInfo) -> Self {
        Self {
            tx: watch::Sender::new(info),
            rev: AtomicU64::new(0),
            json: Mutex::new(None),
        }
    }

    /// The snapshot now (without the live counters).
    pub(crate) fn borrow(&self) -> watch::Ref<'_, SessionInfo> {
        self.tx.borrow()
    }

    /// A receiver woken by every notified change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<SessionInfo> {
        self.tx.subscribe()
    }

    /// Changes the snapshot and wakes watchers.
    pub(crate) fn send_modify(&self, f: impl FnOnce(&mut SessionInfo)) {
        self.tx.send_modify(f);
        self.bump();
    }

    /// Changes the snapshot; wakes watchers only if `f` returns true (a
    /// metrics sample changes figures nobody waits on).
    pub(crate) fn send_if_modified(&self, f: impl FnOnce(&mut SessionInfo) -> bool) -> bool {
        let woke = self.tx.send_if_modified(f);
        self.bump();
        woke
    }

    /// Replaces the snapshot and wakes watchers.
    pub(crate) fn send_replace(&self, info: SessionInfo) -> SessionInfo {
        let old = self.tx.send_replace(info);
        self.bump();
        old
    }

    // After the write: a reader that loads the new revision then borrows
    // sees the new value; one that loaded the old revision stores its JSON
    // under that old revision, which the next reader finds stale.
    fn bump(&self) {
        self.rev.fetch_add(1, Ordering::Release);
    }

    /// The snapshot with the live counters, as [`crate::SessionHandle::info`] gives it.
    pub(crate) fn info(&self, counters: &Counters) -> SessionInfo {
        let mut info = self.tx.borrow().clone();
        info.metrics.bytes_in = counters.bytes_in.load(Ordering::Relaxed);
        info.metrics.bytes_out = counters.bytes_out.load(Ordering::Relaxed);
        info.metrics.inputs = counters.inputs.load(Ordering::Relaxed);
        info
    }

    /// `serde_json` of [`Self::info`], made again only if the snapshot or the
    /// counters changed since it was last made.
    pub(crate) fn json(&self, counters: &Counters) -> Result<Bytes, serde_json::Error> {
        // The key is read before the snapshot (see `bump`).
        let key = Key {
            rev: self.rev.load(Ordering::Acquire),
            bytes_in: counters.bytes_in.load(Ordering::Relaxed),
            bytes_out: counters.bytes_out.load(Ordering::Relaxed),
            inputs: counters.inputs.load(Ordering::Relaxed),
        };
        if let Some((k, json)) = &*crate::handle::lock(&self.json) {
            if *k == key {
                return Ok(json.clone());
            }
        }
        let mut info = self.tx.borrow().clone();
        info.metrics.bytes_in = key.bytes_in;
        info.metrics.bytes_out = key.bytes_out;
        info.metrics.inputs = key.inputs;
        let json = Bytes::from(serde_json::to_vec(&info)?);
        let mut kept = crate::handle::lock(&self.json);
        // Two readers raced: keep the newer revision's.
        if kept.as_ref().is_none_or(|(k, _)| k.rev <= key.rev) {
            *kept = Some((key, json.clone()));
        }
        Ok(json)
    }
}
