//! `herd backup FILE` and `herd gc`: maintenance through the daemon.

use crate::client::http::{enc, Client};
use anyhow::{Context, Result};
use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};
use std::path::PathBuf;

/// `herd backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the copy (on the daemon's machine).
    file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

/// `herd gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Forget ended sessions older than this (default: store.retention), e.g. 1h.
    #[arg(long)]
    older_than: Option<String>,
    /// Keep at most this many ended sessions (default: store.keep_ended).
    #[arg(long)]
    keep: Option<usize>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

/// Writes the copy and prints its path and size.
pub async fn backup(c: &Client, args: BackupArgs) -> Result<()> {
    let path = if args.file.is_absolute() {
        args.file
    } else {
        std::env::current_dir()
            .context("reading the current directory")?
            .join(args.file)
    };
    let body = json!({"path": path, "overwrite": args.force});
    let v: Value = c.json(Method::POST, "/v1/backup", Some(&body)).await?;
    println!(
        "{} ({} bytes)",
        v["path"].as_str().unwrap_or_default(),
        v["bytes"]
    );
    Ok(())
}

/// Runs a collection and prints what it removed.
pub async fn gc(c: &Client, args: GcArgs) -> Result<()> {
    let mut q = vec![];
    if let Some(t) = &args.older_than {
        q.push(format!("older_than={}", enc(t)));
    }
    if let Some(k) = args.keep {
        q.push(format!("keep={k}"));
    }
    let v: Value = c
        .json(Method::POST, &format!("/v1/gc?{}", q.join("&")), None)
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let n = v["removed"].as_array().map(Vec::len).unwrap_or(0);
    println!(
        "removed {n} ended session(s), {} bytes of recordings",
        v["recording_bytes"]
    );
    Ok(())
}
