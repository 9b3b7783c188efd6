//! Recording of every session generation as asciicast v2, and the tools
//! around the files: `writer` (the recorder behind the actors' tap);
//! `cast` and `ttyrec` (the formats), `files` (the layout on disk), `source`
//! (a file or a session's recording), `replay`, `export`, `analyze` (the
//! CLI tools) and `args` (their checked values).

pub mod writer;

pub mod analyze;
pub mod args;
pub mod cast;
pub mod export;
pub mod files;
pub mod replay;
pub mod source;
pub mod ttyrec;

use std::path::{Path, PathBuf};

/// Where recordings live in the data dir: `recordings/<session>/<generation>.cast[.zst]`.
pub fn recordings_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("recordings")
}
