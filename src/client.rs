//! The client wing: every command but `herd serve`, run by a user or a job
//! runner against a daemon.
//!
//! - [`cli`]: the command line (clap): hands `herd serve` to the daemon, runs the rest;
//! - [`attach`]: `herd attach`: the local terminal on a session's WebSocket;
//! - [`http`]: the typed HTTP client for the daemon (URL and token discovery);
//! - [`exit`]: the exit codes of every command;
//! - [`output`]: tables and short forms for humans;
//! - [`top`]: `herd top`: the live fleet view in the terminal (ratatui);
//! - [`recordings`]: a session's recordings fetched for the recording tools
//!   (the formats wing's `source::Fetch`, over [`http`]).

mod attach;
pub mod cli;
pub mod exit;
mod http;
mod output;
mod recordings;
mod top;
