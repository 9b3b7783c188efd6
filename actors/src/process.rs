//! Process-tree access on Linux: signals to groups, descendants, liveness.
//!
//! Every child herd starts is a session leader (portable-pty calls `setsid`),
//! so its pid is also its process group id. Processes that leave the group
//! (their own `setsid`) are still found through `/proc/<pid>/task/*/children`.
//!
//! Containment: a process that detached completely (double fork, `setsid`)
//! is no longer in the tree, but it still carries the session's marker in its
//! environment (`HERD_SESSION_ID`, `HERD_GENERATION`): [`kill_marked`] finds
//! and kills those. A daemon that calls [`become_subreaper`] adopts such
//! orphans instead of init, and [`reap_orphans`] reaps them.

use std::collections::HashSet;
use std::fs;
use std::sync::{Mutex, MutexGuard};

/// Unix pid.
pub type Pid = i32;

/// Sends `sig` to a whole process group. Errors (e.g. already gone) are ignored:
/// the caller only needs the group to be signalled if it still exists.
pub fn signal_group(pgid: Pid, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Sends `sig` to one process.
pub fn signal(pid: Pid, sig: i32) {
    if pid > 1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Direct children of `pid` (of all its threads).
pub fn children(pid: Pid) -> Vec<Pid> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(text) = fs::read_to_string(path) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<Pid>().ok()),
            );
        }
    }
    out
}

/// `pid` and all its descendants, parents before children.
pub fn tree(pid: Pid) -> Vec<Pid> {
    let mut out = vec![pid];
    let mut i = 0;
    // Bounded, in case of a pid cycle from reuse during the walk.
    while i < out.len() && out.len() < 100_000 {
        let kids = children(out[i]);
        for k in kids {
            if !out.contains(&k) {
                out.push(k);
            }
        }
        i += 1;
    }
    out
}

/// Signals the group and every descendant (also those that left the group).
pub fn signal_tree(root: Pid, sig: i32) {
    let members = tree(root);
    signal_group(root, sig);
    for p in members {
        signal(p, sig);
    }
}

/// Pids of the session leaders herd started and will reap itself (their
/// waiter tasks); [`reap_orphans`] leaves them alone. One set per process,
/// as there is one process table.
static LEADERS: Mutex<Option<HashSet<Pid>>> = Mutex::new(None);

/// The set of leaders, locked: hold it across a spawn and the insertion of
/// its pid, so the reaper never sees the leader unregistered.
pub(crate) fn leaders() -> MutexGuard<'static, Option<HashSet<Pid>>> {
    LEADERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes this process the child subreaper of its descendants
/// (`PR_SET_CHILD_SUBREAPER`): a detached grandchild of a session is
/// reparented to it, not to init, and cannot leave its reach.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with an integer argument; no memory is passed.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Reaps adopted orphans that exited: zombie children of this process that
/// are not leaders herd waits for and that are not in this process's own
/// session (children it started for itself, e.g. with `Command`, are left to
/// their owner). Returns how many were reaped.
pub fn reap_orphans() -> usize {
    // Most wake-ups find nothing to reap: ask the kernel first, without
    // reaping, instead of reading the stat of every process (at 1,000
    // sessions that scan was most of the daemon's idle CPU).
    if !any_exited_child() {
        return 0;
    }
    let me = std::process::id() as Pid;
    let my_sid = fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_field(&s, 6));
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    let guard = leaders();
    let mut n = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<Pid>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let zombie = stat_field(&stat, 3).as_deref() == Some("Z");
        let mine = stat_field(&stat, 4).and_then(|p| p.parse::<Pid>().ok()) == Some(me);
        let own_session = stat_field(&stat, 6) == my_sid;
        let leader = guard.as_ref().is_some_and(|l| l.contains(&pid));
        if zombie && mine && !own_session && !leader {
            let mut status = 0;
            // SAFETY: plain syscall on a zombie child of ours.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                n += 1;
            }
        }
    }
    n
}

/// Whether any child of this process has exited and waits to be reaped,
/// leaving it waitable for its owner (`WNOWAIT`).
fn any_exited_child() -> bool {
    // SAFETY: siginfo_t is plain data; zeroed is a valid value and the kernel
    // fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with a valid pointer to a siginfo_t we own.
    let r = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // ECHILD (no children at all) means nothing to reap; with WNOHANG a
    // zero si_pid means no child has exited.
    // SAFETY: si_pid is valid to read after a successful waitid.
    r == 0 && unsafe { info.si_pid() } != 0
}

/// Every other live process, with its environment (`KEY=VALUE` entries
/// separated by NULs): the one /proc scan the marker lookups share.
fn each_environ(mut f: impl FnMut(Pid, &[u8])) {
    let me = std::process::id() as Pid;
    let Ok(dir) = fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<Pid>().ok())
        else {
            continue;
        };
        if pid == me || !is_alive(pid) {
            continue;
        }
        if let Ok(env) = fs::read(format!("/proc/{pid}/environ")) {
            f(pid, &env);
        }
    }
}

/// Live processes whose environment holds every `KEY=VALUE` of `marks`.
pub fn find_marked(marks: &[(&str, &str)]) -> Vec<Pid> {
    find_marked_many(&[marks.to_vec()])
        .pop()
        .unwrap_or_default()
}

/// For each set of marks, the live processes whose environment holds every
/// `KEY=VALUE` of it: one walk of `/proc` for all the sets.
fn find_marked_many(sets: &[Vec<(&str, &str)>]) -> Vec<Vec<Pid>> {
    // Sets by their first `KEY=VALUE`, so that a walk looks up each
    // variable of a process once instead of comparing every set.
    let mut by_first: std::collections::HashMap<Vec<u8>, Vec<usize>> = Default::default();
    for (i, m) in sets.iter().enumerate() {
        if let Some((k, v)) = m.first() {
            by_first
                .entry(format!("{k}={v}").into_bytes())
                .or_default()
                .push(i);
        }
    }
    let wanted: Vec<Vec<Vec<u8>>> = sets
        .iter()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}").into_bytes())
                .collect()
        })
        .collect();
    let mut out = vec![Vec::new(); sets.len()];
    if by_first.is_empty() {
        return out;
    }
    each_environ(|pid, env| {
        for kv in env.split(|b| *b == 0) {
            let Some(candidates) = by_first.get(kv) else {
                continue;
            };
            for &i in candidates {
                if !out[i].contains(&pid)
                    && wanted[i]
                        .iter()
                        .all(|w| env.split(|b| *b == 0).any(|kv| kv == w.as_slice()))
                {
                    out[i].push(pid);
                }
            }
        }
    });
    out
}

/// Kills every process marked with all of `marks`, round after round until
/// none is left (a process may fork while the first round runs): stopped
/// first, so a fork bomb cannot outrun the sweep, then killed. Returns how
/// many were killed.
pub fn kill_marked(marks: &[(&str, &str)]) -> usize {
    kill_marked_many(&[marks.to_vec()])[0]
}

/// [`kill_marked`] for many sets of marks at once, with one walk of `/proc`
/// per round for all of them; returns how many were killed for each set.
pub fn kill_marked_many(sets: &[Vec<(&str, &str)>]) -> Vec<usize> {
    let mut killed = vec![0; sets.len()];
    for _ in 0..100 {
        let found = find_marked_many(sets);
        if found.iter().all(|f| f.is_empty()) {
            break;
        }
        for p in found.iter().flatten() {
            signal(*p, libc::SIGSTOP);
        }
        for p in found.iter().flatten() {
            signal(*p, libc::SIGKILL);
        }
        for (k, f) in killed.iter_mut().zip(&found) {
            *k += f.len();
        }
    }
    killed
}

/// Live processes whose environment has `var`, grouped by its value.
///
/// herd sets `HERD_SESSION_ID` in every child, and descendants inherit it,
/// so this finds a session's processes even after their parent died and
/// without trusting a pid that may have been reused.
pub fn find_by_env(var: &str) -> std::collections::HashMap<String, Vec<Pid>> {
    let mut out: std::collections::HashMap<String, Vec<Pid>> = Default::default();
    let prefix = format!("{var}=");
    each_environ(|pid, env| {
        let value = env
            .split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(prefix.as_bytes()));
        if let Some(v) = value {
            out.entry(String::from_utf8_lossy(v).into_owned())
                .or_default()
                .push(pid);
        }
    });
    out
}

/// True if `pid` exists and is not a zombie.
pub fn is_alive(pid: Pid) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat_field(&stat, 3).as_deref(), Some("Z") | Some("X")),
        Err(_) => false,
    }
}

/// The process's start time in clock ticks since boot (field 22 of `stat`):
/// with the pid, it identifies a process even after pid reuse.
pub fn start_time(pid: Pid) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_field(&stat, 22)?.parse().ok()
}

/// Field `n` (1-based, as in proc(5)) of a `/proc/<pid>/stat` line.
fn stat_field(stat: &str, n: usize) -> Option<String> {
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let close = stat.rfind(')')?;
    if n == 1 {
        return stat.split_whitespace().next().map(str::to_string);
    }
    if n == 2 {
        return stat.get(stat.find('(')? + 1..close).map(str::to_string);
    }
    stat[close + 1..]
        .split_whitespace()
        .nth(n - 3)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_odd_names() {
        let line = "42 (a b) c)) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0";
        assert_eq!(stat_field(line, 1).unwrap(), "42");
        assert_eq!(stat_field(line, 2).unwrap(), "a b) c)");
        assert_eq!(stat_field(line, 3).unwrap(), "S");
        assert_eq!(stat_field(line, 22).unwrap(), "777");
    }

    #[test]
    fn finds_children_by_environment() {
        let tag = format!("herd-test-{}", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("HERD_TEST_TAG", &tag)
            .spawn()
            .unwrap();
        // Poll: under load the child may not have finished exec at the first look.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut found = find_by_env("HERD_TEST_TAG");
        while !found.contains_key(&tag) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = find_by_env("HERD_TEST_TAG");
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.get(&tag), Some(&vec![child.id() as Pid]));
    }

    #[test]
    fn own_process_is_alive_with_a_start_time() {
        let me = std::process::id() as Pid;
        assert!(is_alive(me));
        assert!(start_time(me).is_some());
        assert!(!is_alive(i32::MAX));
    }
}
