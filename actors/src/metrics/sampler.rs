//! CPU and memory of a process tree, read from `/proc/<pid>/stat` alone.
//!
//! One read per process (the root's file kept open and read again in
//! place), plus its children list: no `/proc/stat`, no `statm`, no
//! `status`, no per-process bookkeeping beyond the last CPU times. At 4,000
//! sessions this is what the daemon does when nothing happens.

use super::Sample;
use crate::process::{self, Pid};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Instant;

/// What one `/proc/<pid>/stat` says that a sample needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// utime + stime, in clock ticks.
    pub(crate) ticks: u64,
    /// Resident pages.
    pub(crate) rss_pages: u64,
    /// Threads of the process.
    pub(crate) threads: u64,
    /// When it started, in clock ticks since boot: tells a reused pid apart.
    pub(crate) start: u64,
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    // Field 3 (state) is the first after the name.
    let mut f = rest.split_ascii_whitespace();
    let mut nth = |skip: usize| -> Option<u64> { f.nth(skip)?.parse().ok() };
    let utime = nth(11)?; // field 14
    let stime = nth(0)?; // 15
    let threads = nth(4)?; // 20
    let start = nth(1)?; // 22
    let rss_pages = nth(1)?; // 24
    Some(Stat {
        ticks: utime + stime,
        rss_pages,
        threads,
        start,
    })
}

fn sysconf(name: libc::c_int, fallback: u64) -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 {
        v as u64
    } else {
        fallback
    }
}

/// Samples one session's tree; keeps the CPU times of the last sample to
/// turn them into a rate.
#[derive(Debug)]
pub(crate) struct Sampler {
    /// The root and its stat file, open for as long as it is the root.
    root: Option<(Pid, File)>,
    /// CPU ticks per process (by pid and start time) at the last sample.
    last: HashMap<(Pid, u64), u64>,
    at: Option<Instant>,
    ticks_per_sec: f64,
    page: u64,
}

impl Sampler {
    pub(crate) fn new() -> Self {
        Self {
            root: None,
            last: HashMap::new(),
            at: None,
            ticks_per_sec: sysconf(libc::_SC_CLK_TCK, 100) as f64,
            page: sysconf(libc::_SC_PAGESIZE, 4096),
        }
    }

    /// Forgets the last sample (a new child, or none).
    pub(crate) fn reset(&mut self) {
        self.root = None;
        self.last = HashMap::new();
        self.at = None;
    }

    /// Samples the tree rooted at `root`. CPU is the rate since the last
    /// sample of the same processes (0 for processes seen the first time,
    /// and for the first sample of a root).
    pub(crate) fn sample(&mut self, root: Pid) -> Sample {
        if self.root.as_ref().is_none_or(|(p, _)| *p != root) {
            self.reset();
            self.root = File::open(format!("/proc/{root}/stat"))
                .ok()
                .map(|f| (root, f));
        }
        let now = Instant::now();
        let mut seen: HashMap<(Pid, u64), u64> = HashMap::with_capacity(self.last.len().max(1));
        let mut s = Sample::default();
        let mut ticks = 0u64;
        let mut queue = vec![root];
        let mut i = 0;
        // Bounded, in case of a pid cycle from reuse during the walk.
        while i < queue.len() && queue.len() < 100_000 {
            let pid = queue[i];
            i += 1;
            let Some(stat) = self.stat(pid) else {
                continue;
            };
            let key = (pid, stat.start);
            if seen.insert(key, stat.ticks).is_some() {
                continue;
            }
            if let Some(before) = self.last.get(&key) {
                ticks += stat.ticks.saturating_sub(*before);
            }
            s.rss_bytes += stat.rss_pages * self.page;
            s.processes += 1;
            let kids = if stat.threads == 1 {
                // One thread: its children file is the only one.
                std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                    .map(|t| {
                        t.split_ascii_whitespace()
                            .filter_map(|p| p.parse::<Pid>().ok())
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                process::children(pid)
            };
            queue.extend(kids.into_iter().filter(|k| *k > 0));
        }
        if let Some(at) = self.at {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                s.cpu_percent = (ticks as f64 / self.ticks_per_sec / secs * 100.0) as f32;
            }
        }
        self.last = seen;
        self.at = Some(now);
        s
    }

    /// The stat of `pid`: the root's from its open file, others' opened now.
    fn stat(&self, pid: Pid) -> Option<Stat> {
        let mut buf = [0u8; 1024];
        let n = match &self.root {
            Some((p, f)) if *p == pid => f.read_at(&mut buf, 0).ok()?,
            _ => {
                use std::io::Read;
                File::open(format!("/proc/{pid}/stat"))
                    .ok()?
                    .read(&mut buf)
                    .ok()?
            }
        };
        parse_stat(std::str::from_utf8(buf.get(..n)?).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // A name with spaces and a `)` of its own, as a program may choose.
        let line = "4242 (we) ird (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    17 5 0 0 20 0 3 0 123456 10000000 250 18446744073709551615 \
                    1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ticks: 22,
                rss_pages: 250,
                threads: 3,
                start: 123456,
            })
        );
        assert_eq!(parse_stat("4242 (sh"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn the_daemon_itself_is_sampled_with_its_memory_and_cpu() {
        let me = std::process::id() as Pid;
        let mut s = Sampler::new();
        let first = s.sample(me);
        assert_eq!(first.cpu_percent, 0.0, "no rate without an earlier sample");
        assert!(first.processes >= 1);
        // Burn CPU until a tick is counted (a deadline, not a fixed sleep).
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let mut x = 0u64;
        let busy = loop {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            let s2 = s.sample(me);
            if s2.cpu_percent > 0.0 || Instant::now() > deadline {
                break s2;
            }
        };
        std::hint::black_box(x);
        assert!(busy.cpu_percent > 0.0, "{busy:?}");
        assert!(busy.rss_bytes > 1024 * 1024, "{busy:?}");
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let rss_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS");
        // Both read the same counter; the test's own growth in between is small.
        let diff = (busy.rss_bytes as i64 - rss_kb as i64 * 1024).abs();
        assert!(
            diff < 16 * 1024 * 1024,
            "{busy:?} against VmRSS {rss_kb} kB"
        );
    }
}
