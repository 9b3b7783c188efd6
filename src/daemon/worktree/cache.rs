//! Worktree status for lists: what git said at most a few seconds ago.
//!
//! A list of 1,000 worktree sessions must not run 1,000 gits before it
//! answers. `GET /v1/sessions/{id}` looks now (and refreshes this cache);
//! `GET /v1/sessions` shows what is cached and refreshes stale entries in
//! the background, a few at a time, so the next list is current.

use herd_actors::{SessionInfo, WorktreeStatus};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// How old a cached status may be before a list refreshes it.
const FRESH_FOR: Duration = Duration::from_secs(5);
/// Background refreshes running at once (the machine runs sessions too).
const PARALLEL: usize = 2;

/// The cache; cheap to clone.
#[derive(Clone)]
pub struct StatusCache {
    inner: Arc<Inner>,
}

struct Inner {
    seen: Mutex<HashMap<Uuid, (Instant, WorktreeStatus)>>,
    /// Refreshes queued or running, so a burst of lists queues each once.
    pending: Mutex<HashSet<Uuid>>,
    permits: Semaphore,
}

impl Default for StatusCache {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                seen: Mutex::new(HashMap::new()),
                pending: Mutex::new(HashSet::new()),
                permits: Semaphore::new(PARALLEL),
            }),
        }
    }
}

impl StatusCache {
    /// Looks at one session's worktree now, and remembers what it found.
    pub async fn fresh(&self, info: &mut SessionInfo) {
        let Some(w) = &mut info.worktree else { return };
        match super::status(&w.path, &w.base).await {
            Ok(s) => {
                w.set_status(s);
                self.put(info.id, s);
            }
            Err(e) => tracing::debug!(session = %info.id, "worktree status: {e}"),
        }
    }

    /// Fills each worktree session of a list from the cache, and refreshes
    /// the stale ones in the background.
    pub fn fill(&self, infos: &mut [SessionInfo]) {
        let now = Instant::now();
        let mut stale = vec![];
        {
            let seen = self
                .inner
                .seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for info in infos.iter_mut() {
                let Some(w) = &mut info.worktree else {
                    continue;
                };
                match seen.get(&info.id) {
                    Some((at, s)) => {
                        w.set_status(*s);
                        if now.duration_since(*at) > FRESH_FOR {
                            stale.push((info.id, w.path.clone(), w.base.clone()));
                        }
                    }
                    None => stale.push((info.id, w.path.clone(), w.base.clone())),
                }
            }
        }
        for (id, path, base) in stale {
            self.refresh(id, path, base);
        }
    }

    /// Forgets a removed session.
    pub fn forget(&self, id: Uuid) {
        self.inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    fn put(&self, id: Uuid, s: WorktreeStatus) {
        self.inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (Instant::now(), s));
    }

    fn refresh(&self, id: Uuid, path: PathBuf, base: String) {
        let queued = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
        if !queued {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Ok(_permit) = me.inner.permits.acquire().await {
                match super::status(&path, &base).await {
                    Ok(s) => me.put(id, s),
                    Err(e) => tracing::debug!(session = %id, "worktree status: {e}"),
                }
            }
            me.inner
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });
    }
}
