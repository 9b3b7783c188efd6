//! Draws the [`Model`] with ratatui: a header of fleet totals, the table of
//! the rows that fit (only those are built), a status line, the key help.

use super::model::{profile_name, tokens, Mode, Model};
use crate::client::output::{age, printable, short_id};
use herd_actors::{SessionInfo, SessionState};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table};
use ratatui::Frame;
use std::time::SystemTime;

/// A column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Short id.
    Id,
    /// Name.
    Name,
    /// Profile.
    Profile,
    /// State.
    State,
    /// Why it waits (waiting_input).
    Wait,
    /// CPU %.
    Cpu,
    /// Resident memory.
    Mem,
    /// Tokens used.
    Tokens,
    /// Cost.
    Cost,
    /// Restarts.
    Restarts,
    /// Age.
    Age,
    /// The screen's last line: takes the width left.
    Last,
}

impl Column {
    fn title(self) -> &'static str {
        match self {
            Self::Id => "ID",
            Self::Name => "NAME",
            Self::Profile => "PROFILE",
            Self::State => "STATE",
            Self::Wait => "WAIT",
            Self::Cpu => "CPU%",
            Self::Mem => "MEM",
            Self::Tokens => "TOKENS",
            Self::Cost => "COST",
            Self::Restarts => "RST",
            Self::Age => "AGE",
            Self::Last => "LAST LINE",
        }
    }

    /// Fixed width (the last line's is its minimum).
    fn width(self) -> u16 {
        match self {
            Self::Id => 8,
            Self::Name => 10,
            Self::Profile => 7,
            Self::State => 13,
            Self::Wait => 12,
            Self::Cpu => 5,
            Self::Mem => 6,
            Self::Tokens => 6,
            Self::Cost => 7,
            Self::Restarts => 3,
            Self::Age => 4,
            Self::Last => 12,
        }
    }
}

/// Every column, left to right.
const ORDER: [Column; 12] = [
    Column::Id,
    Column::Name,
    Column::Profile,
    Column::State,
    Column::Wait,
    Column::Cpu,
    Column::Mem,
    Column::Tokens,
    Column::Cost,
    Column::Restarts,
    Column::Age,
    Column::Last,
];

/// Which columns go first when the terminal is narrow, first to last.
const DROP_ORDER: [Column; 9] = [
    Column::Profile,
    Column::Restarts,
    Column::Tokens,
    Column::Age,
    Column::Wait,
    Column::Mem,
    Column::Cost,
    Column::Cpu,
    Column::Name,
];

/// The columns that fit in `width` cells (one space between two), in order.
pub fn columns(width: u16) -> Vec<Column> {
    let mut cols = ORDER.to_vec();
    let need = |cols: &[Column]| -> u16 {
        cols.iter().map(|c| c.width()).sum::<u16>() + cols.len().saturating_sub(1) as u16
    };
    for drop in DROP_ORDER {
        if need(&cols) <= width {
            break;
        }
        cols.retain(|c| *c != drop);
    }
    cols
}

/// Draws the whole screen; sets `model.page` to the rows that fit.
pub fn draw(f: &mut Frame, model: &mut Model) {
    let [header, table, status] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(header_lines(model)), header);
    draw_table(f, model, table);
    f.render_widget(Paragraph::new(status_line(model)), status);
    if model.mode == Mode::Help {
        draw_help(f);
    }
}

/// Fleet totals: sessions by state, busy/max_busy and a pause, tokens and cost.
fn header_lines(m: &Model) -> Vec<Line<'static>> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut first = vec![Span::styled(
        match m.sessions().len() {
            1 => "herd top  1 session".to_string(),
            n => format!("herd top  {n} sessions"),
        },
        bold,
    )];
    let mut counts = [0usize; SessionState::ALL.len()];
    for s in m.sessions() {
        if let Some(i) = SessionState::ALL.iter().position(|x| *x == s.state) {
            counts[i] += 1;
        }
    }
    for (state, n) in SessionState::ALL.iter().zip(counts) {
        if n > 0 {
            first.push(Span::raw(format!("  {n} ")));
            first.push(Span::styled(state.as_str(), state_style(*state)));
        }
    }
    let (tokens, cost): (u64, f64) = match &m.stats {
        Some(s) => (
            {
                let u = &s.totals.usage;
                u.input_tokens
                    + u.output_tokens
                    + u.cache_creation_input_tokens
                    + u.cache_read_input_tokens
            },
            s.totals.cost_usd,
        ),
        None => (
            m.sessions().iter().map(tokens).sum(),
            m.sessions().iter().map(|s| s.cost_usd).sum(),
        ),
    };
    let mut second = Vec::new();
    if let Some(s) = &m.stats {
        let f = &s.fleet;
        let cap = if f.max_busy == 0 {
            "no cap".to_string()
        } else {
            f.max_busy.to_string()
        };
        second.push(Span::raw(format!("busy {}/{cap}", f.busy)));
        if f.waiting > 0 {
            second.push(Span::raw(format!("  {} waiting for a slot", f.waiting)));
        }
        if let Some(until) = f.paused_until {
            let left = until
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .as_secs();
            second.push(Span::styled(
                format!("  RATE LIMITED: paused {left}s"),
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
        }
        second.push(Span::raw(format!(
            "  cpu {:.0}%  mem {}",
            s.totals.cpu_percent,
            bytes(s.totals.rss_bytes)
        )));
    }
    second.push(Span::raw(format!(
        "  tokens {}  cost ${cost:.2}",
        count(tokens)
    )));
    vec![Line::from(first), Line::from(second)]
}

/// The rows that fit, the selected one kept in view.
fn draw_table(f: &mut Frame, m: &mut Model, area: Rect) {
    let cols = columns(area.width);
    let height = area.height.saturating_sub(1) as usize;
    m.page = height.max(1);
    let selected = m.selected_index();
    // The window follows the selection: the selected row is on screen.
    let offset = selected.map_or(0, |s| s.saturating_sub(height.saturating_sub(1)));
    let rows: Vec<Row> = m
        .rows()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(i, s)| {
            let style = if Some(i) == selected {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            };
            Row::new(cols.iter().map(|c| cell(*c, s))).style(style)
        })
        .collect();
    let widths: Vec<Constraint> = cols
        .iter()
        .map(|c| match c {
            Column::Last => Constraint::Fill(1),
            _ => Constraint::Length(c.width()),
        })
        .collect();
    let header = Row::new(cols.iter().map(|c| c.title()))
        .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    f.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        area,
    );
}

/// One cell's text.
fn cell(c: Column, s: &SessionInfo) -> ratatui::text::Text<'static> {
    let text = match c {
        Column::Id => short_id(&s.id),
        Column::Name => printable(s.name.as_deref().unwrap_or("")),
        Column::Profile => profile_name(s.profile).into(),
        Column::State => {
            return Span::styled(s.state.as_str(), state_style(s.state)).into();
        }
        Column::Wait => match (&s.waiting, s.state) {
            (Some(w), SessionState::WaitingInput) => match &w.tool {
                Some(tool) => format!("perm {tool}"),
                None => w.reason.as_str().into(),
            },
            _ => String::new(),
        },
        Column::Cpu => format!("{:.0}", s.metrics.cpu_percent),
        Column::Mem => bytes(s.metrics.rss_bytes),
        Column::Tokens => match tokens(s) {
            0 => String::new(),
            n => count(n),
        },
        Column::Cost if s.cost_usd == 0.0 => String::new(),
        Column::Cost => format!("${:.2}", s.cost_usd),
        Column::Restarts => s.restarts.to_string(),
        Column::Age => age(s.created_at),
        Column::Last => printable(s.last_line.as_deref().unwrap_or("")),
    };
    text.into()
}

fn state_style(s: SessionState) -> Style {
    let color = match s {
        SessionState::WaitingInput => Color::Yellow,
        SessionState::Busy => Color::Cyan,
        SessionState::Ready => Color::Green,
        SessionState::Failed => Color::Red,
        SessionState::Stopped => Color::DarkGray,
        _ => Color::Magenta,
    };
    Style::default().fg(color)
}

/// The bottom line: the filter being typed, a confirmation, a message, or
/// the main keys.
fn status_line(m: &Model) -> Line<'static> {
    match &m.mode {
        Mode::Filter => Line::from(format!("/{}", m.filter)),
        Mode::ConfirmRestart(id) => {
            let name = m
                .session(*id)
                .and_then(|s| s.name.clone())
                .map(|n| format!(" ({})", printable(&n)))
                .unwrap_or_default();
            Line::styled(
                format!("restart {}{name}? y/n", short_id(id)),
                Style::default().add_modifier(Modifier::BOLD),
            )
        }
        _ => {
            let mut spans = Vec::new();
            if let Some(msg) = &m.flash {
                spans.push(Span::styled(
                    format!("{} ", printable(msg)),
                    Style::default().add_modifier(Modifier::BOLD),
                ));
            }
            if !m.filter.is_empty() {
                spans.push(Span::raw(format!("filter:{} ", m.filter)));
            }
            spans.push(Span::raw(format!(
                "sort:{} {}/{}  ? help  q quit",
                m.sort.as_str(),
                m.selected_index().map_or(0, |i| i + 1),
                m.len()
            )));
            Line::from(spans)
        }
    }
}

/// The key help.
pub const HELP: &[(&str, &str)] = &[
    ("↑/↓ PgUp/PgDn Home/End", "select"),
    ("/", "filter (Enter keeps, Esc clears)"),
    ("s", "sort: state, cpu, mem, cost, age"),
    ("Enter, a", "attach (detach with Ctrl+\\)"),
    ("y / n / !", "answer the dialog: yes, no, always"),
    ("i", "interrupt the turn"),
    ("r", "restart (asks y/n)"),
    ("q, Esc", "quit"),
];

fn draw_help(f: &mut Frame) {
    let area = f.area();
    let w = area.width.min(60);
    let h = (HELP.len() as u16 + 2).min(area.height);
    let rect = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| Line::from(format!("{k:<24}{v}")))
        .collect();
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" keys ")),
        rect,
    );
}

/// `1.2k`, `3.4M`: a count in five cells or fewer.
fn count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// `512K`, `12M`, `1.5G`: bytes in six cells or fewer.
fn bytes(n: u64) -> String {
    const K: u64 = 1024;
    match n {
        0 => "-".into(),
        1..K => format!("{n}B"),
        K..0x100000 => format!("{}K", n / K),
        0x100000..0x40000000 => format!("{}M", n / (K * K)),
        _ => format!("{:.1}G", n as f64 / (K * K * K) as f64),
    }
}
