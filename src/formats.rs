//! The formats wing: recording files and the tools that read them. The
//! daemon's recorder writes them; `herd replay`, `export` and `analyze` read
//! them, from a file or from a session's recording on the daemon.
//!
//! - [`cast`]: asciicast v2, read and written as a stream;
//! - [`ttyrec`]: ttyrec, read and written;
//! - [`files`]: the stored recordings of a data dir, as the recorder lays them out;
//! - [`source`]: what the tools read: a file (format told by content) or a session's recording;
//! - [`replay`]: `herd replay`: plays a recording in this terminal;
//! - [`export`]: `herd export`: converts to asciicast, ttyrec or JSON;
//! - [`analyze`]: `herd analyze`: the figures of a recording;
//! - [`args`]: the tools' command-line values, checked.

pub mod analyze;
mod args;
pub mod cast;
pub mod export;
pub mod files;
pub mod replay;
pub mod source;
mod ttyrec;
