//! Where the configuration comes from: `--config`, else `$HERD_CONFIG`, else
//! `$XDG_CONFIG_HOME/herd/config.toml` (`~/.config/herd/config.toml`), else
//! `/etc/herd/config.toml`, else the embedded defaults. The first two must
//! exist when given; the others are used when present.

use super::{Config, ConfigError};
use std::path::{Path, PathBuf};

/// The system-wide file.
pub const SYSTEM_FILE: &str = "/etc/herd/config.toml";

/// The file found and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The file, or `None` for the embedded defaults.
    pub path: Option<PathBuf>,
    /// How it was found: `--config`, `$HERD_CONFIG`, `$XDG_CONFIG_HOME`,
    /// `/etc`, or `embedded defaults`.
    pub how: &'static str,
}

impl Found {
    /// `file /x/y.toml (from $HERD_CONFIG)` or `embedded defaults`.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("{} (from {})", p.display(), self.how),
            None => self.how.to_string(),
        }
    }
}

/// The user's config file under the XDG base directory.
fn user_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("herd").join("config.toml"))
}

/// Finds the config file in the documented order.
pub fn find(explicit: Option<&Path>) -> Result<Found, ConfigError> {
    let must_exist = |p: PathBuf, how: &'static str| {
        if p.exists() {
            Ok(Found { path: Some(p), how })
        } else {
            Err(ConfigError::Read {
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no such file (given by {how})"),
                ),
                path: p,
            })
        }
    };
    if let Some(p) = explicit {
        return must_exist(p.to_path_buf(), "--config");
    }
    if let Some(p) = std::env::var_os("HERD_CONFIG").filter(|v| !v.is_empty()) {
        return must_exist(PathBuf::from(p), "$HERD_CONFIG");
    }
    if let Some(p) = user_file().filter(|p| p.exists()) {
        return Ok(Found {
            path: Some(p),
            how: "$XDG_CONFIG_HOME",
        });
    }
    let system = PathBuf::from(SYSTEM_FILE);
    if system.exists() {
        return Ok(Found {
            path: Some(system),
            how: "/etc",
        });
    }
    Ok(Found {
        path: None,
        how: "embedded defaults",
    })
}

impl Config {
    /// Finds (see [`find`]) and loads the configuration.
    pub fn discover(explicit: Option<&Path>) -> Result<(Self, Found), ConfigError> {
        let found = find(explicit)?;
        let cfg = Self::load(found.path.as_deref())?;
        Ok((cfg, found))
    }
}
