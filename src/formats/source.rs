//! Where the recording tools read from: a local file (asciicast, zstd
//! compressed asciicast or ttyrec, told apart by content) or a session id
//! (its recording fetched from the daemon).

use super::cast::{self, Event, Header};
use super::ttyrec;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

/// The first bytes of a zstd frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Terminal size given to ttyrec input, which has none.
pub const DEFAULT_SIZE: (u32, u32) = (80, 24);

/// What a recording file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// asciicast v2.
    Cast,
    /// ttyrec.
    Ttyrec,
}

/// An open recording: its header, then its events in order.
pub struct Recording {
    /// The header (for ttyrec: made up from the given size and first frame).
    pub header: Header,
    /// The format of the (decompressed) file.
    pub format: Format,
    /// Whether the file was zstd-compressed.
    pub compressed: bool,
    events: Box<dyn Iterator<Item = Result<Event>> + Send>,
}

impl Iterator for Recording {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        self.events.next()
    }
}

impl Recording {
    /// The format in words: `asciicast`, `ttyrec`, with ` (zstd)` when compressed.
    pub fn describe(&self) -> String {
        let f = match self.format {
            Format::Cast => "asciicast v2",
            Format::Ttyrec => "ttyrec",
        };
        if self.compressed {
            format!("{f} (zstd)")
        } else {
            f.to_string()
        }
    }

    /// Opens a file, telling the format by content: `{` starts asciicast,
    /// the zstd magic a compressed file (either format inside), anything else
    /// is read as ttyrec on a `size` terminal.
    pub fn open(path: &Path, size: (u32, u32)) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // A device or a pipe (/dev/zero) never ends: only files are recordings.
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file: not a recording", path.display());
        }
        Self::from_reader(file, size).with_context(|| format!("cannot read {}", path.display()))
    }

    /// Like [`Self::open`], on any byte stream.
    pub fn from_reader<R: Read + Send + 'static>(input: R, size: (u32, u32)) -> Result<Self> {
        let mut input = BufReader::with_capacity(64 * 1024, input);
        let head = input.fill_buf().context("reading")?;
        if head.is_empty() {
            bail!("empty file: not a recording");
        }
        if head.starts_with(&ZSTD_MAGIC) || (head.len() < 4 && ZSTD_MAGIC.starts_with(head)) {
            let decoder = zstd::stream::read::Decoder::with_buffer(input)
                .context("starting the zstd decoder")?;
            let mut inner = Self::plain(EndAtTruncation(decoder), size)?;
            inner.compressed = true;
            return Ok(inner);
        }
        Self::plain(input, size)
    }

    fn plain<R: Read + Send + 'static>(input: R, size: (u32, u32)) -> Result<Self> {
        let mut input = BufReader::with_capacity(64 * 1024, input);
        let head = input.fill_buf().context("reading")?;
        if head.is_empty() {
            bail!("empty recording");
        }
        if head[0] == b'{' {
            let r = cast::Reader::new(input)?;
            Ok(Self {
                header: r.header().clone(),
                format: Format::Cast,
                compressed: false,
                events: Box::new(r),
            })
        } else {
            let r = ttyrec::Reader::new(input, size.0, size.1)?;
            Ok(Self {
                header: r.header().clone(),
                format: Format::Ttyrec,
                compressed: false,
                events: Box::new(r),
            })
        }
    }
}

/// The last `limit` bytes of output of a session's newest recording (empty
/// when it has none), so a session that ended before the daemon restarted
/// still shows its last screen and logs.
pub fn last_output(data_dir: &Path, session: &str, limit: usize) -> Result<Vec<u8>> {
    let files = super::files::list(data_dir, session)
        .with_context(|| format!("listing the recordings of session {session}"))?;
    let Some(newest) = files.last() else {
        return Ok(vec![]);
    };
    let mut tail: Vec<u8> = Vec::new();
    for event in Recording::open(&newest.path, DEFAULT_SIZE)? {
        let event = event?;
        if event.code == super::cast::Code::Output {
            tail.extend_from_slice(event.data.as_bytes());
            // Trim in large steps: the copy stays rare.
            if tail.len() > limit.saturating_mul(2).max(64 * 1024) {
                tail.drain(..tail.len() - limit);
            }
        }
    }
    if tail.len() > limit {
        tail.drain(..tail.len() - limit);
    }
    Ok(tail)
}

/// A zstd stream cut short (a recording still being written) ends where the
/// data ends instead of failing: what was decoded is kept.
pub struct EndAtTruncation<R>(pub R);

impl<R: Read> Read for EndAtTruncation<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                tracing::debug!("the compressed recording ends early (still being written?)");
                Ok(0)
            }
            other => other,
        }
    }
}

/// What the tools were asked to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local file.
    File(PathBuf),
    /// A session id or unique prefix.
    Session(String),
}

impl Target {
    /// An existing path is a file; else something shaped like an id (hex
    /// digits and dashes) is a session; else a file (that will not open).
    pub fn parse(arg: &str) -> Self {
        let path = Path::new(arg);
        let id_like = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if path.exists() || !id_like {
            Target::File(path.to_path_buf())
        } else {
            Target::Session(arg.to_string())
        }
    }
}

/// One stored generation, as `GET /v1/sessions/{id}/recordings` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Listed {
    /// The generation (restart count).
    pub generation: u64,
    /// Whether it is stored zstd-compressed.
    #[serde(default)]
    pub compressed: bool,
}

/// Where a session's recordings come from: the daemon. The client wing's
/// HTTP client implements it (`client/recordings.rs`), so this wing does not
/// depend on the client.
pub trait Fetch {
    /// The generations a session has recordings of, oldest first.
    async fn generations(&self, id: &str) -> Result<Vec<Listed>>;

    /// Fetches a session's recording (the newest generation unless one is
    /// given) as asciicast into a private temporary file.
    async fn download(&self, id: &str, generation: Option<u64>) -> Result<tempfile::NamedTempFile>;
}

/// A recording opened from a file or fetched for a session; a fetched one
/// lives in a temporary file as long as this value.
pub struct Opened {
    /// The recording.
    pub recording: Recording,
    /// How to name it to the user.
    pub name: String,
    /// The path it was read from (a temporary file for a session).
    pub path: PathBuf,
    _temp: Option<tempfile::NamedTempFile>,
}

/// Opens FILE or fetches ID's recording.
pub async fn open(
    client: &impl Fetch,
    arg: &str,
    generation: Option<u64>,
    size: (u32, u32),
) -> Result<Opened> {
    match Target::parse(arg) {
        Target::File(path) => {
            if generation.is_some() {
                bail!("--generation applies to a session id, not to a file");
            }
            Ok(Opened {
                recording: Recording::open(&path, size)?,
                name: path.display().to_string(),
                path,
                _temp: None,
            })
        }
        Target::Session(id) => {
            let temp = client.download(&id, generation).await?;
            let path = temp.path().to_path_buf();
            let recording = Recording::open(&path, size)
                .with_context(|| format!("reading the recording of session {id}"))?;
            Ok(Opened {
                recording,
                name: format!("session {id}"),
                path,
                _temp: Some(temp),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const CAST: &str = "{\"version\":2,\"width\":80,\"height\":24}\n[0.5, \"o\", \"hi\"]\n";

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    fn events(r: Recording) -> Vec<Event> {
        r.collect::<Result<_>>().unwrap()
    }

    #[test]
    fn tells_formats_apart_by_content() {
        let r = Recording::from_reader(std::io::Cursor::new(CAST), DEFAULT_SIZE).unwrap();
        assert_eq!((r.format, r.compressed), (Format::Cast, false));
        assert_eq!(events(r), vec![Event::output(0.5, "hi")]);

        let r = Recording::from_reader(std::io::Cursor::new(zstd(CAST.as_bytes())), DEFAULT_SIZE)
            .unwrap();
        assert_eq!((r.format, r.compressed), (Format::Cast, true));
        assert_eq!(events(r), vec![Event::output(0.5, "hi")]);

        let mut tty = vec![];
        let mut w = ttyrec::Writer::new(&mut tty, Some(5)).unwrap();
        w.frame(1.5, b"yo").unwrap();
        w.finish().unwrap();
        let r = Recording::from_reader(std::io::Cursor::new(tty.clone()), (90, 20)).unwrap();
        assert_eq!(
            (r.format, r.header.width, r.header.height),
            (Format::Ttyrec, 90, 20)
        );
        assert_eq!(events(r), vec![Event::output(1.5, "yo")]);

        let r = Recording::from_reader(std::io::Cursor::new(zstd(&tty)), DEFAULT_SIZE).unwrap();
        assert_eq!((r.format, r.compressed), (Format::Ttyrec, true));
    }

    #[test]
    fn a_truncated_zstd_recording_gives_what_was_written() {
        // A stream flushed but not finished, as the recorder leaves a live file.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.write_all(CAST.as_bytes()).unwrap();
        enc.flush().unwrap();
        let partial = enc.get_ref().clone();
        let r = Recording::from_reader(std::io::Cursor::new(partial), DEFAULT_SIZE).unwrap();
        assert_eq!(events(r), vec![Event::output(0.5, "hi")]);
    }

    #[test]
    fn corrupt_zstd_and_empty_input_are_errors() {
        let mut bad = zstd(CAST.as_bytes());
        let n = bad.len();
        for b in &mut bad[6..n - 4] {
            *b ^= 0x5a;
        }
        let res = Recording::from_reader(std::io::Cursor::new(bad), DEFAULT_SIZE)
            .and_then(|r| r.collect::<Result<Vec<_>>>());
        assert!(res.is_err());
        let empty = Recording::from_reader(std::io::Cursor::new(Vec::new()), DEFAULT_SIZE);
        assert!(format!("{:#}", empty.err().unwrap()).contains("empty"));
    }

    #[test]
    fn targets() {
        assert_eq!(Target::parse("0f3a"), Target::Session("0f3a".into()));
        assert_eq!(
            Target::parse("missing.cast"),
            Target::File("missing.cast".into())
        );
        assert_eq!(Target::parse("g00d"), Target::File("g00d".into()));
        // An existing file wins over an id of the same shape.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abcd");
        std::fs::write(&p, CAST).unwrap();
        assert_eq!(Target::parse(p.to_str().unwrap()), Target::File(p.clone()));
    }
}
