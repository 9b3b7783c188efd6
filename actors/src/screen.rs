//! The terminal emulator view of a session: what a person would see now.

/// The screen `data` draws on a blank `cols`×`rows` terminal, as text (the
/// same text a session's screen gives): for output read back from a recording.
pub fn render_text(cols: u16, rows: u16, data: &[u8]) -> String {
    let mut s = Screen::new(cols, rows);
    s.feed(data);
    s.text()
}

/// The longest [`crate::SessionInfo::last_line`], in characters.
pub const LAST_LINE_MAX: usize = 256;

/// A vt100 screen fed with the session's output.
pub(crate) struct Screen {
    parser: vt100::Parser,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (rows, cols) = self.parser.screen().size();
        f.debug_struct("Screen")
            .field("rows", &rows)
            .field("cols", &cols)
            .finish()
    }
}

impl Screen {
    /// A blank screen of the given size (no scrollback: the output log keeps history).
    pub(crate) fn new(cols: u16, rows: u16) -> Self {
        Self {
            parser: vt100::Parser::new(rows.max(1), cols.max(1), 0),
        }
    }

    /// Applies output bytes.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        self.parser.process(data);
    }

    /// Changes the size, as the child's terminal was resized.
    pub(crate) fn resize(&mut self, cols: u16, rows: u16) {
        self.parser.screen_mut().set_size(rows.max(1), cols.max(1));
    }

    /// `(cols, rows)`.
    pub(crate) fn size(&self) -> (u16, u16) {
        let (rows, cols) = self.parser.screen().size();
        (cols, rows)
    }

    /// The visible text, one line per row, trailing blanks trimmed.
    pub(crate) fn text(&self) -> String {
        let screen = self.parser.screen();
        let (_, cols) = screen.size();
        let mut out = String::new();
        for row in screen.rows(0, cols) {
            out.push_str(row.trim_end());
            out.push('\n');
        }
        while out.ends_with("\n\n") {
            out.pop();
        }
        out
    }

    /// The last row with something on it, trimmed, at most [`LAST_LINE_MAX`]
    /// characters; `None` on a blank screen.
    pub(crate) fn last_line(&self) -> Option<String> {
        let screen = self.parser.screen();
        let (_, cols) = screen.size();
        let line = screen
            .rows(0, cols)
            .filter(|r| !r.trim().is_empty())
            .last()?;
        Some(line.trim().chars().take(LAST_LINE_MAX).collect())
    }

    /// Escape sequences that redraw this screen on a real terminal (for attach).
    pub(crate) fn redraw(&self) -> Vec<u8> {
        self.parser.screen().state_formatted()
    }

    /// Whether the program asked for bracketed paste (`ESC [ ? 2004 h`).
    pub(crate) fn bracketed_paste(&self) -> bool {
        self.parser.screen().bracketed_paste()
    }
}

#[cfg(test)]
mod tests {
    use super::Screen;

    #[test]
    fn renders_text_after_escape_sequences() {
        let mut s = Screen::new(20, 5);
        s.feed(b"hello\r\nworld\x1b[2J\x1b[Htop\r\n\x1b[31mred\x1b[0m");
        assert_eq!(s.text(), "top\nred\n");
        s.resize(10, 3);
        assert_eq!(s.size(), (10, 3));
    }

    #[test]
    fn last_line_is_the_lowest_row_with_text_bounded() {
        let mut s = Screen::new(300, 6);
        assert_eq!(s.last_line(), None);
        s.feed(b"first\r\n  \x1b[32msecond\x1b[0m  \r\n\r\n   \r\n");
        assert_eq!(s.last_line().as_deref(), Some("second"));
        s.feed(&[b'x'; 300]);
        assert_eq!(s.last_line().map(|l| l.len()), Some(super::LAST_LINE_MAX));
    }
}
