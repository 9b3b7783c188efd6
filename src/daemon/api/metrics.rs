//! `GET /metrics`: Prometheus text exposition format (version 0.0.4).
//!
//! Per-session series carry the labels `id`, `name`, `task` and `project`
//! (absent values are empty strings, which Prometheus treats as no label);
//! only `herd_session_info` adds `state`. A label that changes starts a new
//! series, so a counter labelled with the state would restart from zero at
//! every transition and break `rate()`; join on `id` to get the state.
//! Daemon-wide series describe the registry and the daemon process.

use super::stats::{self, Stats};
use super::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use herd_actors::{SessionInfo, SessionState};
use std::fmt::Write;

/// Content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "daemon",
    summary = "Prometheus metrics: per-session series and daemon-wide gauges",
    responses((
        status = 200,
        description = "Prometheus text exposition format 0.0.4",
        content_type = "text/plain; version=0.0.4; charset=utf-8",
        body = String
    ))
)]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let sessions = stats::all_sessions(&app);
    let figures = stats::gather(&app, &sessions);
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render(&figures, &sessions),
    )
}

/// A sample value: integers print exactly, floats in Prometheus' spelling.
#[derive(Debug, Clone, Copy)]
pub enum Num {
    /// A whole number.
    Int(u64),
    /// A float (NaN and infinities allowed).
    Float(f64),
}

impl From<u64> for Num {
    fn from(v: u64) -> Self {
        Num::Int(v)
    }
}

impl From<usize> for Num {
    fn from(v: usize) -> Self {
        Num::Int(v as u64)
    }
}

impl From<u32> for Num {
    fn from(v: u32) -> Self {
        Num::Int(v.into())
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Self {
        Num::Float(v)
    }
}

impl From<f32> for Num {
    fn from(v: f32) -> Self {
        Num::Float(v.into())
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Num::Int(v) => write!(f, "{v}"),
            Num::Float(v) if v.is_nan() => f.write_str("NaN"),
            Num::Float(v) if v == f64::INFINITY => f.write_str("+Inf"),
            Num::Float(v) if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            Num::Float(v) => write!(f, "{v}"),
        }
    }
}

/// Text exposition being written: one family (HELP, TYPE, samples) at a time.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family; its samples must follow before the next family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Num>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", value.into());
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// HELP text: backslash and line feed are escaped.
pub fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values: backslash, double quote and line feed are escaped.
pub fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A per-session family: one sample per session.
struct SessionFamily {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&SessionInfo) -> Num,
}

/// The one per-session family labelled with the state.
const INFO: &str = "herd_session_info";

const SESSION_FAMILIES: &[SessionFamily] = &[
    SessionFamily {
        name: INFO,
        kind: "gauge",
        help: "Always 1: one series per session, with its labels and its state.",
        value: |_| Num::Int(1),
    },
    SessionFamily {
        name: "herd_session_generation",
        kind: "gauge",
        help: "Which child the session runs: 0 for the first, +1 per restart.",
        value: |s| s.generation.into(),
    },
    SessionFamily {
        name: "herd_session_restarts_total",
        kind: "counter",
        help: "Restarts of the session's child.",
        value: |s| s.restarts.into(),
    },
    SessionFamily {
        name: "herd_session_errors_total",
        kind: "counter",
        help: "Spawn errors, abnormal exits and actor failures of the session.",
        value: |s| s.metrics.errors.into(),
    },
    SessionFamily {
        name: "herd_session_bytes_in_total",
        kind: "counter",
        help: "Bytes written to the session's child.",
        value: |s| s.metrics.bytes_in.into(),
    },
    SessionFamily {
        name: "herd_session_bytes_out_total",
        kind: "counter",
        help: "Bytes the session's child wrote.",
        value: |s| s.metrics.bytes_out.into(),
    },
    SessionFamily {
        name: "herd_session_inputs_total",
        kind: "counter",
        help: "Input requests delivered to the session.",
        value: |s| s.metrics.inputs.into(),
    },
    SessionFamily {
        name: "herd_session_cpu_percent",
        kind: "gauge",
        help: "CPU of the child's process tree, in percent of one core.",
        value: |s| s.metrics.cpu_percent.into(),
    },
    SessionFamily {
        name: "herd_session_resident_memory_bytes",
        kind: "gauge",
        help: "Resident memory of the child's process tree.",
        value: |s| s.metrics.rss_bytes.into(),
    },
    SessionFamily {
        name: "herd_session_input_tokens_total",
        kind: "counter",
        help: "Input tokens of the session's answered messages (Claude; not from the cache).",
        value: |s| s.usage.input_tokens.into(),
    },
    SessionFamily {
        name: "herd_session_output_tokens_total",
        kind: "counter",
        help: "Output tokens of the session's answered messages (Claude).",
        value: |s| s.usage.output_tokens.into(),
    },
    SessionFamily {
        name: "herd_session_cache_creation_tokens_total",
        kind: "counter",
        help: "Input tokens written to the prompt cache (Claude).",
        value: |s| s.usage.cache_creation_input_tokens.into(),
    },
    SessionFamily {
        name: "herd_session_cache_read_tokens_total",
        kind: "counter",
        help: "Input tokens read from the prompt cache (Claude).",
        value: |s| s.usage.cache_read_input_tokens.into(),
    },
    SessionFamily {
        name: "herd_session_cost_usd_total",
        kind: "counter",
        help: "US dollars of the session's answered messages (from [prices]).",
        value: |s| s.cost_usd.into(),
    },
    SessionFamily {
        name: "herd_session_processes",
        kind: "gauge",
        help: "Processes in the child's tree at the last sample.",
        value: |s| s.metrics.processes.into(),
    },
];

/// The whole exposition for these figures and sessions.
pub fn render(stats: &Stats, sessions: &[SessionInfo]) -> String {
    let mut e = Exposition::default();
    e.family(
        "herd_build_info",
        "gauge",
        "Always 1, labelled with the version.",
    );
    e.sample("herd_build_info", &[("version", &stats.version)], 1u64);
    e.family(
        "herd_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    e.sample("herd_uptime_seconds", &[], stats.uptime_seconds);
    e.family("herd_sessions", "gauge", "Sessions in the table, by state.");
    for state in SessionState::ALL {
        let n = stats
            .sessions
            .by_state
            .get(state.as_str())
            .copied()
            .unwrap_or(0);
        e.sample("herd_sessions", &[("state", state.as_str())], n);
    }
    e.family(
        "herd_sessions_live",
        "gauge",
        "Sessions not in a final state.",
    );
    e.sample("herd_sessions_live", &[], stats.sessions.live);
    e.family(
        "herd_sessions_max",
        "gauge",
        "Live sessions accepted at once (limits.max_sessions).",
    );
    e.sample("herd_sessions_max", &[], stats.sessions.max_sessions);
    let f = &stats.fleet;
    e.family(
        "herd_fleet_busy",
        "gauge",
        "Claude sessions holding a delivery slot (answering) now.",
    );
    e.sample("herd_fleet_busy", &[], f.busy);
    e.family(
        "herd_fleet_max_busy",
        "gauge",
        "Claude sessions that may answer at once (claude.max_busy; 0: no cap).",
    );
    e.sample("herd_fleet_max_busy", &[], f.max_busy);
    e.family(
        "herd_fleet_waiting",
        "gauge",
        "Sessions whose next prompt waits for a slot or for a rate-limit pause to end.",
    );
    e.sample("herd_fleet_waiting", &[], f.waiting);
    e.family(
        "herd_fleet_rate_limit_pause_seconds",
        "gauge",
        "Seconds left of a fleet-wide rate-limit pause (0: none).",
    );
    let left = f
        .paused_until
        .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    e.sample("herd_fleet_rate_limit_pause_seconds", &[], Num::Float(left));
    let d = &stats.daemon;
    if let Some(rss) = d.rss_bytes {
        e.family(
            "herd_daemon_resident_memory_bytes",
            "gauge",
            "Resident memory of the daemon process.",
        );
        e.sample("herd_daemon_resident_memory_bytes", &[], rss);
    }
    if let Some(cpu) = d.cpu_seconds {
        e.family(
            "herd_daemon_cpu_seconds_total",
            "counter",
            "User and system CPU time of the daemon process.",
        );
        e.sample("herd_daemon_cpu_seconds_total", &[], cpu);
    }
    if let Some(threads) = d.threads {
        e.family(
            "herd_daemon_threads",
            "gauge",
            "Threads of the daemon process.",
        );
        e.sample("herd_daemon_threads", &[], threads);
    }
    for f in SESSION_FAMILIES {
        e.family(f.name, f.kind, f.help);
        for s in sessions {
            let id = s.id.to_string();
            let mut labels = vec![
                ("id", id.as_str()),
                ("name", s.name.as_deref().unwrap_or("")),
                ("task", s.task_id.as_deref().unwrap_or("")),
                ("project", s.project_id.as_deref().unwrap_or("")),
            ];
            if f.name == INFO {
                labels.push(("state", s.state.as_str()));
            }
            e.sample(f.name, &labels, (f.value)(s));
        }
    }
    e.family(
        "herd_session_waiting",
        "gauge",
        "1 for each session waiting for a person, labelled with why (permission, question, login, error, other) and the tool.",
    );
    for s in sessions {
        if let Some(w) = &s.waiting {
            let id = s.id.to_string();
            let labels = [
                ("id", id.as_str()),
                ("name", s.name.as_deref().unwrap_or("")),
                ("reason", w.reason.as_str()),
                ("tool", w.tool.as_deref().unwrap_or("")),
            ];
            e.sample("herd_session_waiting", &labels, 1u64);
        }
    }
    e.family(
        "herd_session_failed_turn",
        "gauge",
        "1 for each session whose last turn failed, labelled with the failure (not_logged_in, rate_limited, ...).",
    );
    for s in sessions {
        if let Some(f) = &s.error {
            let id = s.id.to_string();
            let labels = [("id", id.as_str()), ("kind", f.kind())];
            e.sample("herd_session_failed_turn", &labels, 1u64);
        }
    }
    budgets(&mut e, &stats.budgets);
    e.finish()
}

/// Spend and limits of tasks and projects (sessions have their own families).
fn budgets(e: &mut Exposition, statuses: &[herd_actors::BudgetStatus]) {
    use herd_actors::Scope;
    let groups: Vec<(&str, &str, &herd_actors::BudgetStatus)> = statuses
        .iter()
        .filter_map(|b| match &b.scope {
            Scope::Session { .. } => None,
            Scope::Task { task } => Some(("task", task.as_str(), b)),
            Scope::Project { project } => Some(("project", project.as_str(), b)),
        })
        .collect();
    e.family(
        "herd_budget_spent_tokens",
        "gauge",
        "Tokens spent by a task's or a project's sessions.",
    );
    for (scope, name, b) in &groups {
        e.sample(
            "herd_budget_spent_tokens",
            &[("scope", scope), ("name", name)],
            b.spent.tokens,
        );
    }
    e.family(
        "herd_budget_spent_usd",
        "gauge",
        "US dollars spent by a task's or a project's sessions.",
    );
    for (scope, name, b) in &groups {
        e.sample(
            "herd_budget_spent_usd",
            &[("scope", scope), ("name", name)],
            b.spent.cost_usd,
        );
    }
    e.family(
        "herd_budget_limit_tokens",
        "gauge",
        "The token budget of a task or a project.",
    );
    for (scope, name, b) in &groups {
        if let Some(t) = b.budget.as_ref().and_then(|b| b.tokens) {
            e.sample(
                "herd_budget_limit_tokens",
                &[("scope", scope), ("name", name)],
                t,
            );
        }
    }
    e.family(
        "herd_budget_limit_usd",
        "gauge",
        "The cost budget of a task or a project, in US dollars.",
    );
    for (scope, name, b) in &groups {
        if let Some(c) = b.budget.as_ref().and_then(|b| b.cost_usd) {
            e.sample(
                "herd_budget_limit_usd",
                &[("scope", scope), ("name", name)],
                c,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_help_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
        let mut e = Exposition::default();
        e.family("m", "gauge", "help");
        e.sample("m", &[("a", "1\"2"), ("b", "")], 1.5f64);
        e.sample("m", &[], f64::NAN);
        e.sample("m", &[], f64::INFINITY);
        e.sample("m", &[], u64::MAX);
        assert_eq!(
            e.finish(),
            "# HELP m help\n# TYPE m gauge\nm{a=\"1\\\"2\",b=\"\"} 1.5\nm NaN\nm +Inf\nm 18446744073709551615\n"
        );
    }

    #[test]
    fn families_are_contiguous_and_typed() {
        let stats = Stats {
            version: "0.1.0".into(),
            uptime_seconds: 3.5,
            sessions: super::super::stats::SessionCounts {
                total: 0,
                live: 0,
                max_sessions: 10,
                by_state: Default::default(),
            },
            totals: Default::default(),
            daemon: super::super::stats::DaemonProcess::read(1.0),
            budgets: vec![],
            fleet: Default::default(),
        };
        let text = render(&stats, &[]);
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(name.clone()), "{name} twice");
                current = name;
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "sample outside its family: {line}");
            }
        }
        assert!(text.contains("herd_sessions{state=\"waiting_input\"} 0\n"));
        assert!(text.contains("herd_sessions_max 10\n"));
        assert!(text.contains("herd_fleet_max_busy 0\n"), "{text}");
        assert!(
            text.contains("herd_fleet_rate_limit_pause_seconds 0"),
            "{text}"
        );
    }
}
