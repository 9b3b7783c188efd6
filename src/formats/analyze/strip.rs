//! Terminal text without its escape sequences, for `herd analyze`: the
//! [`Stripper`] turns characters into [`Token`]s, and [`OutputLine`] builds
//! the output lines the error words are looked for in.

use super::MAX_LINE_CHARS;

/// A piece of terminal text with escape sequences taken out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// A printable character.
    Char(char),
    /// A C0 or C1 control character (`\r`, `\n`, Backspace, ...).
    Control(char),
    /// A CSI sequence, by its final byte (`H` cursor position, `J` erase, ...).
    Csi(char),
    /// Any other escape sequence, by its final character (`c`: reset).
    Esc(char),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum StripState {
    #[default]
    Ground,
    Esc,
    EscIntermediate,
    Csi,
    /// OSC: ends with BEL or ESC \.
    Osc,
    /// DCS, SOS, PM, APC: end with ESC \.
    Str,
    /// ESC inside an OSC or string: `\` ends it.
    StrEsc,
}

/// Takes escape sequences out of terminal text, one character at a time (a
/// sequence may be split between two events).
#[derive(Debug, Default)]
pub struct Stripper {
    state: StripState,
    len: usize,
}

/// Longest escape sequence followed; longer is taken as garbage.
const MAX_SEQUENCE: usize = 4096;

impl Stripper {
    /// Takes the next character; what it amounts to, if anything.
    pub fn feed(&mut self, c: char) -> Option<Token> {
        use StripState::*;
        if self.state != Ground {
            self.len += 1;
            if self.len > MAX_SEQUENCE {
                self.state = Ground;
            }
        }
        match self.state {
            Ground => {
                if c == '\x1b' {
                    self.state = Esc;
                    self.len = 0;
                    None
                } else if c.is_control() {
                    Some(Token::Control(c))
                } else {
                    Some(Token::Char(c))
                }
            }
            Esc => {
                self.state = match c {
                    '[' => Csi,
                    ']' => Osc,
                    'P' | 'X' | '^' | '_' => Str,
                    '\x1b' => Esc,
                    ' '..='/' | 'O' => EscIntermediate,
                    _ => {
                        self.state = Ground;
                        return Some(Token::Esc(c));
                    }
                };
                None
            }
            EscIntermediate => {
                if !(' '..='/').contains(&c) {
                    self.state = Ground;
                    return Some(Token::Esc(c));
                }
                None
            }
            Csi => match c {
                '\x40'..='\x7e' => {
                    self.state = Ground;
                    Some(Token::Csi(c))
                }
                '\x1b' => {
                    self.state = Esc;
                    None
                }
                _ => None,
            },
            Osc => {
                match c {
                    '\x07' => self.state = Ground,
                    '\x1b' => self.state = StrEsc,
                    _ => {}
                }
                None
            }
            Str => {
                if c == '\x1b' {
                    self.state = StrEsc;
                }
                None
            }
            StrEsc => {
                if c == '\\' {
                    self.state = Ground;
                    None
                } else {
                    // Not a terminator: a new escape sequence starts.
                    self.state = Esc;
                    self.feed(c)
                }
            }
        }
    }
}

/// Builds output lines from tokens: `\n` ends a line; `\r` then text
/// overwrites it; moving the cursor to another line or clearing the screen
/// also ends it.
#[derive(Debug, Default)]
pub(super) struct OutputLine {
    buf: String,
    chars: usize,
    start: f64,
    cr: bool,
}

impl OutputLine {
    /// Takes a token at `time`; a finished line (its start and text), if any.
    pub(super) fn token(&mut self, tok: Token, time: f64) -> Option<(f64, String)> {
        match tok {
            Token::Char(c) => self.push(c, time),
            Token::Control('\t') => self.push(' ', time),
            Token::Control('\r') => self.cr = true,
            Token::Control('\x08') if self.buf.pop().is_some() => self.chars -= 1,
            Token::Control('\n' | '\x0b' | '\x0c')
            | Token::Csi('H' | 'f' | 'd' | 'E' | 'F' | 'J')
            | Token::Esc('c') => {
                return self.finish().map(|(text, start)| (start, text));
            }
            _ => {}
        }
        None
    }

    fn push(&mut self, c: char, time: f64) {
        if self.cr {
            self.buf.clear();
            self.chars = 0;
            self.cr = false;
        }
        if self.buf.is_empty() {
            self.start = time;
        }
        if self.chars < MAX_LINE_CHARS {
            self.buf.push(c);
            self.chars += 1;
        }
    }

    /// The pending line (text, start), if it has any text.
    pub(super) fn finish(&mut self) -> Option<(String, f64)> {
        let text = self.buf.trim().to_string();
        self.buf.clear();
        self.chars = 0;
        self.cr = false;
        (!text.is_empty()).then_some((text, self.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(s: &str) -> String {
        let mut st = Stripper::default();
        s.chars()
            .filter_map(|c| match st.feed(c) {
                Some(Token::Char(c)) => Some(c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn strips_escape_sequences_even_split_between_events() {
        assert_eq!(
            strip("\x1b[1;31mred\x1b[0m \x1b]0;title\x07ok \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \x1b(Bz \x1bOA\x1b[?2004h."),
            "red ok link z ."
        );
        let mut st = Stripper::default();
        let a: Vec<_> = "ab\x1b[3".chars().filter_map(|c| st.feed(c)).collect();
        let b: Vec<_> = "1mc".chars().filter_map(|c| st.feed(c)).collect();
        assert_eq!(a, [Token::Char('a'), Token::Char('b')]);
        assert_eq!(b, [Token::Csi('m'), Token::Char('c')]);
    }
}
