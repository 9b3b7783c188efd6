//! `herd stats`: daemon-wide figures.

use crate::client::http::Client;
use crate::daemon::api::stats::Stats;
use anyhow::{Context, Result};
use herd_actors::SessionState;
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

/// Runs `herd stats`.
pub async fn run(c: &Client, json: bool) -> Result<()> {
    let v: Value = c.json(Method::GET, "/v1/stats", None).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let stats: Stats = serde_json::from_value(v).context("reading the daemon's stats")?;
    print!("{}", render(&stats));
    Ok(())
}

/// Aligned `key  value` lines; states without sessions are left out.
pub fn render(s: &Stats) -> String {
    let n = &s.sessions;
    let t = &s.totals;
    let d = &s.daemon;
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut rows = vec![
        ("version".to_string(), s.version.clone()),
        ("pid".into(), d.pid.to_string()),
        (
            "uptime".into(),
            humantime::format_duration(Duration::from_secs(s.uptime_seconds as u64)).to_string(),
        ),
        (
            "sessions".into(),
            format!(
                "{} live (max {}), {} in total",
                n.live, n.max_sessions, n.total
            ),
        ),
    ];
    for state in SessionState::ALL {
        match n.by_state.get(state.as_str()) {
            Some(&count) if count > 0 => rows.push((format!("  {state}"), count.to_string())),
            _ => {}
        }
    }
    rows.extend([
        ("restarts".into(), t.restarts.to_string()),
        ("errors".into(), t.errors.to_string()),
        (
            "bytes in/out".into(),
            format!("{} / {}", t.bytes_in, t.bytes_out),
        ),
        ("inputs".into(), t.inputs.to_string()),
        (
            "tokens in/out".into(),
            format!("{} / {}", t.usage.input_tokens, t.usage.output_tokens),
        ),
        (
            "cache tokens".into(),
            format!(
                "{} written / {} read",
                t.usage.cache_creation_input_tokens, t.usage.cache_read_input_tokens
            ),
        ),
        ("cost".into(), format!("${:.4}", t.cost_usd)),
        ("sessions rss".into(), human_bytes(t.rss_bytes)),
        ("sessions cpu".into(), format!("{:.1}%", t.cpu_percent)),
        ("daemon rss".into(), or_dash(d.rss_bytes.map(human_bytes))),
        (
            "daemon cpu".into(),
            match (d.cpu_percent, d.cpu_seconds) {
                (Some(p), Some(secs)) => format!("{p:.1}% ({secs:.2}s in total)"),
                _ => "-".into(),
            },
        ),
        (
            "daemon threads".into(),
            or_dash(d.threads.map(|n| n.to_string())),
        ),
    ]);
    for b in s.budgets.iter().filter(|b| b.budget.is_some()) {
        let limit = b.budget.as_ref().map_or(String::new(), |l| {
            let mut parts = vec![];
            if let Some(t) = l.tokens {
                parts.push(format!("{t} tokens"));
            }
            if let Some(c) = l.cost_usd {
                parts.push(format!("${c:.2}"));
            }
            parts.join(", ")
        });
        rows.push((
            format!("budget {}", b.scope),
            format!(
                "{} tokens, ${:.4} of {limit}",
                b.spent.tokens, b.spent.cost_usd
            ),
        ));
    }
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}  {v}\n"))
        .collect()
}

/// `512B`, `1.5KiB`, `23.1MiB`, `2.0GiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    UNITS
        .iter()
        .find(|(_, size)| n >= *size)
        .map(|(unit, size)| format!("{:.1}{unit}", n as f64 / *size as f64))
        .unwrap_or_else(|| format!("{n}B"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::api::stats::{DaemonProcess, SessionCounts, Totals};

    #[test]
    fn human_stats_show_live_states_and_the_daemon() {
        let mut by_state: std::collections::BTreeMap<String, usize> = SessionState::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        by_state.insert("ready".into(), 2);
        by_state.insert("stopped".into(), 1);
        let s = Stats {
            version: "0.1.0".into(),
            uptime_seconds: 3725.4,
            sessions: SessionCounts {
                total: 3,
                live: 2,
                max_sessions: 10,
                by_state,
            },
            totals: Totals {
                restarts: 4,
                bytes_in: 10,
                bytes_out: 2048,
                ..Default::default()
            },
            daemon: DaemonProcess {
                pid: 42,
                rss_bytes: Some(8 * 1024 * 1024),
                cpu_seconds: Some(1.5),
                cpu_percent: Some(0.34),
                threads: None,
            },
            budgets: vec![],
            fleet: Default::default(),
        };
        let text = render(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"uptime          1h 2m 5s"), "{text}");
        assert!(lines.contains(&"sessions        2 live (max 10), 3 in total"));
        assert!(lines.contains(&"  ready         2"));
        assert!(lines.contains(&"  stopped       1"));
        assert!(!text.contains("busy"), "{text}");
        assert!(lines.contains(&"bytes in/out    10 / 2048"));
        assert!(lines.contains(&"daemon rss      8.0MiB"), "{text}");
        assert!(lines.contains(&"sessions rss    0B"), "{text}");
        assert_eq!(human_bytes(1536), "1.5KiB");
        assert_eq!(human_bytes(24_228_000), "23.1MiB");
        assert!(lines.contains(&"daemon cpu      0.3% (1.50s in total)"));
        assert!(lines.contains(&"daemon threads  -"));
    }
}
