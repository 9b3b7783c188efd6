//! The stored recordings of a data dir: `recordings/<session id>/<generation>.cast`
//! or `<generation>.cast.zst`, as the recorder lays them out.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Where recordings live in the data dir: `recordings/<session>/<generation>.cast[.zst]`.
pub fn recordings_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("recordings")
}

/// One generation's recording file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The generation (restart count) it records.
    pub generation: u64,
    /// Where it is.
    pub path: PathBuf,
    /// Its file name, e.g. `0.cast.zst`.
    pub file: String,
    /// Its size on disk.
    pub bytes: u64,
    /// Whether it is zstd-compressed.
    pub compressed: bool,
}

/// The folder of one session's recordings.
pub fn session_dir(data_dir: &Path, session: &str) -> PathBuf {
    recordings_dir(data_dir).join(session)
}

/// The generation and compression a recording's file name stands for.
pub fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (stem, compressed) = match name.strip_suffix(".cast.zst") {
        Some(s) => (s, true),
        None => (name.strip_suffix(".cast")?, false),
    };
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, compressed))
}

/// A session's recordings, oldest generation first (none when the folder is
/// absent). When both a plain and a compressed file exist for a generation,
/// the plain one is listed.
pub fn list(data_dir: &Path, session: &str) -> std::io::Result<Vec<Stored>> {
    let dir = session_dir(data_dir, session);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut out: Vec<Stored> = vec![];
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some((generation, compressed)) = parse_name(&name) else {
            continue;
        };
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        out.push(Stored {
            generation,
            path: entry.path(),
            file: name,
            bytes: meta.len(),
            compressed,
        });
    }
    out.sort_by_key(|s| (s.generation, s.compressed));
    out.dedup_by_key(|s| s.generation);
    Ok(out)
}

/// Session ids (folder names) with recordings that start with `prefix`.
pub fn sessions_with_prefix(data_dir: &Path, prefix: &str) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(recordings_dir(data_dir)) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let prefix = prefix.to_ascii_lowercase();
    let mut out = vec![];
    for entry in entries {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str() {
            if name.starts_with(&prefix) && entry.file_type()?.is_dir() {
                out.push(name.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name("0.cast"), Some((0, false)));
        assert_eq!(parse_name("12.cast.zst"), Some((12, true)));
        for bad in ["x.cast", ".cast", "1.cast.tmp", "1.txt", "-1.cast", "1.zst"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn lists_generations_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = session_dir(dir.path(), "abc");
        std::fs::create_dir_all(&s).unwrap();
        std::fs::write(s.join("10.cast.zst"), b"1234").unwrap();
        std::fs::write(s.join("2.cast"), b"12").unwrap();
        std::fs::write(s.join("2.cast.zst"), b"1").unwrap();
        std::fs::write(s.join("notes.txt"), b"").unwrap();
        let l = list(dir.path(), "abc").unwrap();
        let got: Vec<(u64, &str, u64)> = l
            .iter()
            .map(|s| (s.generation, s.file.as_str(), s.bytes))
            .collect();
        assert_eq!(got, [(2, "2.cast", 2), (10, "10.cast.zst", 4)]);
        assert!(list(dir.path(), "none").unwrap().is_empty());
        assert_eq!(
            sessions_with_prefix(dir.path(), "AB").unwrap(),
            vec!["abc".to_string()]
        );
    }
}
