//! Statistics, /proc readings, resource limits and the process reaper.
//!
//! Every process the bench starts is registered with the reaper until its
//! guard has cleaned it up, so an interrupted run (Ctrl-C, SIGTERM) still
//! kills everything it started, by pid and process group, never by name.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Median of the values (0 when empty).
pub fn median(v: &[f64]) -> f64 {
    percentile(v, 50.0)
}

/// Nearest-rank percentile `p` (0..=100) of the values (0 when empty).
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if p >= 100.0 {
        return s[s.len() - 1];
    }
    if (p - 50.0).abs() < f64::EPSILON && s.len() % 2 == 0 {
        let m = s.len() / 2;
        return (s[m - 1] + s[m]) / 2.0;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// Milliseconds of a duration, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The three load averages, as `/proc/loadavg` shows them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// (busy, total) jiffies of all CPUs from /proc/stat.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// How busy the machine is (percent of all its CPUs) over `window`, while
/// the bench itself idles: other engineers' builds and tests show here.
pub async fn machine_busy(window: Duration) -> f64 {
    let a = cpu_jiffies();
    tokio::time::sleep(window).await;
    match (a, cpu_jiffies()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) as f64 / (t1 - t0) as f64 * 100.0,
        _ => 0.0,
    }
}

/// The machine the figures come from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub nproc: usize,
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// MemTotal in GiB.
    pub mem_gib: f64,
    /// `uname -r`.
    pub kernel: String,
}

impl Machine {
    /// Reads the description from /proc.
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "?".into());
        let mem_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        Self {
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model,
            mem_gib: mem_kib / (1024.0 * 1024.0),
            kernel,
        }
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (inherited by the daemons
/// and every child the bench starts). Returns (before, after).
pub fn raise_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        let before = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return (before, before);
        }
        (before, lim.rlim_cur)
    }
}

/// Resident memory of a process in bytes (VmRSS).
pub fn rss_bytes(pid: i32) -> Option<u64> {
    status_field(pid, "VmRSS:").map(|kib| kib * 1024)
}

/// Threads of a process.
pub fn threads(pid: i32) -> Option<u64> {
    status_field(pid, "Threads:")
}

fn status_field(pid: i32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Fields of /proc/<pid>/stat after the command name (field 3 is index 0).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(String::from).collect())
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let f = stat_fields(pid)?;
    // Fields 14 and 15 of stat(5).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Start time of a process (field 22 of stat(5)), to recognise a reused pid.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Every descendant of `root` now, with its start time.
pub fn descendants(root: i32) -> Vec<(i32, u64)> {
    let mut parent_of: Vec<(i32, i32, u64)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Some(f) = stat_fields(pid) {
                let ppid = f.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
                let start = f.get(19).and_then(|p| p.parse().ok()).unwrap_or(0);
                parent_of.push((pid, ppid, start));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid, start) in &parent_of {
            if ppid == p {
                out.push((pid, start));
                frontier.push(pid);
            }
        }
    }
    out
}

/// SIGKILLs the process group led by `pid` and the process itself, if it is
/// still the process that started at `start`.
pub fn kill_group_if_same(pid: i32, start: u64) {
    if pid <= 1 || start_time(pid) != Some(start) {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        if libc::getpgid(pid) == pid {
            libc::kill(-pid, libc::SIGKILL);
        }
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Processes of herd found alive after their daemon's graceful shutdown.
pub static LEFTOVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether `pid` is still the process that started at `start` and is not a
/// zombie. A zombie the bench inherited (as subreaper) is reaped here.
pub fn outlived(pid: i32, start: u64) -> bool {
    let Some(f) = stat_fields(pid) else {
        return false;
    };
    if f.get(19).and_then(|s| s.parse::<u64>().ok()) != Some(start) {
        return false;
    }
    if f.first().map(String::as_str) == Some("Z") {
        // SAFETY: getpid has no preconditions; waitpid on a specific pid
        // only reaps it if it is our (inherited) child.
        unsafe {
            if f.get(1).and_then(|s| s.parse::<i32>().ok()) == Some(libc::getpid()) {
                libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
        return false;
    }
    true
}

/// Makes the bench the subreaper of everything it starts: a process whose
/// parent (a daemon) died is re-parented to the bench, not to init, so the
/// final sweep finds it.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    }
}

/// Kills every descendant the bench still has; returns how many there were.
pub fn final_sweep() -> usize {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut n = 0;
    for (pid, start) in descendants(me) {
        if outlived(pid, start) {
            n += 1;
            kill_group_if_same(pid, start);
        }
    }
    if n > 0 {
        std::thread::sleep(Duration::from_millis(100));
        for (pid, start) in descendants(me) {
            outlived(pid, start);
        }
    }
    n
}

/// What the reaper does to a registered process on an emergency exit.
#[derive(Debug, Clone, Copy)]
pub enum Reap {
    /// A process group leader (a bare PTY child): SIGKILL its group.
    Group,
    /// A daemon: SIGKILL every descendant's group, then the daemon.
    Tree,
}

static NEXT: AtomicU64 = AtomicU64::new(1);
static LIVE: Mutex<BTreeMap<u64, (i32, Reap)>> = Mutex::new(BTreeMap::new());

static DIRS: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());

/// Registers a temp dir to delete on an emergency exit (normal runs delete
/// their temp dirs when the guards drop).
pub fn register_dir(p: &std::path::Path) {
    DIRS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(p.to_path_buf());
}

/// Registers a process for the emergency exit; returns the ticket to
/// [`forget`] it by once its guard has cleaned it up.
pub fn register(pid: i32, how: Reap) -> u64 {
    let t = NEXT.fetch_add(1, Ordering::Relaxed);
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(t, (pid, how));
    t
}

/// The process behind `ticket` was cleaned up by its guard.
pub fn forget(ticket: u64) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&ticket);
}

/// Kills every registered process now (on Ctrl-C or SIGTERM of the bench).
pub fn reap_all() {
    let live: Vec<(i32, Reap)> = LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .copied()
        .collect();
    for (pid, how) in live {
        if let Reap::Tree = how {
            for (d, start) in descendants(pid) {
                kill_group_if_same(d, start);
            }
        }
        if let Some(start) = start_time(pid) {
            kill_group_if_same(pid, start);
        }
    }
}

/// Installs the handler that reaps everything on SIGINT / SIGTERM and exits.
pub fn install_signal_reaper() {
    tokio::spawn(async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        eprintln!("bench: interrupted; killing every process it started");
        reap_all();
        final_sweep();
        for d in DIRS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = std::fs::remove_dir_all(d);
        }
        std::process::exit(130);
    });
}

/// Human bytes per second.
pub fn mbps(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        0.0
    } else {
        bytes as f64 / secs / 1e6
    }
}
