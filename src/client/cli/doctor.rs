//! `herd doctor`: checks what a daemon needs and says what to fix.

use super::print_json;
use crate::client::exit::{CliError, Exit};
use crate::config::Config;
use crate::paths;
use anyhow::Result;
use serde::Serialize;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

/// One check: what, how it came out, the finding, and what to do about it.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn bad(
        name: &'static str,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name,
            status,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check; exits 9 when one fails.
pub async fn run(
    url: Option<String>,
    token: Option<String>,
    data_dir: Option<&Path>,
    config: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    let mut checks = vec![Check::ok("herd", crate::version::LONG)];
    let cfg = match Config::discover(config.as_deref()) {
        Ok((cfg, found)) => {
            checks.push(Check::ok("config", found.describe()));
            Some(cfg)
        }
        Err(e) => {
            checks.push(Check::bad(
                "config",
                Status::Fail,
                e.to_string(),
                "fix the named key, or check the file with `herd config check FILE`",
            ));
            None
        }
    };
    let cfg = cfg.unwrap_or_default();
    let dir = paths::data_dir(data_dir.or(cfg.server.data_dir.as_deref()));
    let dir = match dir {
        Ok(d) => {
            checks.push(check_data_dir(&d));
            checks.push(check_token(
                &d,
                token.is_some() || cfg.server.token.is_some(),
            ));
            checks.push(check_store(&d));
            Some(d)
        }
        Err(e) => {
            checks.push(Check::bad(
                "data dir",
                Status::Fail,
                format!("{e:#}"),
                "set HERD_HOME or pass --data-dir",
            ));
            None
        }
    };
    checks.push(check_daemon(url, token, dir.as_deref(), &cfg).await);
    checks.push(check_claude(&cfg.claude.binary));
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if json {
        print_json(&checks)?;
    } else {
        for c in &checks {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{mark}  {:<9} {}", c.name, c.detail);
            if let Some(f) = &c.fix {
                println!("{:<15} fix: {f}", "");
            }
        }
    }
    if failed {
        return Err(CliError::error(
            Exit::Unhealthy,
            "doctor found a problem (see above)",
        ));
    }
    Ok(())
}

fn check_data_dir(d: &Path) -> Check {
    let shown = d.display().to_string();
    match std::fs::metadata(d) {
        Err(_) => Check::bad(
            "data dir",
            Status::Warn,
            format!("{shown} does not exist yet"),
            "`herd serve` creates it at first start",
        ),
        Ok(m) if !m.is_dir() => Check::bad(
            "data dir",
            Status::Fail,
            format!("{shown} is not a directory"),
            "point --data-dir or HERD_HOME at a directory",
        ),
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Check::bad(
            "data dir",
            Status::Fail,
            format!(
                "{shown} is readable by others (mode {:o})",
                m.permissions().mode() & 0o777
            ),
            format!("chmod 700 {shown}"),
        ),
        Ok(_) => {
            let probe = d.join(".doctor-probe");
            match std::fs::write(&probe, b"") {
                Ok(()) => {
                    let _ = std::fs::remove_file(&probe);
                    Check::ok("data dir", format!("{shown} (mode 700, writable)"))
                }
                Err(e) => Check::bad(
                    "data dir",
                    Status::Fail,
                    format!("{shown} is not writable: {e}"),
                    "run as the daemon's user, or fix the owner",
                ),
            }
        }
    }
}

fn check_token(d: &Path, given: bool) -> Check {
    let path = d.join(paths::TOKEN_FILE);
    match std::fs::metadata(&path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Check::bad(
            "token",
            Status::Fail,
            format!("{} is readable by others", path.display()),
            format!("chmod 600 {}", path.display()),
        ),
        Ok(_) => Check::ok("token", format!("{} (mode 600)", path.display())),
        Err(_) if given => Check::ok("token", "given by --token, HERD_TOKEN or server.token"),
        Err(_) => Check::bad(
            "token",
            Status::Warn,
            format!("no token in {}", path.display()),
            "`herd serve` writes one at first start; clients elsewhere need --token or HERD_TOKEN",
        ),
    }
}

fn check_store(d: &Path) -> Check {
    let path = d.join("herd.db");
    if !path.exists() {
        return Check::bad(
            "store",
            Status::Warn,
            format!("{} does not exist yet", path.display()),
            "`herd serve` creates it",
        );
    }
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let result = rusqlite::Connection::open_with_flags(&path, flags).and_then(|c| {
        c.busy_timeout(Duration::from_secs(2))?;
        let check: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let sessions: i64 = c
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .unwrap_or(0);
        Ok((check, version, sessions))
    });
    match result {
        Ok((check, version, sessions)) if check == "ok" => Check::ok(
            "store",
            format!(
                "{} (schema {version}, {sessions} sessions, integrity ok)",
                path.display()
            ),
        ),
        Ok((check, _, _)) => Check::bad(
            "store",
            Status::Fail,
            format!("{}: integrity check says {check}", path.display()),
            "stop the daemon, restore a backup, or move the file away to start empty",
        ),
        Err(e) => Check::bad(
            "store",
            Status::Fail,
            format!("{}: {e}", path.display()),
            "is it a herd store? move it away to start empty",
        ),
    }
}

async fn check_daemon(
    url: Option<String>,
    token: Option<String>,
    dir: Option<&Path>,
    cfg: &Config,
) -> Check {
    let base = url
        .or_else(|| dir.and_then(|d| std::fs::read_to_string(d.join(paths::URL_FILE)).ok()))
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("http://{}", cfg.server.listen));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build();
    let Ok(http) = http else {
        return Check::bad("daemon", Status::Fail, "cannot build an HTTP client", "");
    };
    let health = http.get(format!("{base}/healthz")).send().await;
    let Ok(resp) = health else {
        // Nobody answers: can the daemon take the port?
        return match std::net::TcpListener::bind(cfg.server.listen) {
            Ok(_) => Check::bad(
                "daemon",
                Status::Warn,
                format!("not running at {base}; port {} is free", cfg.server.listen),
                "start it: `herd serve`",
            ),
            Err(e) => Check::bad(
                "daemon",
                Status::Fail,
                format!(
                    "not answering at {base}, and {} cannot be bound: {e}",
                    cfg.server.listen
                ),
                "another program holds the port: stop it, or set server.listen / --listen",
            ),
        };
    };
    let version = resp
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let token =
        token.or_else(|| dir.and_then(|d| std::fs::read_to_string(d.join(paths::TOKEN_FILE)).ok()));
    let Some(token) = token.map(|t| t.trim().to_string()) else {
        return Check::bad(
            "daemon",
            Status::Fail,
            format!("herd {version} at {base}, but no token to use it"),
            "pass --data-dir of the daemon, or --token",
        );
    };
    match http
        .get(format!("{base}/v1/stats"))
        .bearer_auth(&token)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => Check::ok(
            "daemon",
            format!("herd {version} at {base}, token accepted"),
        ),
        Ok(r) => Check::bad(
            "daemon",
            Status::Fail,
            format!(
                "herd {version} at {base} refused the token ({})",
                r.status()
            ),
            "use the token of that daemon's data dir (--data-dir), or --token",
        ),
        Err(e) => Check::bad(
            "daemon",
            Status::Fail,
            format!("{base}: {e}"),
            "check --url",
        ),
    }
}

fn check_claude(binary: &str) -> Check {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            Check::ok("claude", format!("{binary}: {v}"))
        }
        Ok(o) => Check::bad(
            "claude",
            Status::Warn,
            format!("{binary} --version failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
            "only needed for --claude sessions: reinstall Claude Code",
        ),
        Err(e) => Check::bad(
            "claude",
            Status::Warn,
            format!("{binary}: {e}"),
            "only needed for --claude sessions: `npm install -g @anthropic-ai/claude-code`, or set claude.binary",
        ),
    }
}
