//! A session's git worktree: where it is, which branch it holds, and (when
//! the daemon looked) whether it has changes. The daemon runs git; this crate
//! only carries the facts in the spec (so recovery keeps them) and the snapshot.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The worktree a session runs in, as created by the daemon and kept in the spec.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worktree {
    /// The worktree's directory (the session's cwd is in it).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub path: PathBuf,
    /// The branch checked out in it.
    pub branch: String,
    /// The top directory of the repository it was made from.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub repo: PathBuf,
    /// The commit the session's work is measured from (the repository's
    /// HEAD when the branch was made, else its merge base with the branch).
    pub base: String,
    /// Whether herd made the branch (it is kept on `rm` all the same: it
    /// holds the work).
    #[serde(default)]
    pub created_branch: bool,
}

/// Lines and files changed in a worktree since its base, committed or not
/// (untracked files count as added).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffStat {
    /// Files changed.
    pub files: u64,
    /// Lines added.
    pub insertions: u64,
    /// Lines deleted.
    pub deletions: u64,
}

/// What the daemon found when it last looked at a worktree.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeStatus {
    /// Uncommitted changes (untracked files included).
    pub dirty: bool,
    /// Changes since the base, committed and not.
    pub diffstat: DiffStat,
}

/// A session's worktree as the API shows it: where, and its status when known.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeInfo {
    /// The worktree's directory.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub path: PathBuf,
    /// The branch checked out in it.
    pub branch: String,
    /// The repository it was made from.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub repo: PathBuf,
    /// The commit changes are counted from.
    pub base: String,
    /// Uncommitted changes; absent until the daemon looked (lists show
    /// what it found at most a few seconds ago).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
    /// Changes since the base; absent until the daemon looked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diffstat: Option<DiffStat>,
}

impl WorktreeInfo {
    /// The facts of `w`, with no status yet.
    pub fn of(w: &Worktree) -> Self {
        Self {
            path: w.path.clone(),
            branch: w.branch.clone(),
            repo: w.repo.clone(),
            base: w.base.clone(),
            dirty: None,
            diffstat: None,
        }
    }

    /// Fills in what the daemon found.
    pub fn set_status(&mut self, s: WorktreeStatus) {
        self.dirty = Some(s.dirty);
        self.diffstat = Some(s.diffstat);
    }
}
