//! Git worktrees for sessions (`herd new --worktree [BRANCH]`), through the
//! git CLI: no shell, a timeout on every call, git's own words in errors.
//!
//! Worktrees live in the data dir, `<data>/worktrees/<session id>`, not
//! beside the repository: the user's checkout gets no new directory to
//! ignore or to trip over in `git status`, a read-only or network checkout
//! still works, and everything herd made is in one place with herd's own
//! permissions. Git links them either way (`git worktree list` shows them).

mod cache;

pub use cache::StatusCache;

use herd_actors::{DiffStat, Worktree, WorktreeStatus};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use uuid::Uuid;

/// Longest a git command may take before it is killed.
const GIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest diff `herd diff` returns; past it the diff is cut with a note.
const MAX_DIFF: usize = 32 * 1024 * 1024;

/// Why a worktree could not be made, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    /// No `git` on the daemon's PATH.
    #[error("git was not found on the daemon's PATH: install git to use worktrees")]
    GitMissing,
    /// The session's cwd is not in a repository.
    #[error("{dir:?} is not in a git repository: {detail}")]
    NotARepo {
        /// The directory.
        dir: String,
        /// What git said.
        detail: String,
    },
    /// The repository has no commit to branch from.
    #[error("the repository at {repo:?} has no commit yet: commit once, then ask for a worktree")]
    NoCommit {
        /// The repository.
        repo: String,
    },
    /// Not a branch name git accepts.
    #[error("{branch:?} is not a valid branch name (git check-ref-format --branch)")]
    InvalidBranch {
        /// The name.
        branch: String,
    },
    /// The branch is checked out in another worktree.
    #[error("branch {branch:?} is already checked out in {path:?}: a branch lives in one worktree at a time; pick another branch, or remove that worktree")]
    CheckedOut {
        /// The branch.
        branch: String,
        /// Where it is checked out.
        path: String,
    },
    /// The worktree's directory is no longer there.
    #[error("the worktree {path:?} is gone")]
    Gone {
        /// The directory.
        path: String,
    },
    /// Git ran and failed.
    #[error("git {args} failed: {stderr}")]
    Failed {
        /// The command.
        args: String,
        /// Git's error output.
        stderr: String,
    },
    /// Git did not answer in time, or could not be run.
    #[error("git {args}: {detail}")]
    Run {
        /// The command.
        args: String,
        /// What happened.
        detail: String,
    },
}

impl WorktreeError {
    /// Whether the request (not the machine) is at fault.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Self::Run { .. })
    }
}

/// Runs git in `dir` with `args`; returns its standard output.
async fn git(dir: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Result<String, WorktreeError> {
    let out = git_bytes(dir, args, env).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn git_bytes(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &OsStr)],
) -> Result<Vec<u8>, WorktreeError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        // The daemon's own git variables must not redirect a session's repository.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env("GIT_TERMINAL_PROMPT", "0")
        // Reads must not take the index lock a session's own git may want.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let shown = args.join(" ");
    let out = match tokio::time::timeout(GIT_TIMEOUT, cmd.output()).await {
        Err(_) => {
            return Err(WorktreeError::Run {
                args: shown,
                detail: format!("no answer in {}s", GIT_TIMEOUT.as_secs()),
            })
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(WorktreeError::GitMissing)
        }
        Ok(Err(e)) => {
            return Err(WorktreeError::Run {
                args: shown,
                detail: e.to_string(),
            })
        }
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        return Err(WorktreeError::Failed {
            args: shown,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// Where the worktree of session `id` lives.
fn path_of(data_dir: &Path, id: Uuid) -> PathBuf {
    data_dir.join("worktrees").join(id.to_string())
}

/// A worktree just made, and the cwd the session runs in (the same
/// subdirectory of the worktree as the request's cwd was of the repository).
#[derive(Debug)]
pub struct Made {
    /// The facts the spec keeps.
    pub worktree: Worktree,
    /// The session's cwd.
    pub cwd: PathBuf,
}

/// Held while herd changes a repository's worktrees: git does not lock its
/// worktree list, and two `git worktree add` at once in one repository can
/// read each other's half-made entries ("failed to read .../commondir").
/// One lock for every repository: these are short, and rare next to reads.
static CHANGING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes a worktree of the repository at `cwd` for session `id`: on
/// `branch` (checked out if it exists, else made from HEAD), or on a new
/// branch `herd/<name or short id>`.
pub async fn create(
    data_dir: &Path,
    cwd: &Path,
    branch: Option<&str>,
    id: Uuid,
    name: Option<&str>,
) -> Result<Made, WorktreeError> {
    let top = match git(cwd, &["rev-parse", "--show-toplevel"], &[]).await {
        Ok(t) => PathBuf::from(t.trim_end_matches('\n')),
        Err(WorktreeError::Failed { stderr, .. }) => {
            return Err(WorktreeError::NotARepo {
                dir: shown(cwd),
                detail: stderr,
            })
        }
        Err(e) => return Err(e),
    };
    let prefix = git(cwd, &["rev-parse", "--show-prefix"], &[]).await?;
    let head = git(
        &top,
        &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
        &[],
    )
    .await
    .map_err(|e| match e {
        WorktreeError::Failed { .. } => WorktreeError::NoCommit { repo: shown(&top) },
        e => e,
    })?
    .trim()
    .to_string();
    let _changing = CHANGING.lock().await;
    let generated = branch.is_none();
    let mut branch = match branch {
        Some(b) => {
            check_branch(&top, b).await?;
            b.to_string()
        }
        None => generated_branch(&top, id, name).await?,
    };
    let mut exists = branch_exists(&top, &branch).await?;
    if exists && generated && !branch.ends_with(&short_id(id)) {
        // Another session of this name took it since: one of our own.
        branch = format!("{branch}-{}", short_id(id));
        exists = branch_exists(&top, &branch).await?;
    }
    if exists {
        if let Some(path) = checked_out_at(&top, &branch).await? {
            return Err(WorktreeError::CheckedOut { branch, path });
        }
    }
    let path = path_of(data_dir, id);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| WorktreeError::Run {
            args: "worktree add".into(),
            detail: format!("cannot create {}: {e}", parent.display()),
        })?;
    }
    let p = shown(&path);
    let mut added = if exists {
        git(&top, &["worktree", "add", "--quiet", &p, &branch], &[]).await
    } else {
        git(
            &top,
            &["worktree", "add", "--quiet", "-b", &branch, &p, &head],
            &[],
        )
        .await
    };
    // Two sessions of one name made at once: the later takes a branch of its own.
    if added.is_err() && generated && !branch.ends_with(&short_id(id)) {
        branch = format!("{branch}-{}", short_id(id));
        added = git(
            &top,
            &["worktree", "add", "--quiet", "-b", &branch, &p, &head],
            &[],
        )
        .await;
    }
    if let Err(e) = added {
        // Two requests for one branch at once: the loser hears why.
        if let Some(path) = checked_out_at(&top, &branch).await.ok().flatten() {
            return Err(WorktreeError::CheckedOut { branch, path });
        }
        return Err(e);
    }
    let base = if exists {
        match git(&top, &["merge-base", &head, &branch], &[]).await {
            Ok(b) => b.trim().to_string(),
            Err(_) => git(&top, &["rev-parse", &branch], &[])
                .await?
                .trim()
                .to_string(),
        }
    } else {
        head
    };
    let sub = path.join(prefix.trim_end_matches('\n'));
    let cwd = if sub.is_dir() { sub } else { path.clone() };
    Ok(Made {
        worktree: Worktree {
            path,
            branch,
            repo: top,
            base,
            created_branch: !exists,
        },
        cwd,
    })
}

/// Takes back a worktree whose session could not be made: the directory,
/// and the branch if herd made it (it holds nothing yet).
pub async fn undo(w: &Worktree) {
    let _changing = CHANGING.lock().await;
    let p = shown(&w.path);
    if let Err(e) = git(&w.repo, &["worktree", "remove", "--force", &p], &[]).await {
        tracing::warn!("cannot remove the worktree {p} of a session not made: {e}");
    }
    if w.created_branch {
        if let Err(e) = git(&w.repo, &["branch", "-D", &w.branch], &[]).await {
            tracing::warn!(
                "cannot delete the branch {} of a session not made: {e}",
                w.branch
            );
        }
    }
}

async fn check_branch(top: &Path, b: &str) -> Result<(), WorktreeError> {
    // A leading '-' would be read as an option; "@{-1}" names another branch.
    if b.starts_with('-') || b.contains("@{") || b.len() > 200 {
        return Err(WorktreeError::InvalidBranch { branch: b.into() });
    }
    match git(top, &["check-ref-format", "--branch", b], &[]).await {
        Ok(_) => Ok(()),
        Err(WorktreeError::Failed { .. }) => Err(WorktreeError::InvalidBranch { branch: b.into() }),
        Err(e) => Err(e),
    }
}

async fn branch_exists(top: &Path, b: &str) -> Result<bool, WorktreeError> {
    let r = format!("refs/heads/{b}");
    match git(top, &["rev-parse", "--verify", "--quiet", &r], &[]).await {
        Ok(_) => Ok(true),
        Err(WorktreeError::Failed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `herd/<name>` (if a valid, free branch name), else `herd/<name>-<short id>`,
/// or `herd/<short id>` for a session without a name.
async fn generated_branch(
    top: &Path,
    id: Uuid,
    name: Option<&str>,
) -> Result<String, WorktreeError> {
    let short = short_id(id);
    let Some(name) = name else {
        return Ok(format!("herd/{short}"));
    };
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_matches(|c| c == '-' || c == '.').to_string();
    if clean.is_empty() {
        return Ok(format!("herd/{short}"));
    }
    let first = format!("herd/{clean}");
    if check_branch(top, &first).await.is_err() {
        return Ok(format!("herd/{short}"));
    }
    if !branch_exists(top, &first).await? {
        return Ok(first);
    }
    Ok(format!("{first}-{short}"))
}

/// The first 8 hex digits of a session id, as `herd ls` shows it.
fn short_id(id: Uuid) -> String {
    id.simple().to_string()[..8].to_string()
}

/// The worktree `branch` is checked out in, if any.
async fn checked_out_at(top: &Path, branch: &str) -> Result<Option<String>, WorktreeError> {
    let list = git(top, &["worktree", "list", "--porcelain"], &[]).await?;
    let want = format!("branch refs/heads/{branch}");
    let mut path = None;
    for line in list.lines() {
        if let Some(p) = line.strip_prefix("worktree ") {
            path = Some(p.to_string());
        } else if line == want {
            return Ok(path);
        }
    }
    Ok(None)
}

/// Runs git diff `args` against a copy of the worktree's index in which
/// untracked files are marked "intent to add": they show as new files, and
/// neither the worktree's index nor its object store is touched.
async fn diff_with_untracked(path: &Path, args: &[&str]) -> Result<Vec<u8>, WorktreeError> {
    if !path.is_dir() {
        return Err(WorktreeError::Gone { path: shown(path) });
    }
    let index = git(
        path,
        &["rev-parse", "--path-format=absolute", "--git-path", "index"],
        &[],
    )
    .await?;
    let tmp = tempfile::Builder::new()
        .prefix("herd-index-")
        .tempdir()
        .map_err(|e| WorktreeError::Run {
            args: "diff".into(),
            detail: format!("cannot make a temporary index: {e}"),
        })?;
    let copy = tmp.path().join("index");
    let index = PathBuf::from(index.trim_end_matches('\n'));
    if index.exists() {
        std::fs::copy(&index, &copy).map_err(|e| WorktreeError::Run {
            args: "diff".into(),
            detail: format!("cannot copy the index {}: {e}", index.display()),
        })?;
    } else {
        git(
            path,
            &["read-tree", "HEAD"],
            &[("GIT_INDEX_FILE", copy.as_os_str())],
        )
        .await?;
    }
    let env = [("GIT_INDEX_FILE", copy.as_os_str())];
    git(path, &["add", "--all", "--intent-to-add", "."], &env).await?;
    git_bytes(path, args, &env).await
}

/// Whether the worktree has uncommitted changes, and its diff stat since `base`.
pub async fn status(path: &Path, base: &str) -> Result<WorktreeStatus, WorktreeError> {
    if !path.is_dir() {
        return Err(WorktreeError::Gone { path: shown(path) });
    }
    let porcelain = git(
        path,
        &["status", "--porcelain", "--untracked-files=normal"],
        &[],
    )
    .await?;
    let numstat = diff_with_untracked(path, &["diff", "--numstat", "--no-renames", base]).await?;
    Ok(WorktreeStatus {
        dirty: !porcelain.trim().is_empty(),
        diffstat: parse_numstat(&String::from_utf8_lossy(&numstat)),
    })
}

/// The worktree's changes since `base`, committed and not (untracked files
/// as new files), as a unified diff.
pub async fn diff(path: &Path, base: &str) -> Result<Vec<u8>, WorktreeError> {
    let mut out = diff_with_untracked(
        path,
        &["diff", "--no-color", "--no-ext-diff", "--no-textconv", base],
    )
    .await?;
    if out.len() > MAX_DIFF {
        out.truncate(MAX_DIFF);
        out.extend_from_slice(b"\n[herd: diff cut at 32 MiB]\n");
    }
    Ok(out)
}

fn parse_numstat(text: &str) -> DiffStat {
    let mut s = DiffStat::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(ins), Some(del), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        s.files += 1;
        // Binary files show "-": counted as a file, without lines.
        s.insertions += ins.parse::<u64>().unwrap_or(0);
        s.deletions += del.parse::<u64>().unwrap_or(0);
    }
    s
}

/// What `rm` did with a session's worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Removed (it was clean, or removal was forced).
    Removed,
    /// Kept: it has uncommitted changes.
    KeptDirty,
    /// Its directory was gone already.
    Gone,
}

/// Removes `w`'s worktree when clean, or anyway when `force`; the branch stays.
pub async fn remove(w: &Worktree, force: bool) -> Result<Removal, WorktreeError> {
    let _changing = CHANGING.lock().await;
    let p = shown(&w.path);
    if !w.path.is_dir() {
        // Let git forget a worktree whose directory went away.
        let _ = git(&w.repo, &["worktree", "prune"], &[]).await;
        return Ok(Removal::Gone);
    }
    if !force {
        let porcelain = git(
            &w.path,
            &["status", "--porcelain", "--untracked-files=normal"],
            &[],
        )
        .await?;
        if !porcelain.trim().is_empty() {
            return Ok(Removal::KeptDirty);
        }
    }
    let mut args = vec!["worktree", "remove"];
    if force {
        args.push("--force");
    }
    args.push(&p);
    git(&w.repo, &args, &[]).await?;
    Ok(Removal::Removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numstat_counts_files_lines_and_binaries() {
        let s = parse_numstat("1\t0\ta\n3\t2\tsrc/b.rs\n-\t-\timg.png\n");
        assert_eq!(
            s,
            DiffStat {
                files: 3,
                insertions: 4,
                deletions: 2
            }
        );
    }
}
