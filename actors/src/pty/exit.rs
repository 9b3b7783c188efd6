//! Knowing when a child has exited, without a thread per child.
//!
//! A `pidfd` (Linux ≥ 5.3) becomes readable when its process exits: one
//! `AsyncFd` per child in the runtime's reactor. Where `pidfd_open` is not
//! available (older kernels, seccomp filters, no descriptor left), the
//! waiter falls back to SIGCHLD: every waiter listens to the signal (tokio
//! delivers it to all listeners from one handler) and asks the kernel about
//! its own child with `waitid(WNOWAIT)`, so the zombie stays for its owner.

use crate::process::Pid;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// How the exit of one child is watched.
pub(crate) enum ExitWatch {
    /// The child's pidfd, readable once it has exited.
    Pidfd(AsyncFd<OwnedFd>),
    /// No pidfd: SIGCHLD and a `waitid` probe.
    Sigchld(Pid),
}

impl ExitWatch {
    /// Watches `pid`, a child of this process that nobody else reaps. Must
    /// be called inside a tokio runtime with I/O enabled.
    pub(crate) fn new(pid: Pid) -> Self {
        // SAFETY: an OwnedFd keeps its descriptor open and unchanged for as
        // long as the AsyncFd owns it.
        let watch = pidfd_open(pid)
            .and_then(|fd| Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?));
        match watch {
            Ok(fd) => Self::Pidfd(fd),
            Err(e) => {
                tracing::debug!(pid, "no pidfd ({e}); exit detected by SIGCHLD");
                Self::Sigchld(pid)
            }
        }
    }

    /// True if this watch uses a pidfd.
    #[cfg(test)]
    pub(crate) fn is_pidfd(&self) -> bool {
        matches!(self, Self::Pidfd(_))
    }

    /// Resolves once the child has exited; it is left a zombie, unreaped, so
    /// its pid (and process group id) cannot be reused meanwhile.
    pub(crate) async fn exited(self) {
        match self {
            Self::Pidfd(fd) => {
                // Readable means exited; an error from the reactor is
                // handled as the fallback would.
                if fd.readable().await.is_ok() {
                    return;
                }
                let pid = pidfd_pid(&fd);
                drop(fd);
                if let Some(pid) = pid {
                    sigchld_wait(pid).await;
                }
            }
            Self::Sigchld(pid) => sigchld_wait(pid).await,
        }
    }
}

/// The pid a pidfd refers to, from `/proc/self/fdinfo`.
fn pidfd_pid(fd: &AsyncFd<OwnedFd>) -> Option<Pid> {
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|p| p.trim().parse().ok())
}

fn pidfd_open(pid: Pid) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // (close-on-exec by definition) or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("pidfd out of range"))?;
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// True once `pid` has exited (or is not our child any more).
fn has_exited(pid: Pid) -> bool {
    // SAFETY: siginfo_t is plain data; zeroed is valid and waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with a valid pointer to a siginfo_t we own.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r != 0 {
        // ECHILD: nothing left to wait for; EINTR: look again next time.
        return std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted;
    }
    // SAFETY: si_pid is valid to read after a successful waitid.
    unsafe { info.si_pid() != 0 }
}

async fn sigchld_wait(pid: Pid) {
    use tokio::signal::unix::{signal, SignalKind};
    // Listening before the first look: an exit between the two still wakes us.
    let mut sig = signal(SignalKind::child()).ok();
    loop {
        if has_exited(pid) {
            return;
        }
        // Signals coalesce (and another task may own the handler's first
        // delivery): a slow tick covers what a lost wake-up would miss.
        let tick = tokio::time::sleep(Duration::from_millis(500));
        match &mut sig {
            Some(s) => {
                tokio::select! { _ = s.recv() => {}, _ = tick => {} }
            }
            None => tick.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pidfd_and_sigchld_both_see_an_exit() {
        for force in [false, true] {
            let mut child = std::process::Command::new("sh")
                .args(["-c", "exit 3"])
                .spawn()
                .unwrap();
            let pid = child.id() as Pid;
            let watch = if force {
                ExitWatch::Sigchld(pid)
            } else {
                ExitWatch::new(pid)
            };
            if !force && !watch.is_pidfd() {
                eprintln!("pidfd_open is not available here: only the SIGCHLD path is tested");
            }
            tokio::time::timeout(Duration::from_secs(20), watch.exited())
                .await
                .expect("exit seen");
            // Still a zombie for its owner to reap, with its status.
            assert_eq!(child.wait().unwrap().code(), Some(3));
        }
    }
}
