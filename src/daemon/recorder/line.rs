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
/// Terminal output is mostly bytes that need no escape: the next byte that
/// does is found by [`next_to_escape`], many bytes at a time, and the run
/// before it is copied whole. Testing every byte was half of the recorder's
/// CPU, and the recorder's CPU is taken from the sessions it records.
pub(super) fn escape(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    let mut from = 0;
    loop {
        let at = next_to_escape(s, from);
        out.extend_from_slice(&s[from..at]);
        let Some(&b) = s.get(at) else {
            return;
        };
        escape_byte(out, b);
        from = at + 1;
    }
}

/// Where the first byte at or after `from` that needs escaping is, or
/// `s.len()`: sixteen bytes per step with SSE2 (every x86-64 has it).
#[cfg(target_arch = "x86_64")]
fn next_to_escape(s: &[u8], mut from: usize) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline; every load reads the 16
    // bytes at `from..from + 16`, which the loop condition keeps inside `s`.
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let last_control = _mm_set1_epi8(0x1f);
        while from + 16 <= s.len() {
            let v = _mm_loadu_si128(s.as_ptr().add(from).cast::<__m128i>());
            // Unsigned v <= 0x1f exactly when min(v, 0x1f) is v.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, last_control), v);
            let special = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash));
            let mask = _mm_movemask_epi8(_mm_or_si128(control, special)) as u32;
            if mask != 0 {
                return from + mask.trailing_zeros() as usize;
            }
            from += 16;
        }
    }
    next_to_escape_bytewise(s, from)
}

/// Where the first byte at or after `from` that needs escaping is, or
/// `s.len()`: eight bytes per step ([`any_to_escape`]) where SSE2 is not.
#[cfg(not(target_arch = "x86_64"))]
fn next_to_escape(s: &[u8], mut from: usize) -> usize {
    while let Some(word) = s.get(from..).and_then(|r| r.first_chunk::<8>()) {
        if any_to_escape(u64::from_le_bytes(*word)) {
            break;
        }
        from += 8;
    }
    next_to_escape_bytewise(s, from)
}

/// The byte-at-a-time search, for a tail shorter than a step (or a step
/// known to hold a match).
fn next_to_escape_bytewise(s: &[u8], from: usize) -> usize {
    s.get(from..)
        .and_then(|rest| rest.iter().position(|&b| needs_escape(b)))
        .map_or(s.len(), |p| from + p)
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
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
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
    fn the_fast_search_finds_what_the_byte_search_finds() {
        // Every byte value at every offset of inputs around one and two
        // steps long, searched from every start.
        for len in [15usize, 16, 17, 31, 32, 33, 40] {
            for filler in [0x20u8, b'a', 0x7e, 0x7f, 0x80, 0xc3, 0xff] {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut s = vec![filler; len];
                        s[at] = b;
                        for from in [0, 1, at.saturating_sub(1), at, len] {
                            assert_eq!(
                                next_to_escape(&s, from),
                                next_to_escape_bytewise(&s, from),
                                "byte {b:#04x} at {at} of {len} (filler {filler:#04x}), from {from}"
                            );
                        }
                    }
                }
            }
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
