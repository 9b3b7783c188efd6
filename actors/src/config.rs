//! Session defaults (from the daemon's config) and per-session overrides.
//!
//! Every struct denies unknown fields so that a typo is an error that names
//! the key, never a silently ignored setting.

use crate::bytesize::ByteSize;
use crate::error::HerdError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When a child that exited is started again.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart after every exit, clean or not.
    Always,
    /// Restart after a non-zero exit code or a death by signal.
    #[default]
    OnFailure,
    /// Never restart: the session stops when its child exits.
    Never,
}

impl RestartPolicy {
    /// The name used in config files, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::OnFailure => "on-failure",
            Self::Never => "never",
        }
    }
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "on-failure" => Ok(Self::OnFailure),
            "never" => Ok(Self::Never),
            _ => Err(format!(
                "unknown restart policy {s:?}; expected always, on-failure or never"
            )),
        }
    }
}

/// Restart behaviour: `[restart]` in the config, overridable per session.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartConfig {
    /// always | on-failure | never.
    pub policy: RestartPolicy,
    /// Restarts allowed within `restart_window`; one more marks the session failed.
    pub max_restarts: u32,
    /// The sliding window over which restarts are counted.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "30s"))]
    #[serde(with = "humantime_serde")]
    pub restart_window: Duration,
    /// Delay before the first restart after a stable run.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "30s"))]
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// The delay doubles up to this ceiling.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "30s"))]
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// A child that ran this long without exiting resets the backoff.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "30s"))]
    #[serde(with = "humantime_serde")]
    pub backoff_reset_after: Duration,
}

impl Default for RestartConfig {
    fn default() -> Self {
        Self {
            policy: RestartPolicy::OnFailure,
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            backoff_reset_after: Duration::from_secs(60),
        }
    }
}

/// Per-session limits: `[limits]` in the config, overridable per session.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Live sessions the registry accepts at once (daemon-wide, not per session).
    pub max_sessions: usize,
    /// No input and no output this long stops the session ("0s" disables).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "30s"))]
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A session older than this is stopped ("0s" disables).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "30s"))]
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// RSS of the child's whole process tree above this is handled by the
    /// restart policy with reason `max_memory` (absent or 0: no limit).
    pub max_memory: Option<ByteSize>,
    /// Bytes of output kept per session for `output` and `logs`.
    pub output_buffer: ByteSize,
    /// No output for this long turns a busy session ready (generic programs).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "30s"))]
    #[serde(with = "humantime_serde")]
    pub quiet_after: Duration,
    /// Time between SIGTERM and SIGKILL when a session is stopped.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "30s"))]
    #[serde(with = "humantime_serde")]
    pub stop_grace: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_sessions: 10,
            idle_timeout: Duration::from_secs(30 * 60),
            max_duration: Duration::from_secs(4 * 3600),
            max_memory: None,
            output_buffer: ByteSize(1024 * 1024),
            quiet_after: Duration::from_millis(500),
            stop_grace: Duration::from_secs(5),
        }
    }
}

/// How often the child's process tree is sampled: `[metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Time between two samples of CPU and RSS. A session with no input, no
    /// output and under 1 % CPU since its last sample is sampled every 10th
    /// interval, then every 20th, then every 30th while it stays idle, until
    /// its next input or output, which brings a sample at once: so
    /// `max_memory` is checked every interval for a working session, and
    /// within 30 intervals (a minute at the default 2 s) for one that grows
    /// in silence. Samples fall on a grid of a quarter interval (at most a
    /// second) shared by every session, so they come up to that much late.
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            sample_interval: Duration::from_secs(2),
        }
    }
}

/// Everything a session inherits when its own spec does not say otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionDefaults {
    /// Restart behaviour.
    pub restart: RestartConfig,
    /// Limits.
    pub limits: LimitsConfig,
    /// Sampling.
    pub metrics: MetricsConfig,
    /// The fleet's delivery gate (max busy sessions, rate-limit pauses).
    #[serde(default)]
    pub fleet: crate::gate::FleetConfig,
    /// Token and cost budgets per session, task and project.
    #[serde(default)]
    pub budgets: crate::budget::BudgetConfig,
    /// Prices per model, for the cost of each turn.
    #[serde(default)]
    pub prices: crate::budget::Prices,
    /// Variables of the daemon's environment every session inherits beyond
    /// [`BASE_ENV`] (names, or prefixes ending in `*`).
    #[serde(default)]
    pub inherit_env: Vec<String>,
}

/// What every child gets of the daemon's environment: nothing else passes
/// unless `inherit_env` names it (so the daemon's secrets stay its own).
pub const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_*", "TERM", "TZ",
];

/// True if the variable `name` matches one of `patterns` (a name, or a
/// prefix ending in `*`).
pub fn env_matches(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == p,
    })
}

/// Checks `inherit_env` patterns: a variable name, or a prefix ending in `*`.
pub fn validate_env_patterns(field: &str, patterns: &[String]) -> Result<(), String> {
    for p in patterns {
        let name = p.strip_suffix('*').unwrap_or(p);
        if (name.is_empty() && p != "*")
            || name.contains(['=', '\0', '*'])
            || name.chars().any(char::is_whitespace)
        {
            return Err(format!(
                "{field}: {p:?} is not a variable name or a prefix ending in *"
            ));
        }
    }
    Ok(())
}

/// Per-session restart overrides: each field absent keeps the default.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartOverrides {
    /// See [`RestartConfig::policy`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RestartPolicy>,
    /// See [`RestartConfig::max_restarts`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// See [`RestartConfig::restart_window`].
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "30s"))]
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub restart_window: Option<Duration>,
    /// See [`RestartConfig::backoff_initial`].
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "30s"))]
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub backoff_initial: Option<Duration>,
    /// See [`RestartConfig::backoff_max`].
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "30s"))]
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub backoff_max: Option<Duration>,
    /// See [`RestartConfig::backoff_reset_after`].
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "30s"))]
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub backoff_reset_after: Option<Duration>,
}

impl RestartOverrides {
    /// The defaults with every present override applied.
    pub fn apply(&self, base: &RestartConfig) -> RestartConfig {
        RestartConfig {
            policy: self.policy.unwrap_or(base.policy),
            max_restarts: self.max_restarts.unwrap_or(base.max_restarts),
            restart_window: self.restart_window.unwrap_or(base.restart_window),
            backoff_initial: self.backoff_initial.unwrap_or(base.backoff_initial),
            backoff_max: self.backoff_max.unwrap_or(base.backoff_max),
            backoff_reset_after: self.backoff_reset_after.unwrap_or(base.backoff_reset_after),
        }
    }

    /// Replaces each field that `other` sets.
    pub fn merge(&mut self, other: &RestartOverrides) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            policy,
            max_restarts,
            restart_window,
            backoff_initial,
            backoff_max,
            backoff_reset_after
        );
    }
}

/// The bounds of every setting herd accepts, far inside what would overflow
/// a timer, and a floor on restart backoff that makes restart storms
/// impossible (at most 10 restarts a second once the backoff has doubled).
pub mod bounds {
    use std::time::Duration;

    /// A day.
    const DAY: Duration = Duration::from_secs(86_400);
    /// Longest duration any setting accepts.
    pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);
    /// Shortest `backoff_initial`.
    pub const MIN_BACKOFF: Duration = Duration::from_millis(10);
    /// Shortest `backoff_max`.
    pub const MIN_BACKOFF_MAX: Duration = Duration::from_millis(100);
    /// Longest backoff.
    pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
    /// Shortest `restart_window`.
    pub const MIN_WINDOW: Duration = Duration::from_secs(1);
    /// Longest `restart_window`.
    pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 86_400);
    /// Most restarts in a window.
    pub const MAX_RESTARTS: u32 = 10_000;
    /// Shortest `quiet_after` (shorter spins the quiet timer).
    pub const MIN_QUIET: Duration = Duration::from_millis(10);
    /// Longest `quiet_after` and `stop_grace`.
    pub const MAX_SHORT: Duration = Duration::from_secs(3600);
    /// Shortest enabled idle timeout or max duration.
    pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
    /// Smallest `max_memory`.
    pub const MIN_MEMORY: u64 = 1024 * 1024;
    /// Longest `backoff_reset_after`.
    pub const MAX_RESET: Duration = DAY;
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Checks a duration against `[min, max]` (0 also allowed with `zero_ok`).
fn within(
    field: &str,
    v: Duration,
    min: Duration,
    max: Duration,
    zero_ok: bool,
) -> Result<(), HerdError> {
    if zero_ok && v.is_zero() {
        return Ok(());
    }
    if v < min || v > max {
        let zero = if zero_ok { " (or 0s to disable)" } else { "" };
        return Err(HerdError::invalid(
            field,
            format!(
                "{:?} is out of range {}..={}{zero}",
                human(v),
                human(min),
                human(max)
            ),
        ));
    }
    Ok(())
}

impl RestartOverrides {
    /// Checks each field given against its bounds; `section` prefixes the
    /// field's name in the error (`restart.backoff_max`).
    pub fn validate(&self, section: &str) -> Result<(), HerdError> {
        use bounds::*;
        let f = |name: &str| format!("{section}.{name}");
        if let Some(n) = self.max_restarts {
            if n > MAX_RESTARTS {
                return Err(HerdError::invalid(
                    f("max_restarts"),
                    format!("{n} is more than {MAX_RESTARTS}"),
                ));
            }
        }
        if let Some(v) = self.restart_window {
            within(&f("restart_window"), v, MIN_WINDOW, MAX_WINDOW, false)?;
        }
        if let Some(v) = self.backoff_initial {
            within(&f("backoff_initial"), v, MIN_BACKOFF, MAX_BACKOFF, false)?;
        }
        if let Some(v) = self.backoff_max {
            within(&f("backoff_max"), v, MIN_BACKOFF_MAX, MAX_BACKOFF, false)?;
        }
        if let Some(v) = self.backoff_reset_after {
            within(
                &f("backoff_reset_after"),
                v,
                Duration::ZERO,
                MAX_RESET,
                false,
            )?;
        }
        Ok(())
    }
}

/// Checks that no duration of a config section can overflow a timer.
fn no_overflow(section: &str, fields: &[(&str, Duration)]) -> Result<(), HerdError> {
    for (name, v) in fields {
        within(
            &format!("{section}.{name}"),
            *v,
            Duration::ZERO,
            bounds::MAX_DURATION,
            false,
        )?;
    }
    Ok(())
}

impl RestartConfig {
    /// Checks the defaults of a config file: no duration can overflow, and
    /// the backoff values are in order. The floors that keep a session from
    /// a restart storm apply to per-session overrides (what API clients
    /// send); the operator's own defaults may be faster (benchmarks, tests).
    pub fn validate(&self, section: &str) -> Result<(), HerdError> {
        no_overflow(
            section,
            &[
                ("restart_window", self.restart_window),
                ("backoff_initial", self.backoff_initial),
                ("backoff_max", self.backoff_max),
                ("backoff_reset_after", self.backoff_reset_after),
            ],
        )?;
        self.check_backoff(section)
    }

    /// `backoff_max` must not be below `backoff_initial`.
    pub fn check_backoff(&self, section: &str) -> Result<(), HerdError> {
        if self.backoff_max < self.backoff_initial {
            return Err(HerdError::invalid(
                format!("{section}.backoff_max"),
                format!(
                    "{:?} is below backoff_initial {:?}",
                    human(self.backoff_max),
                    human(self.backoff_initial)
                ),
            ));
        }
        Ok(())
    }
}

impl LimitOverrides {
    /// Checks each field given against its bounds; `section` prefixes the
    /// field's name in the error (`limits.quiet_after`).
    pub fn validate(&self, section: &str) -> Result<(), HerdError> {
        use bounds::*;
        let f = |name: &str| format!("{section}.{name}");
        if let Some(v) = self.idle_timeout {
            within(&f("idle_timeout"), v, MIN_TIMEOUT, MAX_DURATION, true)?;
        }
        if let Some(v) = self.max_duration {
            within(&f("max_duration"), v, MIN_TIMEOUT, MAX_DURATION, true)?;
        }
        if let Some(v) = self.quiet_after {
            within(&f("quiet_after"), v, MIN_QUIET, MAX_SHORT, false)?;
        }
        if let Some(v) = self.stop_grace {
            within(&f("stop_grace"), v, Duration::ZERO, MAX_SHORT, false)?;
        }
        if let Some(m) = self.max_memory {
            if m.0 != 0 && m.0 < MIN_MEMORY {
                return Err(HerdError::invalid(
                    f("max_memory"),
                    format!("{m} is below 1MiB (0 or absent: no limit)"),
                ));
            }
        }
        Ok(())
    }
}

impl LimitsConfig {
    /// Checks the defaults of a config file: no duration can overflow.
    pub fn validate(&self, section: &str) -> Result<(), HerdError> {
        no_overflow(
            section,
            &[
                ("idle_timeout", self.idle_timeout),
                ("max_duration", self.max_duration),
                ("quiet_after", self.quiet_after),
                ("stop_grace", self.stop_grace),
            ],
        )
    }
}

/// Per-session limit overrides: each field absent keeps the default.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// See [`LimitsConfig::idle_timeout`].
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "30s"))]
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<Duration>,
    /// See [`LimitsConfig::max_duration`].
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "30s"))]
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_duration: Option<Duration>,
    /// See [`LimitsConfig::max_memory`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<ByteSize>,
    /// See [`LimitsConfig::quiet_after`].
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "30s"))]
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub quiet_after: Option<Duration>,
    /// See [`LimitsConfig::stop_grace`].
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "30s"))]
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_grace: Option<Duration>,
}

impl LimitOverrides {
    /// The defaults with every present override applied.
    pub fn apply(&self, base: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            max_sessions: base.max_sessions,
            idle_timeout: self.idle_timeout.unwrap_or(base.idle_timeout),
            max_duration: self.max_duration.unwrap_or(base.max_duration),
            max_memory: self.max_memory.or(base.max_memory),
            output_buffer: base.output_buffer,
            quiet_after: self.quiet_after.unwrap_or(base.quiet_after),
            stop_grace: self.stop_grace.unwrap_or(base.stop_grace),
        }
    }

    /// Replaces each field that `other` sets.
    pub fn merge(&mut self, other: &LimitOverrides) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            idle_timeout,
            max_duration,
            max_memory,
            quiet_after,
            stop_grace
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_only_what_they_set() {
        let base = RestartConfig::default();
        let o = RestartOverrides {
            policy: Some(RestartPolicy::Never),
            backoff_max: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let r = o.apply(&base);
        assert_eq!(r.policy, RestartPolicy::Never);
        assert_eq!(r.backoff_max, Duration::from_secs(1));
        assert_eq!(r.max_restarts, base.max_restarts);
    }

    #[test]
    fn unknown_override_field_is_named() {
        let err = serde_json::from_str::<RestartOverrides>(r#"{"polcy":"always"}"#).unwrap_err();
        assert!(err.to_string().contains("polcy"), "{err}");
        let err = serde_json::from_str::<LimitOverrides>(r#"{"idle_timeout":"soon"}"#).unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
    }
}
