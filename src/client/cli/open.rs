//! `herd open`: a one-time login link to the web dashboard.

use crate::client::http::Client;
use anyhow::{Context, Result};
use reqwest::Method;
use serde_json::Value;
use std::process::{Command, Stdio};

/// Runs `herd open`: prints the link and, when `$BROWSER` names a browser
/// (and `--print` was not given), opens it there.
pub async fn run(c: &Client, print_only: bool) -> Result<()> {
    let v: Value = c.json(Method::POST, "/v1/login", None).await?;
    let url = v
        .get("url")
        .and_then(Value::as_str)
        .context("the daemon's answer to POST /v1/login has no url")?;
    println!("{url}");
    eprintln!("(valid once, for one minute)");
    let browser = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty());
    if let (false, Some(browser)) = (print_only, browser) {
        // $BROWSER may hold several commands separated by ':' (the convention).
        let opened = browser.split(':').any(|cmd| {
            let mut parts = cmd.split_whitespace();
            let Some(program) = parts.next() else {
                return false;
            };
            Command::new(program)
                .args(parts)
                .arg(url)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .is_ok()
        });
        if !opened {
            eprintln!("herd: could not start $BROWSER ({browser}); open the link yourself");
        }
    }
    Ok(())
}
