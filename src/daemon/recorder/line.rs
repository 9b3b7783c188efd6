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
///
/// Terminal output is mostly bytes that need no escape, so it is scanned
/// eight at a time ([`any_to_escape`]) and copied in runs: this loop was
/// half of the recorder's CPU when it tested every byte.
pub(super) fn escape(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    let mut from = 0;
    let mut i = 0;
    while i < s.len() {
        if let Some(word) = s[i..].first_chunk::<8>() {
            if !any_to_escape(u64::from_le_bytes(*word)) {
                i += 8;
                continue;
            }
        }
        // A word with something to escape, or the tail: byte by byte.
        let end = (i + 8).min(s.len());
        while i < end {
            let b = s[i];
            i += 1;
            if !needs_escape(b) {
                continue;
            }
            out.extend_from_slice(&s[from..i - 1]);
            escape_byte(out, b);
            from = i;
        }
    }
    out.extend_from_slice(&s[from..]);
}

/// Whether a JSON string must escape this byte: a control byte, `"` or `\\`.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any of the eight bytes of `w` needs escaping in a JSON string: a
/// control byte (under 0x20), `"` or `\`. The usual word tricks: a byte
/// under `n` (n ≤ 0x80) borrows into its high bit, and so does a zero byte
/// left by xor with the byte sought; bytes of 0x80 and up are masked out by
/// `!w`, so UTF-8 never counts. Exact for the word as a whole.
fn any_to_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let quote = zero(w ^ (ONES * u64::from(b'"')));
    let backslash = zero(w ^ (ONES * u64::from(b'\\')));
    (control | quote | backslash) & HIGH != 0
}

/// The JSON escape of one byte that needs it.
fn escape_byte(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
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
    fn the_word_test_agrees_with_the_byte_test_on_every_word() {
        let check = |w: [u8; 8]| {
            assert_eq!(
                any_to_escape(u64::from_le_bytes(w)),
                w.iter().copied().any(needs_escape),
                "{w:02x?}"
            );
        };
        // Every byte value at every place, among fillers that sit next to
        // the edges of the tests (0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xff).
        for filler in [0x20u8, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xc3, 0xff, b'a'] {
            for place in 0..8 {
                for b in 0..=255u8 {
                    let mut w = [filler; 8];
                    w[place] = b;
                    check(w);
                }
            }
        }
        // And a million pseudo-random words (a fixed xorshift, so a failure repeats).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            check(x.to_le_bytes());
        }
    }

    #[test]
    fn long_text_escapes_as_serde_json_wherever_the_escapes_fall() {
        // Lengths around the word size, an escape at every offset.
        for len in 0..40 {
            for at in 0..len {
                for esc in ["\n", "\"", "\\", "\u{1b}", "é"] {
                    let mut s: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"[..len].into();
                    s.replace_range(at..at + 1, esc);
                    let mut out = Vec::new();
                    escape(&mut out, s.as_bytes());
                    let json = serde_json::to_string(&s).unwrap();
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        json[1..json.len() - 1],
                        "{s:?}"
                    );
                }
            }
        }
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
