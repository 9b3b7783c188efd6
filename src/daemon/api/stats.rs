//! Daemon-wide figures: `GET /v1/stats` (JSON); `/metrics` reads the same.

use super::AppState;
use axum::extract::State;
use axum::Json;
use herd_actors::{ListFilter, SessionInfo, SessionState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;
use utoipa::ToSchema;

/// Daemon-wide figures at one moment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// herd version.
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime_seconds: f64,
    /// Sessions by state.
    pub sessions: SessionCounts,
    /// Sums over every session in the table (live and ended).
    pub totals: Totals,
    /// The daemon process itself.
    pub daemon: DaemonProcess,
    /// Spend of every session, task and project since the daemon started
    /// (restored sessions included), with the budget that applies.
    #[serde(default)]
    pub budgets: Vec<herd_actors::BudgetStatus>,
    /// The fleet's delivery gate: `max_busy`, slots held, waiters, and a
    /// rate-limit pause while one lasts.
    #[serde(default)]
    pub fleet: herd_actors::FleetStatus,
}

/// How many sessions there are, by state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionCounts {
    /// Sessions in the table, in any state.
    pub total: usize,
    /// Sessions not in a final state (what `max_sessions` limits).
    pub live: usize,
    /// Live sessions accepted at once (`limits.max_sessions`).
    pub max_sessions: usize,
    /// Every state, each with its count (zeros included).
    pub by_state: BTreeMap<String, usize>,
}

/// Sums of the per-session counters and samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    /// Restarts of children.
    pub restarts: u64,
    /// Spawn errors, abnormal exits, actor failures.
    pub errors: u64,
    /// Bytes written to children.
    pub bytes_in: u64,
    /// Bytes children wrote.
    pub bytes_out: u64,
    /// Input requests delivered.
    pub inputs: u64,
    /// Resident memory of every child process tree (last samples).
    pub rss_bytes: u64,
    /// CPU of every child process tree, in percent of one core (last samples).
    pub cpu_percent: f64,
    /// Tokens used by answered messages (Claude sessions).
    #[serde(default)]
    pub usage: herd_actors::Usage,
    /// What answered messages cost, in US dollars (from `[prices]`).
    #[serde(default)]
    pub cost_usd: f64,
}

/// The daemon's own process (Linux `/proc/self`; null where unreadable).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DaemonProcess {
    /// Process id.
    pub pid: u32,
    /// Resident memory.
    pub rss_bytes: Option<u64>,
    /// User + system CPU time since start.
    pub cpu_seconds: Option<f64>,
    /// CPU in percent of one core: over the last second or more between two
    /// reads, or the average since start at the first read.
    pub cpu_percent: Option<f64>,
    /// Threads.
    pub threads: Option<u64>,
}

/// Every session in the table, including stopped and failed ones.
pub fn all_sessions(app: &AppState) -> Vec<SessionInfo> {
    app.registry.list(&ListFilter {
        all: true,
        ..Default::default()
    })
}

/// The figures for these sessions.
pub fn gather(app: &AppState, sessions: &[SessionInfo]) -> Stats {
    let mut by_state: BTreeMap<String, usize> = SessionState::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    let mut totals = Totals::default();
    for s in sessions {
        *by_state.entry(s.state.as_str().to_string()).or_default() += 1;
        let m = &s.metrics;
        totals.restarts += s.restarts;
        totals.errors += m.errors;
        totals.bytes_in += m.bytes_in;
        totals.bytes_out += m.bytes_out;
        totals.inputs += m.inputs;
        totals.usage.add(&s.usage);
        totals.cost_usd += s.cost_usd;
        if !s.state.is_final() {
            totals.rss_bytes += m.rss_bytes;
            totals.cpu_percent += f64::from(m.cpu_percent);
        }
    }
    let uptime = app.started.elapsed().as_secs_f64();
    Stats {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: uptime,
        sessions: SessionCounts {
            total: sessions.len(),
            live: sessions.iter().filter(|s| !s.state.is_final()).count(),
            max_sessions: app.registry.defaults().limits.max_sessions,
            by_state,
        },
        totals,
        daemon: DaemonProcess::read(uptime),
        budgets: app.registry.budgets(),
        fleet: app.registry.fleet(),
    }
}

/// `GET /v1/stats`
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "daemon",
    summary = "Daemon-wide figures: sessions by state, totals, the daemon's RSS and CPU",
    responses((status = 200, description = "The figures now", body = Stats))
)]
pub async fn stats(State(app): State<AppState>) -> Json<Stats> {
    Json(gather(&app, &all_sessions(&app)))
}

/// The previous CPU reading, for [`DaemonProcess::cpu_percent`].
static LAST_CPU: Mutex<Option<CpuReading>> = Mutex::new(None);

#[derive(Clone, Copy)]
struct CpuReading {
    at: Instant,
    seconds: f64,
    percent: f64,
}

/// Readings shorter than this reuse the previous percentage (too noisy).
const MIN_CPU_INTERVAL: f64 = 1.0;

impl DaemonProcess {
    /// Reads `/proc/self/stat`; `uptime` (seconds) averages the first CPU reading.
    pub fn read(uptime: f64) -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| ProcStat::parse(&t));
        let cpu_seconds = stat.map(|s| s.cpu_seconds());
        let cpu_percent = cpu_seconds.map(|secs| cpu_percent(secs, uptime));
        Self {
            pid: std::process::id(),
            rss_bytes: stat.map(|s| s.rss_pages * page_size()),
            cpu_seconds,
            cpu_percent,
            threads: stat.map(|s| s.threads),
        }
    }
}

fn cpu_percent(seconds: f64, uptime: f64) -> f64 {
    let now = Instant::now();
    let mut last = LAST_CPU.lock().unwrap_or_else(|e| e.into_inner());
    let percent = match *last {
        Some(prev) => {
            let dt = now.duration_since(prev.at).as_secs_f64();
            if dt < MIN_CPU_INTERVAL {
                return prev.percent;
            }
            (seconds - prev.seconds).max(0.0) / dt * 100.0
        }
        None if uptime > 0.0 => seconds / uptime * 100.0,
        None => 0.0,
    };
    *last = Some(CpuReading {
        at: now,
        seconds,
        percent,
    });
    percent
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).unwrap_or(4096)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as f64
    } else {
        100.0
    }
}

/// The fields of `/proc/<pid>/stat` used here.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcStat {
    utime_ticks: u64,
    stime_ticks: u64,
    threads: u64,
    rss_pages: u64,
}

impl ProcStat {
    /// Parses the one line of `/proc/<pid>/stat`. The command name (field 2)
    /// is in parentheses and may hold spaces and parentheses: fields are
    /// counted after the last `)`.
    fn parse(text: &str) -> Option<Self> {
        let rest = &text[text.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // f[0] is field 3 (state): field N is f[N - 3].
        let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            utime_ticks: field(14)?,
            stime_ticks: field(15)?,
            threads: field(20)?,
            rss_pages: field(24)?,
        })
    }

    fn cpu_seconds(self) -> f64 {
        (self.utime_ticks + self.stime_ticks) as f64 / clock_ticks()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    150 50 0 0 20 0 7 0 123456 987654321 2500 18446744073709551615";
        let s = ProcStat::parse(line).unwrap();
        assert_eq!(
            s,
            ProcStat {
                utime_ticks: 150,
                stime_ticks: 50,
                threads: 7,
                rss_pages: 2500
            }
        );
        assert_eq!(ProcStat::parse("garbage"), None);
        assert_eq!(ProcStat::parse("1 (x) S 1 2"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let p = DaemonProcess::read(1.0);
        assert_eq!(p.pid, std::process::id());
        assert!(p.rss_bytes.unwrap() > 1024 * 1024, "{p:?}");
        assert!(p.threads.unwrap() >= 1);
        assert!(p.cpu_seconds.unwrap() >= 0.0);
        assert!(p.cpu_percent.unwrap() >= 0.0);
    }
}
