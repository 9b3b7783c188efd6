//! herd: a supervisor for fleets of interactive Claude Code sessions.
//!
//! The binary is split into wings by who runs them; each wing's file maps its
//! modules:
//! - [`daemon`]: `herd serve`: API, store, recovery, recorder, Claude profile;
//! - [`client`]: every other command: the command line, attach, HTTP client;
//! - [`formats`]: recording files: asciicast, ttyrec, replay, export, analyze.
//!
//! Shared by several wings:
//! - [`config`]: the TOML configuration (the daemon's; the client's default URL);
//! - [`paths`]: data dir and private files (daemon and client);
//! - [`size`]: `COLSxROWS` terminal sizes (client's commands, formats' `--size`);
//! - [`terminal`]: raw mode of the local terminal, always undone (attach, replay).

mod client;
mod config;
mod daemon;
mod formats;
mod paths;
mod size;
mod terminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = client::cli::Cli::parse();
    let is_serve = matches!(cli.command, client::cli::Command::Serve { .. });
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
    if let Err(e) = runtime.block_on(client::cli::run(cli)) {
        eprintln!("herd: {e:#}");
        std::process::exit(1);
    }
}
