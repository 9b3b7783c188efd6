//! asciicast v2: a JSON header line, then one `[time, code, data]` line per
//! event (`o` output, `i` input, `r` resize `COLSxROWS`, `m` marker).
//!
//! [`Reader`] streams events line by line (a recording is never loaded whole);
//! [`Writer`] writes them back in the layout the stock `asciinema` player reads.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};

/// The asciicast version this module reads and writes.
pub const VERSION: u32 = 2;

/// The header line of an asciicast v2 file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always 2.
    pub version: u32,
    /// Terminal columns at the start.
    pub width: u32,
    /// Terminal rows at the start.
    pub height: u32,
    /// Start of the recording, UNIX seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_timestamp"
    )]
    pub timestamp: Option<i64>,
    /// Pauses longer than this were meant to be shortened on playback (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_time_limit: Option<f64>,
    /// The recorded command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// A title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Environment of the recording (`TERM`, `SHELL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Any other header field (`duration`, `theme`, ...), kept as it is.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Header {
    /// A header for a `width`x`height` terminal, `TERM=xterm-256color`.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            version: VERSION,
            width,
            height,
            timestamp: None,
            idle_time_limit: None,
            command: None,
            title: None,
            env: Some(BTreeMap::from([(
                "TERM".to_string(),
                "xterm-256color".to_string(),
            )])),
            extra: serde_json::Map::new(),
        }
    }
}

/// Some writers store the timestamp as a float: keep its whole seconds.
fn lenient_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<serde_json::Number>::deserialize(d)?;
    Ok(v.and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))))
}

/// The kind of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// `o`: what the program wrote to the terminal.
    Output,
    /// `i`: what was typed into the program.
    Input,
    /// `r`: the terminal was resized; data is `COLSxROWS`.
    Resize,
    /// `m`: a marker (herd: state changes, restarts, exits).
    Marker,
    /// Any other code, kept as it is.
    Other(String),
}

impl Code {
    /// The code as it is written in the file.
    pub fn as_str(&self) -> &str {
        match self {
            Code::Output => "o",
            Code::Input => "i",
            Code::Resize => "r",
            Code::Marker => "m",
            Code::Other(s) => s,
        }
    }

    /// The code of `s`.
    pub fn parse(s: &str) -> Self {
        match s {
            "o" => Code::Output,
            "i" => Code::Input,
            "r" => Code::Resize,
            "m" => Code::Marker,
            other => Code::Other(other.to_string()),
        }
    }
}

/// One event: `[time, code, data]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the start of the recording.
    pub time: f64,
    /// What kind of event.
    pub code: Code,
    /// Output or input text, `COLSxROWS`, or a marker's label.
    pub data: String,
}

impl Event {
    /// An output event.
    pub fn output(time: f64, data: impl Into<String>) -> Self {
        Self {
            time,
            code: Code::Output,
            data: data.into(),
        }
    }

    /// The event as a JSON array `[time, code, data]`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!([round_time(self.time), self.code.as_str(), self.data])
    }
}

/// A time rounded to the microsecond, as asciicast stores it.
pub fn round_time(t: f64) -> f64 {
    (t.max(0.0) * 1e6).round() / 1e6
}

/// Reads an asciicast v2 stream: the header at once, then events on demand.
pub struct Reader<R> {
    input: R,
    header: Header,
    line_no: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> Reader<R> {
    /// Reads and checks the header line.
    pub fn new(mut input: R) -> Result<Self> {
        let mut buf = Vec::new();
        input
            .read_until(b'\n', &mut buf)
            .context("reading the asciicast header")?;
        let header: Header = serde_json::from_slice(&buf)
            .map_err(|e| anyhow::anyhow!("not an asciicast v2 file: invalid header line: {e}"))?;
        if header.version != VERSION {
            bail!(
                "unsupported asciicast version {} (only version 2 is read)",
                header.version
            );
        }
        Ok(Self {
            input,
            header,
            line_no: 1,
            buf,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn next_event(&mut self) -> Result<Option<Event>> {
        loop {
            self.buf.clear();
            let n = self
                .input
                .read_until(b'\n', &mut self.buf)
                .with_context(|| format!("reading line {}", self.line_no + 1))?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let complete = self.buf.last() == Some(&b'\n');
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<(f64, String, String)>(&self.buf) {
                Ok((time, code, data)) => {
                    if !time.is_finite() || time < 0.0 {
                        bail!("line {}: invalid event time {time}", self.line_no);
                    }
                    return Ok(Some(Event {
                        time,
                        code: Code::parse(&code),
                        data,
                    }));
                }
                // A recording still being written may end in half a line.
                Err(_) if !complete => {
                    tracing::warn!(
                        line = self.line_no,
                        "ignoring an incomplete last event (is the recording still being written?)"
                    );
                    return Ok(None);
                }
                Err(e) => bail!(
                    "line {}: invalid event (expected [time, code, data]): {e}",
                    self.line_no
                ),
            }
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

/// Writes an asciicast v2 stream.
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    /// Writes the header line.
    pub fn new(mut out: W, header: &Header) -> Result<Self> {
        let line = serde_json::to_string(header).context("encoding the header")?;
        writeln!(out, "{line}")?;
        Ok(Self { out })
    }

    /// Writes one event line.
    pub fn event(&mut self, e: &Event) -> std::io::Result<()> {
        let code = serde_json::to_string(e.code.as_str()).map_err(std::io::Error::other)?;
        let data = serde_json::to_string(&e.data).map_err(std::io::Error::other)?;
        writeln!(self.out, "[{:.6}, {code}, {data}]", round_time(e.time))
    }

    /// Flushes and hands back the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = concat!(
        r##"{"version":2,"width":80,"height":24,"timestamp":1700000000,"command":"bash","title":"t","env":{"TERM":"xterm-256color"},"theme":{"fg":"#fff"}}"##,
        "\n",
        r#"[0.5, "o", "héllo\r\n"]"#,
        "\n\n",
        r#"[1.25, "i", "ls\r"]"#,
        "\n",
        r#"[2.0, "r", "100x30"]"#,
        "\n",
        r#"[3.000001, "m", "state busy -> ready: output quiet"]"#,
        "\n",
        r#"[3.5, "x", "other"]"#,
        "\n",
    );

    #[test]
    fn reads_header_and_every_kind_of_event() {
        let r = Reader::new(SAMPLE.as_bytes()).unwrap();
        let h = r.header().clone();
        assert_eq!((h.width, h.height, h.timestamp), (80, 24, Some(1700000000)));
        assert_eq!(h.command.as_deref(), Some("bash"));
        assert!(h.extra.contains_key("theme"), "unknown fields are kept");
        let events: Vec<Event> = r.collect::<Result<_>>().unwrap();
        let codes: Vec<&str> = events.iter().map(|e| e.code.as_str()).collect();
        assert_eq!(codes, ["o", "i", "r", "m", "x"]);
        assert_eq!(events[0].data, "héllo\r\n");
        assert_eq!(events[3].time, 3.000001);
        assert_eq!(events[4].code, Code::Other("x".into()));
    }

    #[test]
    fn write_then_read_gives_the_same_recording() {
        let r = Reader::new(SAMPLE.as_bytes()).unwrap();
        let header = r.header().clone();
        let events: Vec<Event> = r.collect::<Result<_>>().unwrap();
        let mut w = Writer::new(Vec::new(), &header).unwrap();
        for e in &events {
            w.event(e).unwrap();
        }
        let bytes = w.finish().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("[0.500000, \"o\", \"héllo\\r\\n\"]\n"),
            "{text}"
        );
        let again = Reader::new(&bytes[..]).unwrap();
        assert_eq!(again.header(), &header);
        let events2: Vec<Event> = again.collect::<Result<_>>().unwrap();
        assert_eq!(events2, events);
    }

    #[test]
    fn rejects_bad_headers_versions_and_events() {
        let err = |s: &str| match Reader::new(s.as_bytes()) {
            Err(e) => format!("{e:#}"),
            Ok(r) => match r.collect::<Result<Vec<_>>>() {
                Err(e) => format!("{e:#}"),
                Ok(v) => panic!("accepted {s:?}: {v:?}"),
            },
        };
        assert!(err("{nope\n").contains("not an asciicast v2 file"));
        assert!(err("{\"version\":1,\"width\":1,\"height\":1}\n").contains("version 1"));
        let bad_middle =
            "{\"version\":2,\"width\":1,\"height\":1}\n[1, \"o\"]\n[2, \"o\", \"x\"]\n";
        assert!(err(bad_middle).contains("line 2"), "{}", err(bad_middle));
        let negative = "{\"version\":2,\"width\":1,\"height\":1}\n[-1, \"o\", \"x\"]\n";
        assert!(err(negative).contains("invalid event time"));
    }

    #[test]
    fn an_incomplete_last_line_ends_the_recording() {
        let live = "{\"version\":2,\"width\":1,\"height\":1}\n[1, \"o\", \"x\"]\n[2, \"o\", \"y";
        let events: Vec<Event> = Reader::new(live.as_bytes())
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(events, vec![Event::output(1.0, "x")]);
    }

    #[test]
    fn float_timestamps_are_accepted() {
        let s = "{\"version\":2,\"width\":1,\"height\":1,\"timestamp\":1700000000.7}\n";
        let r = Reader::new(s.as_bytes()).unwrap();
        assert_eq!(r.header().timestamp, Some(1700000000));
    }
}
