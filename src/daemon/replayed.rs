//! The output and screen of an ended session whose buffers were let go
//! (`SessionHandle::release_buffers`), read back from its recordings on
//! demand: memory holds only the summary of the dead.

use crate::formats::cast::Code;
use crate::formats::files;
use crate::formats::source::{Recording, DEFAULT_SIZE};
use herd_actors::{OutputSlice, SessionHandle};
use std::path::Path;

/// The output of every recorded generation, oldest first, as the session's
/// output log would have held it: its last `output_buffer` bytes, ending at
/// the session's output counter.
fn recorded(data_dir: &Path, handle: &SessionHandle) -> (u64, Vec<u8>) {
    let info = handle.info();
    let keep = info.limits.output_buffer.0 as usize;
    let mut out: Vec<u8> = Vec::new();
    let stored = files::list(data_dir, &info.id.to_string()).unwrap_or_default();
    for s in stored {
        let Ok(rec) = Recording::open(&s.path, DEFAULT_SIZE) else {
            continue;
        };
        for e in rec.flatten() {
            if e.code == Code::Output {
                out.extend_from_slice(e.data.as_bytes());
            }
        }
        if out.len() > 2 * keep {
            out.drain(..out.len() - keep);
        }
    }
    if out.len() > keep {
        out.drain(..out.len() - keep);
    }
    let end = info.metrics.bytes_out.max(out.len() as u64);
    (end - out.len() as u64, out)
}

/// Like `SessionHandle::output`, from the recordings.
pub fn output(data_dir: &Path, handle: &SessionHandle, since: u64, limit: usize) -> OutputSlice {
    let (start, data) = recorded(data_dir, handle);
    let end = start + data.len() as u64;
    let from = since.clamp(start, end);
    let skip = (from - start) as usize;
    let take = (data.len() - skip).min(limit);
    OutputSlice {
        start: from,
        end: from + take as u64,
        truncated: since < start,
        data: data[skip..skip + take].to_vec(),
    }
}

/// The screen the last recorded output draws, as text.
pub fn screen_text(data_dir: &Path, handle: &SessionHandle) -> String {
    let info = handle.info();
    let (_, data) = recorded(data_dir, handle);
    herd_actors::render_text(info.cols, info.rows, &data)
}
