//! Where herd keeps its files, shared by the daemon and the CLI.

use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The API token, mode 0600.
pub const TOKEN_FILE: &str = "token";
/// The URL the running daemon listens on.
pub const URL_FILE: &str = "url";

/// The data dir: the explicit one, else `$HERD_HOME`, else `~/.local/share/herd`.
pub fn data_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(d) = explicit {
        return Ok(d.to_path_buf());
    }
    if let Some(d) = std::env::var_os("HERD_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("cannot find a data dir: set HERD_HOME or HOME, or pass --data-dir")?;
    Ok(PathBuf::from(home).join(".local/share/herd"))
}

/// Takes the data dir's lock file, so two daemons never share one data dir.
/// The lock lasts as long as the returned file is open.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("daemon.lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    // A daemon killed a moment ago may still be releasing the lock (its last
    // spawned child still holds a copy of the descriptor until its exec):
    // try for a few seconds before calling the data dir taken.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    // SAFETY: flock on a descriptor we own.
    while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        anyhow::bail!(
            "another herd daemon (pid {}) is already using data dir {}",
            holder.trim(),
            dir.display()
        );
    }
    f.set_len(0).ok();
    let _ = write!(f, "{}", std::process::id());
    Ok(f)
}

/// Creates the directory (mode 0700) if needed.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting mode 0700 on {}", dir.display()))
}

/// Writes a file readable by its owner only (mode 0600), atomically.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}
