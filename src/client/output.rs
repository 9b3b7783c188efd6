//! Human output: aligned tables and short forms.

use std::time::SystemTime;
use uuid::Uuid;

/// The first 8 hex digits of an id: unique enough to type, accepted as a prefix.
pub fn short_id(id: &Uuid) -> String {
    id.simple().to_string()[..8].to_string()
}

/// Time since `t`, coarse: `42s`, `5m`, `3h`, `2d`.
pub fn age(t: SystemTime) -> String {
    let s = SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Columns of the terminal on stdout; `None` when stdout is not a terminal
/// (a pipe or a file gets whole lines).
pub fn terminal_width() -> Option<usize> {
    // SAFETY: isatty and TIOCGWINSZ only inspect the descriptor; `ws` is ours.
    unsafe {
        if libc::isatty(libc::STDOUT_FILENO) != 1 {
            return None;
        }
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) != 0 || ws.ws_col == 0 {
            return None;
        }
        Some(ws.ws_col as usize)
    }
}

/// `s` made safe to print to a terminal: control characters (escape
/// sequences) and bidirectional overrides, which could rewrite or reorder
/// what the reader sees, are shown as `\u{..}` escapes.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// A table whose columns are padded to their widest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers.
    pub fn new<const N: usize>(headers: [&str; N]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(cells.iter().map(|c| printable(c)).collect());
    }

    /// Like [`Self::render`], each line cut to `width` characters (with `…`)
    /// when a width is given: the last column (a command) gives way.
    pub fn render_fit(&self, width: Option<usize>) -> String {
        let text = self.render();
        let Some(w) = width.filter(|w| *w > 1) else {
            return text;
        };
        let mut out = String::with_capacity(text.len());
        for line in text.lines() {
            if line.chars().count() > w {
                out.extend(line.chars().take(w - 1));
                out.push('…');
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    }

    /// The text, one line per row; the last column is not padded.
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for r in &self.rows {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                if c + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(["A", "BB"]);
        t.row(["xxx".into(), "y".into()]);
        assert_eq!(t.render(), "A    BB\nxxx  y\n");
        assert_eq!(t.render_fit(Some(6)), "A    …\nxxx  y\n");
        assert_eq!(t.render_fit(None), t.render());
    }

    #[test]
    fn escapes_and_bidi_overrides_are_shown_not_obeyed() {
        assert_eq!(printable("ok name"), "ok name");
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        let mut t = Table::new(["NAME"]);
        t.row(["x\u{1b}]0;title\u{7}".to_string()]);
        assert!(!t.render().contains('\u{1b}'));
    }
}
