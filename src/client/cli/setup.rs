//! Setting herd up: shell completions and the man page (generated from the
//! command line's own definition, never written by hand), and `herd config`.

use crate::config::{discover, Config};
use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `herd config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration, each value with where it came from.
    Show {
        /// Config file (else the same search as `herd serve`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print `{"key": {"value": ..., "origin": ...}}`.
        #[arg(long)]
        json: bool,
    },
    /// Check a config file: unknown keys and bad values are named; exit 0 when valid.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// `herd completions SHELL`.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = super::command();
    clap_complete::generate(shell, &mut cmd, "herd", &mut std::io::stdout());
    Ok(())
}

/// `herd man`: the roff man page, on stdout.
pub fn man() -> Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(super::command())
        .render(&mut out)
        .context("rendering the man page")?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .context("writing the man page")
}

/// `herd config show|check`.
pub fn config(c: ConfigCommand, data_dir: Option<&Path>) -> Result<()> {
    match c {
        ConfigCommand::Check { file } => {
            Config::load(Some(&file))?;
            println!("{}: valid", file.display());
            Ok(())
        }
        ConfigCommand::Show { config, json } => {
            let (cfg, found) = Config::discover(config.as_deref())?;
            let rows = effective(&cfg, &found, data_dir)?;
            if json {
                let map: BTreeMap<&str, Value> = rows
                    .iter()
                    .map(|(k, v, o)| (k.as_str(), serde_json::json!({"value": v, "origin": o})))
                    .collect();
                return super::print_json(&map);
            }
            println!("# config: {}", found.describe());
            let w = rows
                .iter()
                .map(|(k, v, _)| k.len() + v.len() + 3)
                .max()
                .unwrap_or(0);
            for (k, v, origin) in rows {
                let line = format!("{k} = {v}");
                println!("{line:<w$}  # {origin}");
            }
            Ok(())
        }
    }
}

/// Whether a key holds a secret: its value is never printed.
fn is_secret(key: &str) -> bool {
    key == "server.token"
        || key.starts_with("claude.env.")
        // A template's environment may carry a token like [claude] env does.
        || (key.starts_with("templates.") && key.contains(".env."))
        || ["token", "secret", "api_key", "password"]
            .iter()
            .any(|s| key.rsplit('.').next().is_some_and(|last| last.contains(s)))
}

/// Every key of the effective config as `(dotted key, TOML value, origin)`.
fn effective(
    cfg: &Config,
    found: &discover::Found,
    data_dir: Option<&Path>,
) -> Result<Vec<(String, String, String)>> {
    let eff = toml::Table::try_from(cfg).context("rendering the configuration")?;
    let user: toml::Table = match &found.path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => toml::Table::new(),
    };
    let mut flat = vec![];
    flatten("", &eff, &mut flat);
    let mut user_keys = vec![];
    flatten("", &user, &mut user_keys);
    let file = found
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut rows: Vec<(String, String, String)> = flat
        .into_iter()
        .map(|(k, v)| {
            let origin = if user_keys.iter().any(|(u, _)| *u == k) {
                file.clone()
            } else {
                "default".to_string()
            };
            (k, v, origin)
        })
        .collect();
    // The data dir is decided outside the file too.
    let dir_row = match (
        data_dir,
        std::env::var_os("HERD_HOME"),
        &cfg.server.data_dir,
    ) {
        (Some(d), _, _) => Some((d.display().to_string(), "--data-dir".to_string())),
        (None, _, Some(_)) => None,
        (None, Some(h), None) if !h.is_empty() => {
            Some((PathBuf::from(h).display().to_string(), "$HERD_HOME".into()))
        }
        _ => crate::paths::data_dir(None)
            .ok()
            .map(|d| (d.display().to_string(), "default".into())),
    };
    if let Some((dir, origin)) = dir_row {
        rows.retain(|(k, _, _)| k != "server.data_dir");
        rows.push(("server.data_dir".into(), format!("{dir:?}"), origin));
    }
    for row in rows.iter_mut().filter(|r| is_secret(&r.0)) {
        row.1 = "\"***\"".into();
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(rows)
}

/// `(a.b.c, value)` for every leaf of a TOML table.
fn flatten(prefix: &str, t: &toml::Table, out: &mut Vec<(String, String)>) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) if !inner.is_empty() => flatten(&key, inner, out),
            other => out.push((key, other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognised() {
        assert!(is_secret("server.token"));
        assert!(is_secret("claude.env.ANTHROPIC_API_KEY"));
        assert!(is_secret("claude.api_key"));
        assert!(!is_secret("server.listen"));
        assert!(!is_secret("limits.max_sessions"));
    }
}
