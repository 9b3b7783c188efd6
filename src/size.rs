//! Terminal sizes as the command line gives them, `COLSxROWS`: read by the
//! client's commands (`herd new --size`, `herd resize`) and by the recording
//! tools' `--size` (`formats::args`).

use anyhow::{bail, Result};

/// Parses `COLSxROWS`.
pub fn parse_size(s: &str) -> Result<(u16, u16)> {
    let parsed = s
        .split_once(['x', 'X'])
        .and_then(|(c, r)| Some((c.trim().parse::<u16>().ok()?, r.trim().parse::<u16>().ok()?)));
    match parsed {
        Some(size) => Ok(size),
        None => bail!("invalid size {s:?}: expected COLSxROWS, e.g. 120x40"),
    }
}
