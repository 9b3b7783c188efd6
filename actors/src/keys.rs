//! Key names (`Enter`, `C-c`, `M-x`, `Up`, `F5`, ...) to the bytes a terminal sends.
//!
//! Follows tmux `send-keys`: each word that is a key name becomes that key,
//! any other word is typed literally.

/// A word that looks like a key name but is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key {0:?}: use names like Enter, Escape, Tab, C-c, M-x, Up, F1, or plain text")]
pub struct UnknownKey(pub String);

fn named(name: &str) -> Option<&'static [u8]> {
    Some(match name.to_ascii_lowercase().as_str() {
        "enter" | "return" | "cr" => b"\r",
        "lf" => b"\n",
        "tab" => b"\t",
        "btab" | "s-tab" => b"\x1b[Z",
        "escape" | "esc" => b"\x1b",
        "space" => b" ",
        "bspace" | "backspace" => b"\x7f",
        "up" => b"\x1b[A",
        "down" => b"\x1b[B",
        "right" => b"\x1b[C",
        "left" => b"\x1b[D",
        "home" => b"\x1b[H",
        "end" => b"\x1b[F",
        "pageup" | "pgup" | "ppage" => b"\x1b[5~",
        "pagedown" | "pgdn" | "npage" => b"\x1b[6~",
        "delete" | "dc" => b"\x1b[3~",
        "insert" | "ic" => b"\x1b[2~",
        "f1" => b"\x1bOP",
        "f2" => b"\x1bOQ",
        "f3" => b"\x1bOR",
        "f4" => b"\x1bOS",
        "f5" => b"\x1b[15~",
        "f6" => b"\x1b[17~",
        "f7" => b"\x1b[18~",
        "f8" => b"\x1b[19~",
        "f9" => b"\x1b[20~",
        "f10" => b"\x1b[21~",
        "f11" => b"\x1b[23~",
        "f12" => b"\x1b[24~",
        _ => return None,
    })
}

fn ctrl(c: char) -> Option<u8> {
    match c {
        'a'..='z' => Some(c as u8 - b'a' + 1),
        'A'..='Z' => Some(c as u8 - b'A' + 1),
        '@' | ' ' | '2' => Some(0),
        '[' | '3' => Some(0x1b),
        '\\' | '4' => Some(0x1c),
        ']' | '5' => Some(0x1d),
        '^' | '6' => Some(0x1e),
        '_' | '7' | '/' => Some(0x1f),
        '?' | '8' => Some(0x7f),
        _ => None,
    }
}

/// The bytes of one key name, or `None` if the word is not a key name.
pub fn key_bytes(word: &str) -> Result<Option<Vec<u8>>, UnknownKey> {
    if let Some(b) = named(word) {
        return Ok(Some(b.to_vec()));
    }
    let (prefix, rest) = match word.get(..2) {
        Some(p @ ("C-" | "c-" | "M-" | "m-")) if word.len() > 2 => (p, &word[2..]),
        _ => return Ok(None),
    };
    let inner = match key_bytes(rest)? {
        Some(b) => b,
        None if rest.chars().count() == 1 => rest.as_bytes().to_vec(),
        None => return Err(UnknownKey(word.to_string())),
    };
    if prefix.eq_ignore_ascii_case("M-") {
        let mut out = vec![0x1b];
        out.extend(inner);
        return Ok(Some(out));
    }
    // Ctrl applies to a single character.
    let c = rest.chars().next().filter(|_| rest.chars().count() == 1);
    match c.and_then(ctrl) {
        Some(b) => Ok(Some(vec![b])),
        None => Err(UnknownKey(word.to_string())),
    }
}

/// The bytes for a list of words: key names become keys, other words are literal text.
pub fn parse_keys<S: AsRef<str>>(words: &[S]) -> Result<Vec<u8>, UnknownKey> {
    let mut out = Vec::new();
    for w in words {
        let w = w.as_ref();
        match key_bytes(w)? {
            Some(b) => out.extend(b),
            None => out.extend_from_slice(w.as_bytes()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_literals() {
        assert_eq!(parse_keys(&["C-c"]).unwrap(), b"\x03");
        assert_eq!(parse_keys(&["echo hi", "Enter"]).unwrap(), b"echo hi\r");
        assert_eq!(
            parse_keys(&["Escape", "M-x", "Up"]).unwrap(),
            b"\x1b\x1bx\x1b[A"
        );
        assert_eq!(parse_keys(&["C-\\"]).unwrap(), b"\x1c");
        assert_eq!(parse_keys(&["M-Enter"]).unwrap(), b"\x1b\r");
        assert_eq!(parse_keys(&["enter"]).unwrap(), b"\r");
    }

    #[test]
    fn bad_modifier_is_named() {
        let err = parse_keys(&["C-foo"]).unwrap_err();
        assert!(err.to_string().contains("C-foo"));
        assert!(parse_keys(&["C-é"]).is_err());
    }
}
