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
//! - [`terminal`]: raw mode of the local terminal, always undone (attach, replay);
//! - [`version`]: the version and git commit of this build.

mod client;
mod config;
mod daemon;
mod formats;
mod paths;
mod size;
mod terminal;
mod version;

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

fn main() {
    // The cluster's fence process: no CLI, no runtime, no log setup.
    #[cfg(feature = "cluster")]
    if std::env::args().nth(1).as_deref() == Some(daemon::cluster::fence::ARG) {
        daemon::cluster::fence::watchdog();
        return;
    }
    let matches = match client::cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => exit_usage(e),
    };
    let cli = match client::cli::parse(&matches) {
        Ok(c) => c,
        Err(e) => exit_usage(e),
    };
    let is_serve = matches!(cli.command, client::cli::Command::Serve { .. });
    let default_level = if is_serve { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal (a log file or journald
        // gets plain text), and never with NO_COLOR set.
        .with_ansi(
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
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
        std::process::exit(client::exit::code_of(&e));
    }
}

/// Prints clap's error (or help, or version) and exits; a program's own
/// flags given to `herd new` without `--` get a hint.
fn exit_usage(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let args: Vec<String> = std::env::args().collect();
    let is_new = args.iter().skip(1).find(|a| !a.starts_with('-')) == Some(&"new".to_string());
    let misplaced = !matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if is_new && misplaced && !args.iter().any(|a| a == "--") {
        let _ = e.print();
        eprintln!(
            "\nhint: put the program and its arguments after `--`, e.g. `herd new -- bash -l`"
        );
        std::process::exit(client::exit::Exit::Usage.code());
    }
    e.exit()
}
