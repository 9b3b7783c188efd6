//! Retention of ended sessions: stopped and failed sessions are kept (with
//! their events, messages and recordings) up to a count and an age; `gc`
//! forgets the rest, from the store first, then their recordings.

use crate::daemon::recorder::Recordings;
use herd_actors::{HerdError, ListFilter, Registry};
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// How many ended sessions to keep, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Ended sessions older than this go.
    pub max_age: Duration,
    /// At most this many ended sessions stay (the most recent).
    pub keep: usize,
}

/// What a collection removed.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct GcReport {
    /// The sessions forgotten.
    pub removed: Vec<Uuid>,
    /// Bytes of recordings deleted.
    pub recording_bytes: u64,
}

/// Forgets the ended sessions `policy` does not keep, oldest first, and
/// deletes their recordings. Stops at the first session the store cannot
/// forget (the report says what was done until then).
pub async fn gc(
    registry: &Registry,
    recordings: &Recordings,
    policy: Policy,
) -> Result<GcReport, (GcReport, HerdError)> {
    let filter = ListFilter {
        all: true,
        ..Default::default()
    };
    let mut ended: Vec<_> = registry
        .list(&filter)
        .into_iter()
        .filter(|s| s.state.is_final())
        .collect();
    // Newest first: the first `keep` young enough stay.
    ended.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
    let now = SystemTime::now();
    let doomed: Vec<Uuid> = ended
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            let age = now.duration_since(s.updated_at).unwrap_or_default();
            *i >= policy.keep || age > policy.max_age
        })
        .map(|(_, s)| s.id)
        .rev()
        .collect();
    let mut report = GcReport::default();
    for id in doomed {
        let worktree = registry.get(id).and_then(|h| h.spec().worktree);
        match registry.remove(id).await {
            Ok(()) => {}
            // Gone meanwhile (another gc): nothing to do.
            Err(HerdError::NotFound(_)) => continue,
            Err(e) => return Err((report, e)),
        }
        report.removed.push(id);
        match recordings.delete(id).await {
            Ok(bytes) => report.recording_bytes += bytes,
            Err(e) => tracing::warn!(session = %id, "cannot delete recordings: {e}"),
        }
        // As `herd rm` without --force: a clean worktree goes, work stays.
        if let Some(w) = worktree {
            match crate::daemon::worktree::remove(&w, false).await {
                Ok(crate::daemon::worktree::Removal::KeptDirty) => tracing::info!(
                    path = %w.path.display(), branch = %w.branch,
                    "kept the dirty worktree of a forgotten session"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(path = %w.path.display(), "cannot remove a worktree: {e}"),
            }
        }
    }
    if !report.removed.is_empty() {
        tracing::info!(
            removed = report.removed.len(),
            recording_bytes = report.recording_bytes,
            "forgot ended sessions"
        );
    }
    Ok(report)
}
