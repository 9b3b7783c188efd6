//! herd: a supervisor for fleets of interactive Claude Code sessions.
//!
//! - [`cli`]: the command line; `serve` runs the daemon, the rest are clients;
//! - [`serve`]: the daemon: config, data dir, token, API, shutdown;
//! - [`api`]: the HTTP API on axum;
//! - [`client`]: the CLI's HTTP client;
//! - [`claude`]: the Claude profile: argv, environment, seeded config;
//! - [`claude`]: the Claude profile: argv, environment, seeded config;
//! - [`store`]: the SQLite store and its migrations;
//! - [`recovery`]: bringing sessions back after a daemon restart;
//! - [`recording`]: asciicast recordings: the recorder, replay, export, analysis;
//! - [`config`]: the TOML configuration;
//! - [`paths`]: data dir and private files;
//! - [`terminal`]: raw mode of the local terminal, always undone;
//! - [`output`]: tables and short forms for humans.

mod api;
mod attach;
mod claude;
mod cli;
mod client;
mod config;
mod output;
mod paths;
mod recording;
mod recovery;
mod serve;
mod store;
mod terminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = cli::Cli::parse();
    let is_serve = matches!(cli.command, cli::Command::Serve { .. });
    let default_level = if is_serve { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herd: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(cli::run(cli)) {
        eprintln!("herd: {e:#}");
        std::process::exit(1);
    }
}
