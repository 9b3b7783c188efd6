//! `herd export FILE|ID --format cast|ttyrec|json [-o OUT]`: converts a
//! recording, event by event (never the whole recording in memory).
//!
//! - `cast`: asciicast v2, decompressed (also how ttyrec is imported, on a
//!   `--size` terminal);
//! - `ttyrec`: output events only, resizes, input and markers dropped;
//! - `json`: one document `{"header": {...}, "events": [[t, code, data], ...]}`.

use super::args;
use super::cast::{self, Code, Event, Header};
use super::source::{self, Fetch, Recording};
use super::ttyrec;
use anyhow::{Context, Result};
use std::io::{BufWriter, ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// What `herd export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// asciicast v2 (plays with `asciinema play`).
    Cast,
    /// ttyrec (output only).
    Ttyrec,
    /// One JSON document: header and events.
    Json,
}

/// Options of `herd export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A recording file (.cast, .cast.zst, ttyrec) or a session id (its newest recording).
    #[arg(value_name = "FILE|ID")]
    pub target: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Cast)]
    pub format: ExportFormat,
    /// Write here (mode 0600) instead of to standard output; an existing
    /// file only with --force.
    #[arg(long, short, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Replace an existing OUT.
    #[arg(long)]
    pub force: bool,
    /// Terminal size given to a ttyrec input, which has none.
    #[arg(long, default_value = "80x24", value_name = "COLSxROWS")]
    pub size: String,
    /// For a session id: this generation instead of the newest.
    #[arg(long)]
    pub generation: Option<u64>,
}

/// Writes `rec` to `out` in `format`.
pub fn convert<W: Write>(rec: Recording, format: ExportFormat, out: W) -> Result<W> {
    let header = rec.header.clone();
    match format {
        ExportFormat::Cast => {
            let mut w = cast::Writer::new(out, &header)?;
            for e in rec {
                w.event(&e?)?;
            }
            Ok(w.finish()?)
        }
        ExportFormat::Ttyrec => {
            let mut w = ttyrec::Writer::new(out, header.timestamp)?;
            for e in rec {
                let e = e?;
                if e.code == Code::Output {
                    w.frame(e.time, e.data.as_bytes())?;
                }
            }
            Ok(w.finish()?)
        }
        ExportFormat::Json => write_json(rec, &header, out),
    }
}

fn write_json<W: Write>(rec: Recording, header: &Header, mut out: W) -> Result<W> {
    out.write_all(b"{\"header\":")?;
    serde_json::to_writer(&mut out, header).context("encoding the header")?;
    out.write_all(b",\"events\":[")?;
    let mut first = true;
    for e in rec {
        let e: Event = e?;
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        out.write_all(b"\n")?;
        serde_json::to_writer(&mut out, &e.to_json()).context("encoding an event")?;
    }
    out.write_all(b"\n]}\n")?;
    out.flush()?;
    Ok(out)
}

/// Runs `herd export`.
pub async fn run(client: &impl Fetch, a: ExportArgs) -> Result<()> {
    let size = args::size(&a.size)?;
    let opened = source::open(client, &a.target, a.generation, size).await?;
    let name = opened.name.clone();
    if let Some(out) = &a.output {
        let same = |p: &std::path::Path| std::fs::canonicalize(p).ok();
        if same(out).is_some() && same(out) == same(&opened.path) {
            anyhow::bail!(
                "-o {} is the input file: choose another output",
                out.display()
            );
        }
        if out.exists() && !a.force {
            anyhow::bail!(
                "-o {} exists already: use --force to replace it",
                out.display()
            );
        }
    }
    let recording = opened.recording;
    let format = a.format;
    let output = a.output;
    tokio::task::spawn_blocking(move || -> Result<()> {
        match output {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                match convert(recording, format, BufWriter::new(file)) {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        // Leave no half-written file behind.
                        let _ = std::fs::remove_file(&path);
                        Err(e.context(format!("exporting {name} to {}", path.display())))
                    }
                }
            }
            None => {
                let stdout = std::io::stdout().lock();
                match convert(recording, format, BufWriter::new(stdout)) {
                    Ok(_) => Ok(()),
                    // A reader that stopped early (`| head`) is not an error.
                    Err(e) if is_broken_pipe(&e) => Ok(()),
                    Err(e) => Err(e.context(format!("exporting {name}"))),
                }
            }
        }
    })
    .await
    .context("the export stopped")?
}

/// Whether the error is a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::source::DEFAULT_SIZE;

    const CAST: &str = concat!(
        r#"{"version":2,"width":80,"height":24,"timestamp":1700000000,"title":"demo"}"#,
        "\n",
        r#"[0.25, "o", "one\r\n"]"#,
        "\n",
        r#"[0.5, "i", "x"]"#,
        "\n",
        r#"[0.75, "r", "90x30"]"#,
        "\n",
        r#"[1.0, "m", "state busy -> ready"]"#,
        "\n",
        r#"[1.5, "o", "tw\u00f6\r\n"]"#,
        "\n",
    );

    fn open(bytes: Vec<u8>) -> Recording {
        Recording::from_reader(std::io::Cursor::new(bytes), DEFAULT_SIZE).unwrap()
    }

    #[test]
    fn cast_to_cast_is_the_same_recording() {
        let out = convert(open(CAST.into()), ExportFormat::Cast, Vec::new()).unwrap();
        let a: Vec<Event> = open(CAST.into()).collect::<Result<_>>().unwrap();
        let back = open(out);
        assert_eq!(back.header.title.as_deref(), Some("demo"));
        let b: Vec<Event> = back.collect::<Result<_>>().unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn ttyrec_keeps_output_only_and_comes_back() {
        let tty = convert(open(CAST.into()), ExportFormat::Ttyrec, Vec::new()).unwrap();
        let back = open(tty);
        assert_eq!(back.header.timestamp, Some(1700000000));
        let b: Vec<Event> = back.collect::<Result<_>>().unwrap();
        assert_eq!(
            b,
            vec![
                Event::output(0.25, "one\r\n"),
                Event::output(1.5, "twö\r\n")
            ]
        );
    }

    #[test]
    fn json_is_one_document() {
        let out = convert(open(CAST.into()), ExportFormat::Json, Vec::new()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["header"]["width"], 80);
        assert_eq!(v["events"].as_array().unwrap().len(), 5);
        assert_eq!(v["events"][2], serde_json::json!([0.75, "r", "90x30"]));
        assert_eq!(v["events"][4][2], "twö\r\n");
    }

    #[test]
    fn compressed_input_is_exported_decompressed() {
        let z = zstd::stream::encode_all(CAST.as_bytes(), 3).unwrap();
        let out = convert(open(z), ExportFormat::Cast, Vec::new()).unwrap();
        assert!(out.starts_with(b"{\"version\":2"));
        assert_eq!(open(out).count(), 5);
    }
}
