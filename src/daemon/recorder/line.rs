//! One asciicast event line, `[t, "code", "data"]`, written straight into
//! the recorder's buffer: output is checked as UTF-8 and escaped in one pass
//! over the chunk, with no string or line built on the side.

use std::io::Write;

/// Opens an event line: `[t, "code", "`.
pub(super) fn begin(out: &mut Vec<u8>, t: f64, code: &str) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "[{t:.6}, \"{code}\", \"");
}

/// Closes an event line opened by [`begin`].
pub(super) fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"]\n");
}

/// One whole event line.
pub(super) fn event_line(t: f64, code: &str, data: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(data.len() + 32);
    begin(&mut line, t, code);
    escape(&mut line, data.as_bytes());
    end(&mut line);
    line
}

/// Appends valid UTF-8 as the body of a JSON string, escaped as serde_json
/// escapes it (so a file reads the same as before this encoder).
pub(super) fn escape(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    let mut from = 0;
    for (i, &b) in s.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&s[from..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]),
        }
        from = i + 1;
    }
    out.extend_from_slice(&s[from..]);
}

/// Appends `bytes` as escaped text: invalid bytes become U+FFFD, and an
/// incomplete character at the end is left in `partial` for the next chunk.
/// Returns the bytes of input consumed (not held back).
pub(super) fn escape_lossy(out: &mut Vec<u8>, mut bytes: &[u8], partial: &mut Vec<u8>) -> usize {
    let total = bytes.len();
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                escape(out, s.as_bytes());
                return total;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                escape(out, &bytes[..valid]);
                match e.error_len() {
                    Some(n) => {
                        out.extend_from_slice("\u{FFFD}".as_bytes());
                        bytes = &bytes[valid + n..];
                    }
                    None => {
                        *partial = bytes[valid..].to_vec();
                        return total - partial.len();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(chunks: &[&[u8]]) -> String {
        let mut out = Vec::new();
        let mut partial = Vec::new();
        for c in chunks {
            let mut joined = std::mem::take(&mut partial);
            joined.extend_from_slice(c);
            escape_lossy(&mut out, &joined, &mut partial);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_exactly_as_serde_json() {
        let mut every: String = (0u32..0x80).filter_map(char::from_u32).collect();
        every.push_str("é€😀\u{7f}\u{2028}");
        for s in [every.as_str(), "", "plain", "\"\\", "a\r\nb\x1b[31m"] {
            let mut out = Vec::new();
            escape(&mut out, s.as_bytes());
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), json[1..json.len() - 1]);
        }
        let line = event_line(1.5, "o", "hi\n");
        assert_eq!(line, b"[1.500000, \"o\", \"hi\\n\"]\n");
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v[2], "hi\n");
    }

    #[test]
    fn invalid_bytes_are_replaced_and_split_characters_joined() {
        let euro = "€".as_bytes();
        assert_eq!(lossy(&[b"a", &euro[..1], &euro[1..], b"b"]), "a€b");
        assert_eq!(lossy(&[b"x\xffy"]), "x\u{FFFD}y");
        assert_eq!(lossy(&[b"\xe2\x82", b"z"]), "\u{FFFD}z");
        let mut out = Vec::new();
        let mut partial = Vec::new();
        assert_eq!(escape_lossy(&mut out, &euro[..2], &mut partial), 0);
        assert!(out.is_empty());
        assert_eq!(partial, &euro[..2]);
    }
}
