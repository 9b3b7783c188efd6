//! The runner's own memory, in a JSON file replaced atomically on every
//! change: which session serves each task, which message each attempt made,
//! and how it ended. With the daemon's task→session map it is what makes a
//! restarted runner pick up where it stopped instead of starting again.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where a task is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not started, or started and not finished.
    #[default]
    Pending,
    /// Answered.
    Done,
    /// Given up: a failure that is not retried, or attempts spent.
    Failed,
}

/// How an attempt's message ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// The message's final state (`done`, `failed`, ...), or the runner's
    /// word for what it saw (`lost`, `timeout`).
    pub state: String,
    /// The failure's kind (`rate_limited`, `api_error`, `budget`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// What went wrong, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One prompt sent for a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    /// 1, 2, ...
    pub n: u32,
    /// The session it went to.
    pub session_id: String,
    /// Its `Idempotency-Key`.
    pub key: String,
    /// The daemon's message id, once it acknowledged the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// How it ended, once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// One task's record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Where it is.
    pub status: Status,
    /// Index of the session-creating key in use: a new one only when the
    /// task's session ended and the next attempt needs another.
    #[serde(default)]
    pub session_key: u32,
    /// The session serving the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Every attempt, in order.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Why it failed, for a failed task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The session was stopped after the task ended (unless `--keep-sessions`).
    #[serde(default)]
    pub released: bool,
}

/// The whole file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Doc {
    tasks: BTreeMap<String, TaskRecord>,
}

/// The state file, loaded once and written after every change.
pub struct StateFile {
    path: PathBuf,
    doc: Mutex<Doc>,
}

impl StateFile {
    /// Opens `path`, or starts empty where it does not exist.
    pub fn open(path: &Path) -> Result<StateFile> {
        let doc = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not a state file of this runner", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Doc::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(StateFile {
            path: path.to_path_buf(),
            doc: Mutex::new(doc),
        })
    }

    /// A copy of a task's record.
    pub fn get(&self, task: &str) -> TaskRecord {
        let doc = self.doc.lock().unwrap_or_else(|e| e.into_inner());
        doc.tasks.get(task).cloned().unwrap_or_default()
    }

    /// Changes a task's record and writes the file before returning: what
    /// the runner does next may rely on it being on disk.
    pub fn update<R>(&self, task: &str, f: impl FnOnce(&mut TaskRecord) -> R) -> Result<R> {
        // Held while writing, so that files are written in the order of changes.
        let mut doc = self.doc.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(doc.tasks.entry(task.to_string()).or_default());
        let bytes = serde_json::to_vec_pretty(&*doc).context("encoding the state")?;
        write_atomic(&self.path, &bytes)?;
        Ok(r)
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it
/// over `path` (then syncs the directory): a reader sees the old file or the
/// new one, never a torn one, even across a kill -9 or a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    // The rename itself is durable once the directory is synced.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
