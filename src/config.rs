//! The daemon's configuration: TOML with humantime durations.
//!
//! `config/default.toml` documents every key and is embedded in the binary;
//! a user file only needs the keys it changes. An unknown key or a bad value
//! is an error naming the key and the value.

pub mod cluster;
pub mod discover;
pub mod notify;
pub mod template;

use herd_actors::{ByteSize, LimitsConfig, MetricsConfig, RestartConfig, SessionDefaults};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The shipped, commented defaults.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Default address of the daemon.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7777";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[restart]`.
    pub restart: RestartConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[recording]`.
    pub recording: RecordingConfig,
    /// `[claude]`.
    pub claude: ClaudeConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[session]`.
    pub session: SessionConfig,
    /// `[budgets]`: token and cost budgets per session, task and project.
    pub budgets: herd_actors::BudgetConfig,
    /// `[prices."MODEL"]`: US dollars per million tokens.
    pub prices: herd_actors::Prices,
    /// `[[notify]]`: webhooks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<notify::NotifyTarget>,
    /// `[templates.NAME]`: named session templates (`herd new --template NAME`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<String, template::Template>,
    /// `[cluster]`: join a cluster through etcd; absent: this daemon alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<cluster::ClusterConfig>,
}

/// `[session]`: what every session gets beyond its own spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Variables of the daemon's environment passed to every session beyond
    /// the base allowlist (names, or prefixes ending in `*`).
    pub inherit_env: Vec<String>,
}

/// `[store]`: the SQLite store of sessions, events and messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Stopped and failed sessions are kept (for `ls --all`) this long.
    #[serde(with = "humantime_serde")]
    pub retention: std::time::Duration,
    /// At most this many stopped and failed sessions are kept (the most recent).
    pub keep_ended: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            retention: std::time::Duration::from_secs(7 * 24 * 3600),
            keep_ended: 1000,
        }
    }
}

/// `[server]`: where the daemon listens and keeps its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory; `$HERD_HOME`, else `~/.local/share/herd`, when absent.
    pub data_dir: Option<PathBuf>,
    /// API token; generated into `<data_dir>/token` when absent.
    pub token: Option<String>,
    /// Largest request body accepted.
    pub body_limit: ByteSize,
    /// Connections served at once (half as many more get one quick request each).
    pub max_connections: usize,
    /// Time a client has to send a request's headers; also how long a
    /// keep-alive connection may idle.
    #[serde(with = "humantime_serde")]
    pub header_timeout: std::time::Duration,
    /// Time a client has to send a request's body.
    #[serde(with = "humantime_serde")]
    pub body_timeout: std::time::Duration,
    /// PEM certificate chain: with `tls_key`, the daemon also speaks TLS
    /// (rustls) on its port, for browsers on other devices.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The address browsers use to reach the dashboard (`https://host:7777`),
    /// for the links of `herd open`; absent: the address the client used.
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7777))),
            data_dir: None,
            token: None,
            body_limit: ByteSize(1024 * 1024),
            max_connections: 512,
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(30),
            tls_cert: None,
            tls_key: None,
            public_url: None,
        }
    }
}

/// `[recording]`: asciicast recordings of every session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Record sessions.
    pub enabled: bool,
    /// zstd-compress recordings.
    pub compress: bool,
    /// Recordings older than this are deleted (their session must have ended).
    #[serde(with = "humantime_serde")]
    pub retention: std::time::Duration,
    /// Largest recording of one generation (uncompressed asciicast bytes);
    /// past it only the exit marker is written. 0: no limit.
    pub max_bytes: ByteSize,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            compress: false,
            retention: std::time::Duration::from_secs(7 * 24 * 3600),
            max_bytes: ByteSize(256 * 1024 * 1024),
        }
    }
}

/// `[claude]`: the Claude Code profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaudeConfig {
    /// The `claude` executable.
    pub binary: String,
    /// Model name passed with `--model`, when set.
    pub model: Option<String>,
    /// Permission mode passed with `--permission-mode`, when set.
    pub permission_mode: Option<String>,
    /// Extra environment for Claude sessions.
    pub env: BTreeMap<String, String>,
    /// Inject hooks that report each session's events to the daemon (the
    /// exact source of its state); off: the state is read from the screen.
    pub hooks: bool,
    /// Claude sessions answering at once, across the daemon (0: no cap);
    /// prompts wait in their queues, served by enqueue time.
    pub max_busy: usize,
    /// First fleet-wide pause after a rate limit that names no reset time;
    /// doubles at each rate limit in a row.
    #[serde(with = "humantime_serde")]
    pub rate_limit_backoff: std::time::Duration,
}

impl Default for ClaudeConfig {
    fn default() -> Self {
        Self {
            binary: "claude".into(),
            model: None,
            permission_mode: None,
            env: BTreeMap::new(),
            hooks: true,
            max_busy: 0,
            rate_limit_backoff: std::time::Duration::from_secs(30),
        }
    }
}

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid: the message names the key and the value.
    #[error("invalid config {origin}: {message}")]
    Invalid {
        /// The file, or "(embedded defaults)".
        origin: String,
        /// What is wrong, with the key and the value.
        message: String,
    },
}

impl Config {
    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.check().map_err(|message| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        })?;
        Ok(cfg)
    }

    /// Reads a file, or the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            None => Self::parse(DEFAULT_TOML, "(embedded defaults)"),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Self::parse(&text, &p.display().to_string())
            }
        }
    }

    /// Checks values that parse but make no sense.
    fn check(&self) -> Result<(), String> {
        let l = &self.limits;
        let r = &self.restart;
        if l.max_sessions == 0 {
            return Err("limits.max_sessions = 0: must be at least 1".into());
        }
        if l.output_buffer.0 < 1024 {
            return Err(format!(
                "limits.output_buffer = {}: must be at least 1KiB",
                l.output_buffer
            ));
        }
        if l.quiet_after.is_zero() {
            return Err("limits.quiet_after = \"0s\": must be positive".into());
        }
        r.validate("restart").map_err(|e| e.to_string())?;
        l.validate("limits").map_err(|e| e.to_string())?;
        herd_actors::validate_env_patterns("session.inherit_env", &self.session.inherit_env)?;
        if self.metrics.sample_interval.as_millis() < 50 {
            return Err(format!(
                "metrics.sample_interval = {:?}: must be at least 50ms",
                humantime::format_duration(self.metrics.sample_interval).to_string()
            ));
        }
        if self.server.body_limit.0 < 1024 {
            return Err(format!(
                "server.body_limit = {}: must be at least 1KiB",
                self.server.body_limit
            ));
        }
        if self.server.max_connections == 0 {
            return Err("server.max_connections = 0: must be at least 1".into());
        }
        for (key, v) in [
            ("server.header_timeout", self.server.header_timeout),
            ("server.body_timeout", self.server.body_timeout),
        ] {
            if v < std::time::Duration::from_millis(100) || v > std::time::Duration::from_secs(3600)
            {
                return Err(format!(
                    "{key} = {:?}: must be between 100ms and 1h",
                    humantime::format_duration(v).to_string()
                ));
            }
        }
        self.budgets.validate().map_err(|e| e.to_string())?;
        for (i, t) in self.notify.iter().enumerate() {
            t.check(i)?;
        }
        for (name, t) in &self.templates {
            t.check(name)?;
        }
        if let Some(c) = &self.cluster {
            c.check()?;
        }
        for (model, p) in &self.prices {
            let fields = [
                ("input", p.input),
                ("output", p.output),
                ("cache_write", p.cache_write),
                ("cache_read", p.cache_read),
            ];
            if let Some((k, v)) = fields.iter().find(|(_, v)| !v.is_finite() || *v < 0.0) {
                return Err(format!(
                    "prices.{model:?}.{k} = {v}: must be a non-negative price per million tokens"
                ));
            }
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(c), None) => {
                return Err(format!(
                    "server.tls_cert = {:?} without server.tls_key: give both, or neither",
                    c.display().to_string()
                ))
            }
            (None, Some(k)) => {
                return Err(format!(
                    "server.tls_key = {:?} without server.tls_cert: give both, or neither",
                    k.display().to_string()
                ))
            }
            _ => {}
        }
        if let Some(u) = &self.server.public_url {
            let ok = (u.starts_with("http://") || u.starts_with("https://"))
                && !u.contains(char::is_whitespace)
                && !u.contains(['?', '#']);
            if !ok {
                return Err(format!(
                    "server.public_url = {u:?}: expected an http:// or https:// address without query, such as \"https://herd.example:7777\""
                ));
            }
        }
        if let Some(t) = &self.server.token {
            if t.len() < 16 {
                return Err("server.token is too short: use at least 16 characters".into());
            }
        }
        Ok(())
    }

    /// What sessions inherit.
    pub fn session_defaults(&self) -> SessionDefaults {
        SessionDefaults {
            restart: self.restart.clone(),
            limits: self.limits.clone(),
            metrics: self.metrics.clone(),
            fleet: herd_actors::FleetConfig {
                max_busy: self.claude.max_busy,
                rate_limit_backoff: self.claude.rate_limit_backoff,
            },
            inherit_env: self.session.inherit_env.clone(),
            budgets: self.budgets.clone(),
            prices: self.prices.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_is_the_builtin_defaults() {
        let cfg = Config::load(None).unwrap();
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[limits]\nmax_sesions = 3\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_sesions"), "{err}");
        let err = Config::parse("[limitz]\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("limitz"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let err = Config::parse("[limits]\nidle_timeout = \"soonish\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("idle_timeout") && err.contains("soonish"),
            "{err}"
        );
        let err = Config::parse("[restart]\npolicy = \"sometimes\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("policy") && err.contains("sometimes"), "{err}");
        let err = Config::parse("[limits]\nmax_memory = \"2 parsecs\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_memory") && err.contains("parsecs"),
            "{err}"
        );
        let err = Config::parse("[limits]\nmax_sessions = 0\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.max_sessions = 0"), "{err}");
        let err = Config::parse("[server]\nlisten = \"nowhere\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen") && err.contains("nowhere"), "{err}");
    }

    #[test]
    fn tls_needs_cert_and_key_and_public_url_is_checked() {
        let err = Config::parse("[server]\ntls_cert = \"/c.pem\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.tls_cert") && err.contains("/c.pem"),
            "{err}"
        );
        let err = Config::parse("[server]\ntls_key = \"/k.pem\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.tls_key") && err.contains("/k.pem"),
            "{err}"
        );
        let err = Config::parse("[server]\npublic_url = \"herd.local\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.public_url") && err.contains("herd.local"),
            "{err}"
        );
        let cfg = Config::parse(
            "[server]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\npublic_url = \"https://h:7777\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(cfg.server.tls_key.as_deref(), Some(Path::new("/k.pem")));
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let cfg = Config::parse(
            "[limits]\nmax_sessions = 3\n[restart]\nbackoff_initial = \"0s\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(cfg.limits.max_sessions, 3);
        assert_eq!(
            cfg.limits.idle_timeout,
            LimitsConfig::default().idle_timeout
        );
        assert!(cfg.restart.backoff_initial.is_zero());
    }
}
