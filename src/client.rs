//! The client wing: every command but `herd serve`, run by a user or a job
//! runner against a daemon.
//!
//! - [`cli`]: the command line (clap): hands `herd serve` to the daemon, runs the rest;
//! - [`attach`]: `herd attach`: the local terminal on a session's WebSocket;
//! - [`http`]: the HTTP client for the daemon (URL and token discovery);
//! - [`output`]: tables and short forms for humans.

mod attach;
pub mod cli;
pub mod http;
mod output;
