//! ttyrec: a sequence of frames, each a 12-byte header (seconds,
//! microseconds, length: little-endian u32) and that many bytes of output.
//!
//! ttyrec has no header, no input, no resizes and no markers: reading gives
//! output events on a terminal of a size the caller names; writing keeps the
//! output events only. The writer starts with an empty frame at the
//! recording's start, so the time of the first output survives a round trip.

use super::cast::{Event, Header};
use anyhow::{bail, Context, Result};
use std::io::{ErrorKind, Read, Write};

/// Frames larger than this are taken as a sign that the file is not ttyrec.
pub const MAX_FRAME: u32 = 64 << 20;

/// Bytes of a frame header.
const FRAME_HEADER: usize = 12;

/// One raw frame.
struct Frame {
    /// Microseconds since the UNIX epoch.
    micros: u64,
    data: Vec<u8>,
}

/// Reads a ttyrec stream as asciicast events (times relative to the first frame).
pub struct Reader<R> {
    input: R,
    header: Header,
    start_micros: u64,
    offset: u64,
    first: Option<Frame>,
    utf8: Utf8Decoder,
    last_time: f64,
    done: bool,
}

impl<R: Read> Reader<R> {
    /// Reads the first frame; `width`x`height` is the terminal size to report.
    pub fn new(mut input: R, width: u32, height: u32) -> Result<Self> {
        let mut offset = 0;
        let first =
            read_frame(&mut input, &mut offset)?.context("not a ttyrec file: no complete frame")?;
        let mut header = Header::new(width, height);
        let secs = first.micros / 1_000_000;
        header.timestamp = (secs > 0).then_some(secs as i64);
        Ok(Self {
            input,
            header,
            start_micros: first.micros,
            offset,
            first: Some(first),
            utf8: Utf8Decoder::default(),
            last_time: 0.0,
            done: false,
        })
    }

    /// The header: the given size, the first frame's time as the timestamp.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn next_event(&mut self) -> Result<Option<Event>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let frame = match self.first.take() {
                Some(f) => Some(f),
                None => read_frame(&mut self.input, &mut self.offset)?,
            };
            let Some(frame) = frame else {
                self.done = true;
                let rest = self.utf8.finish();
                return Ok((!rest.is_empty()).then(|| Event::output(self.last_time, rest)));
            };
            let time = frame.micros.saturating_sub(self.start_micros) as f64 / 1e6;
            self.last_time = time;
            let text = self.utf8.push(&frame.data);
            if !text.is_empty() {
                return Ok(Some(Event::output(time, text)));
            }
        }
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

/// Reads one frame; `None` at a clean end of the stream.
fn read_frame<R: Read>(input: &mut R, offset: &mut u64) -> Result<Option<Frame>> {
    let mut head = [0u8; FRAME_HEADER];
    let got = read_full(input, &mut head).context("reading a ttyrec frame")?;
    if got == 0 {
        return Ok(None);
    }
    if got < FRAME_HEADER {
        bail!("truncated ttyrec frame header at byte {offset}");
    }
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let (sec, usec, len) = (word(0), word(4), word(8));
    if usec >= 1_000_000 {
        bail!("not a ttyrec file: invalid microseconds {usec} in the frame at byte {offset}");
    }
    if len > MAX_FRAME {
        bail!("not a ttyrec file: frame of {len} bytes at byte {offset}");
    }
    let mut data = vec![0u8; len as usize];
    let got = read_full(input, &mut data).context("reading a ttyrec frame")?;
    if got < data.len() {
        bail!("truncated ttyrec frame at byte {offset}: {got} of {len} bytes",);
    }
    *offset += (FRAME_HEADER + data.len()) as u64;
    Ok(Some(Frame {
        micros: u64::from(sec) * 1_000_000 + u64::from(usec),
        data,
    }))
}

/// Reads until `buf` is full or the stream ends; the number of bytes read.
fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Turns byte chunks into text, keeping a character split between two
/// chunks for the next one; invalid bytes become U+FFFD.
#[derive(Default)]
struct Utf8Decoder {
    carry: Vec<u8>,
}

impl Utf8Decoder {
    fn push(&mut self, bytes: &[u8]) -> String {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(bytes);
        let mut out = String::with_capacity(buf.len());
        let mut rest = &buf[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid` is the prefix from_utf8 just checked.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                        None => {
                            self.carry = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    fn finish(&mut self) -> String {
        if self.carry.is_empty() {
            String::new()
        } else {
            self.carry.clear();
            char::REPLACEMENT_CHARACTER.to_string()
        }
    }
}

/// Writes ttyrec frames.
pub struct Writer<W: Write> {
    out: W,
    start_micros: u64,
}

impl<W: Write> Writer<W> {
    /// Starts a recording at `timestamp` (UNIX seconds; 0 when unknown) with
    /// an empty frame, so later times are kept relative to it.
    pub fn new(out: W, timestamp: Option<i64>) -> std::io::Result<Self> {
        let start = timestamp.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u64;
        let mut w = Self {
            out,
            start_micros: start * 1_000_000,
        };
        w.frame(0.0, b"")?;
        Ok(w)
    }

    /// Writes one frame of output at `time` seconds after the start.
    pub fn frame(&mut self, time: f64, data: &[u8]) -> std::io::Result<()> {
        let micros = self.start_micros + (time.max(0.0) * 1e6).round() as u64;
        let sec = u32::try_from(micros / 1_000_000).map_err(|_| {
            std::io::Error::new(ErrorKind::InvalidInput, "time beyond ttyrec's range")
        })?;
        let usec = (micros % 1_000_000) as u32;
        let len = u32::try_from(data.len())
            .ok()
            .filter(|l| *l <= MAX_FRAME)
            .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "frame too large"))?;
        let mut head = [0u8; FRAME_HEADER];
        head[0..4].copy_from_slice(&sec.to_le_bytes());
        head[4..8].copy_from_slice(&usec.to_le_bytes());
        head[8..12].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&head)?;
        self.out.write_all(data)
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
    use crate::formats::cast::{self, Code};

    fn frame(sec: u32, usec: u32, data: &[u8]) -> Vec<u8> {
        let mut v = vec![];
        v.extend_from_slice(&sec.to_le_bytes());
        v.extend_from_slice(&usec.to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_frames_relative_to_the_first() {
        let mut bytes = frame(1000, 500_000, b"a");
        bytes.extend(frame(1001, 0, b"bc"));
        let r = Reader::new(&bytes[..], 100, 30).unwrap();
        assert_eq!(r.header().timestamp, Some(1000));
        assert_eq!((r.header().width, r.header().height), (100, 30));
        let events: Vec<Event> = r.collect::<Result<_>>().unwrap();
        assert_eq!(
            events,
            vec![Event::output(0.0, "a"), Event::output(0.5, "bc")]
        );
    }

    #[test]
    fn a_character_split_between_frames_is_joined() {
        let e_acute = "é".as_bytes();
        let mut bytes = frame(1, 0, &[b'x', e_acute[0]]);
        bytes.extend(frame(2, 0, &[e_acute[1], b'y']));
        bytes.extend(frame(3, 0, &[0xff, b'z']));
        let events: Vec<Event> = Reader::new(&bytes[..], 80, 24)
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        let text: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(text, ["x", "éy", "\u{fffd}z"]);
    }

    #[test]
    fn rejects_what_is_not_ttyrec() {
        let err = |b: &[u8]| match Reader::new(b, 80, 24) {
            Err(e) => e.to_string(),
            Ok(r) => match r.collect::<Result<Vec<_>>>() {
                Err(e) => e.to_string(),
                Ok(v) => panic!("accepted {b:?}: {v:?}"),
            },
        };
        assert!(err(b"hello world, no recording here\n").contains("not a ttyrec file"));
        assert!(err(b"short").contains("truncated"));
        let mut cut = frame(1, 0, b"abcdef");
        cut.truncate(14);
        assert!(err(&cut).contains("truncated ttyrec frame"));
        assert!(err(b"").contains("no complete frame"));
    }

    #[test]
    fn cast_to_ttyrec_to_cast_keeps_output_and_times() {
        let src = concat!(
            r#"{"version":2,"width":80,"height":24,"timestamp":1700000000}"#,
            "\n",
            r#"[0.123456, "o", "first \u001b[1mbold\u001b[0m\r\n"]"#,
            "\n",
            r#"[0.5, "i", "typed"]"#,
            "\n",
            r#"[1.000001, "r", "90x30"]"#,
            "\n",
            r#"[2.7182818, "o", "ünïcödé ✓\r\n"]"#,
            "\n",
            r#"[3.0, "m", "state busy -> ready"]"#,
            "\n",
            r#"[4.999999, "o", "end"]"#,
            "\n",
        );
        let r = cast::Reader::new(src.as_bytes()).unwrap();
        let header = r.header().clone();
        let events: Vec<Event> = r.collect::<Result<_>>().unwrap();
        let mut w = Writer::new(Vec::new(), header.timestamp).unwrap();
        for e in events.iter().filter(|e| e.code == Code::Output) {
            w.frame(e.time, e.data.as_bytes()).unwrap();
        }
        let bytes = w.finish().unwrap();
        let back = Reader::new(&bytes[..], 80, 24).unwrap();
        assert_eq!(back.header().timestamp, Some(1700000000));
        let back: Vec<Event> = back.collect::<Result<_>>().unwrap();
        let outputs: Vec<&Event> = events.iter().filter(|e| e.code == Code::Output).collect();
        assert_eq!(back.len(), outputs.len(), "{back:?}");
        for (a, b) in outputs.iter().zip(&back) {
            assert_eq!(a.data, b.data);
            assert!((a.time - b.time).abs() <= 1e-6, "{} vs {}", a.time, b.time);
        }
    }
}
