//! The daemon wing: what `herd serve` runs. It owns the sessions (through
//! the `herd-actors` registry), serves them over HTTP and keeps them across
//! restarts.
//!
//! - [`serve`]: the daemon's start and shutdown: config, data dir, token, API;
//! - [`api`]: the HTTP/WebSocket API on axum, and its OpenAPI document;
//! - [`store`]: the SQLite store and its migrations;
//! - [`recovery`]: bringing sessions back after a daemon restart;
//! - [`recorder`]: writes every session generation as asciicast v2;
//! - [`notify`]: webhooks from a durable outbox;
//! - [`claude`]: the Claude profile, daemon side: argv, environment, seeded home;
//! - [`web`]: the web dashboard: embedded page, browser login, TLS;
//! - [`worktree`]: git worktrees of worktree sessions, through the git CLI.
//! - [`cluster`]: membership of a cluster coordinated by etcd.

pub mod api;
mod claude;
pub mod cluster;
pub mod notify;
mod recorder;
mod recovery;
mod replayed;
pub mod retention;
pub mod serve;
mod server;
mod store;
mod web;
mod worktree;
