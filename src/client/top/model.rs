//! What `herd top` shows, without a terminal: the fleet from the last list
//! and the events since, the filter, the sort, the selection, and what a key
//! asks for. The view draws it; the loop in `top.rs` does what it asks.

use crate::daemon::api::stats::Stats;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use herd_actors::{Event, SessionInfo, SessionState};
use std::cmp::Ordering;
use std::collections::HashMap;
use uuid::Uuid;

/// The orders `s` cycles through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Sessions that need a person first, ended ones last.
    State,
    /// Highest CPU first.
    Cpu,
    /// Most memory first.
    Mem,
    /// Most expensive first.
    Cost,
    /// Oldest first.
    Age,
}

impl SortKey {
    /// The next order after this one.
    fn next(self) -> Self {
        match self {
            Self::State => Self::Cpu,
            Self::Cpu => Self::Mem,
            Self::Mem => Self::Cost,
            Self::Cost => Self::Age,
            Self::Age => Self::State,
        }
    }

    /// Its name on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::State => "state",
            Self::Cpu => "cpu",
            Self::Mem => "mem",
            Self::Cost => "cost",
            Self::Age => "age",
        }
    }
}

/// What the user is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Browsing the list.
    Normal,
    /// Typing the filter after `/`.
    Filter,
    /// Asked to confirm a restart of this session.
    ConfirmRestart(Uuid),
    /// The key help is open.
    Help,
}

/// What a key asks the loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave `herd top`.
    Quit,
    /// Attach the terminal to this session.
    Attach(Uuid),
    /// Answer this session's dialog: `yes`, `no` or `always`.
    Answer(Uuid, &'static str),
    /// Interrupt this session's turn.
    Interrupt(Uuid),
    /// Restart this session (confirmed).
    Restart(Uuid),
}

/// The fleet as `herd top` knows it, and the user's view of it.
#[derive(Debug)]
pub struct Model {
    sessions: Vec<SessionInfo>,
    /// Index in `sessions` by id, so an event finds its row in O(1).
    by_id: HashMap<Uuid, usize>,
    /// Indices in `sessions` of the rows shown, filtered and sorted.
    rows: Vec<usize>,
    /// The daemon-wide figures of the last poll.
    pub stats: Option<Stats>,
    /// Sessions shown contain this text (id, name, state, profile, last line).
    pub filter: String,
    /// The current order.
    pub sort: SortKey,
    /// What the user is doing.
    pub mode: Mode,
    /// The selected session, kept by id across refreshes and re-sorts.
    selected: Option<Uuid>,
    /// A line for the user: the outcome of an action, a connection problem.
    pub flash: Option<String>,
    /// Rows per page (the view sets it from the terminal's height).
    pub page: usize,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            sessions: Vec::new(),
            by_id: HashMap::new(),
            rows: Vec::new(),
            stats: None,
            filter: String::new(),
            sort: SortKey::State,
            mode: Mode::Normal,
            selected: None,
            flash: None,
            page: 10,
        }
    }
}

/// Where a state sorts under [`SortKey::State`]: what needs a person first.
fn state_rank(s: SessionState) -> u8 {
    match s {
        SessionState::WaitingInput => 0,
        SessionState::Busy => 1,
        SessionState::Ready => 2,
        SessionState::Failed => 8,
        SessionState::Stopped => 9,
        _ => 5,
    }
}

/// Total tokens of a session's answered messages.
pub fn tokens(s: &SessionInfo) -> u64 {
    let u = &s.usage;
    u.input_tokens + u.output_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens
}

/// The profile's name.
pub fn profile_name(p: herd_actors::Profile) -> &'static str {
    match p {
        herd_actors::Profile::Generic => "generic",
        herd_actors::Profile::Shell => "shell",
        herd_actors::Profile::Claude => "claude",
    }
}

impl Model {
    /// Takes a fresh list from the daemon (it replaces the one before).
    pub fn set_sessions(&mut self, list: Vec<SessionInfo>) {
        let before = self.selected_index();
        self.by_id = list.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        self.sessions = list;
        // The old rows index the old list.
        self.rows.clear();
        self.rebuild_from(before);
    }

    /// Applies a transition from `WS /v1/events`; false if the session is
    /// not in the list yet (a refresh will bring it).
    pub fn apply_event(&mut self, e: &Event) -> bool {
        let Some(&i) = self.by_id.get(&e.session_id) else {
            return false;
        };
        let s = &mut self.sessions[i];
        s.state = e.to;
        s.reason = e.reason.clone();
        s.generation = e.generation;
        s.updated_at = e.at;
        if e.to != SessionState::WaitingInput {
            s.waiting = None;
        }
        if self.sort == SortKey::State || !self.filter.is_empty() {
            self.rebuild();
        }
        true
    }

    /// Every session in the last list.
    pub fn sessions(&self) -> &[SessionInfo] {
        &self.sessions
    }

    /// The sessions shown, in order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &SessionInfo> {
        self.rows.iter().map(|&i| &self.sessions[i])
    }

    /// How many sessions are shown.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The selected row's position among those shown.
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected?;
        self.rows.iter().position(|&i| self.sessions[i].id == id)
    }

    /// The selected session.
    pub fn selected(&self) -> Option<&SessionInfo> {
        self.selected_index().map(|i| &self.sessions[self.rows[i]])
    }

    /// The session with this id, if listed.
    pub fn session(&self, id: Uuid) -> Option<&SessionInfo> {
        self.by_id.get(&id).map(|&i| &self.sessions[i])
    }

    /// Filters and sorts again (O(n log n)); the selection stays on its
    /// session if still shown, else on the row at the same position.
    fn rebuild(&mut self) {
        self.rebuild_from(self.selected_index());
    }

    /// As [`Self::rebuild`], the selection at `before` if its session is gone.
    fn rebuild_from(&mut self, before: Option<usize>) {
        let needle = self.filter.to_lowercase();
        let sessions = &self.sessions;
        let mut rows: Vec<usize> = (0..sessions.len())
            .filter(|&i| needle.is_empty() || matches_filter(&sessions[i], &needle))
            .collect();
        let key = self.sort;
        rows.sort_by(|&a, &b| compare(key, &sessions[a], &sessions[b]));
        self.rows = rows;
        if self.selected_index().is_none() {
            self.select_at(before.unwrap_or(0));
        }
    }

    /// Selects the row at `i`, clamped to the rows shown.
    fn select_at(&mut self, i: usize) {
        self.selected = match self.rows.len() {
            0 => None,
            n => Some(self.sessions[self.rows[i.min(n - 1)]].id),
        };
    }

    /// Moves the selection by `delta` rows, clamped.
    fn move_by(&mut self, delta: isize) {
        let at = self.selected_index().unwrap_or(0);
        self.select_at(at.saturating_add_signed(delta));
    }

    /// Handles a key; returns what the loop must do.
    pub fn key(&mut self, k: KeyEvent) -> Action {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        match self.mode.clone() {
            Mode::Help => {
                self.mode = Mode::Normal;
                match k.code {
                    KeyCode::Char('q') => Action::Quit,
                    _ => Action::None,
                }
            }
            Mode::Filter => {
                match k.code {
                    KeyCode::Enter => self.mode = Mode::Normal,
                    KeyCode::Esc => {
                        self.filter.clear();
                        self.mode = Mode::Normal;
                    }
                    KeyCode::Backspace => {
                        self.filter.pop();
                    }
                    KeyCode::Char(c) if !c.is_control() => self.filter.push(c),
                    _ => return Action::None,
                }
                self.rebuild();
                Action::None
            }
            Mode::ConfirmRestart(id) => {
                self.mode = Mode::Normal;
                match k.code {
                    KeyCode::Char('y') | KeyCode::Char('Y') => Action::Restart(id),
                    _ => {
                        self.flash = Some("restart cancelled".into());
                        Action::None
                    }
                }
            }
            Mode::Normal => self.normal_key(k),
        }
    }

    fn normal_key(&mut self, k: KeyEvent) -> Action {
        let page = self.page.max(1) as isize;
        match k.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Esc if self.filter.is_empty() => return Action::Quit,
            KeyCode::Esc => {
                self.filter.clear();
                self.rebuild();
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-page),
            KeyCode::PageDown => self.move_by(page),
            KeyCode::Home => self.select_at(0),
            KeyCode::End => self.select_at(usize::MAX),
            KeyCode::Char('/') => self.mode = Mode::Filter,
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.rebuild();
            }
            KeyCode::Enter | KeyCode::Char('a') => {
                if let Some(s) = self.selected() {
                    return Action::Attach(s.id);
                }
            }
            KeyCode::Char(c @ ('y' | 'n' | '!')) => {
                let Some(s) = self.selected() else {
                    return Action::None;
                };
                if s.state != SessionState::WaitingInput {
                    self.flash = Some(format!(
                        "{} is {}: no dialog to answer",
                        crate::client::output::short_id(&s.id),
                        s.state
                    ));
                    return Action::None;
                }
                let choice = match c {
                    'y' => "yes",
                    'n' => "no",
                    _ => "always",
                };
                return Action::Answer(s.id, choice);
            }
            KeyCode::Char('i') => {
                if let Some(s) = self.selected() {
                    return Action::Interrupt(s.id);
                }
            }
            KeyCode::Char('r') => {
                if let Some(s) = self.selected() {
                    self.mode = Mode::ConfirmRestart(s.id);
                }
            }
            _ => {}
        }
        Action::None
    }
}

fn matches_filter(s: &SessionInfo, needle: &str) -> bool {
    let has = |t: &str| t.to_lowercase().contains(needle);
    s.id.simple().to_string().starts_with(needle)
        || s.name.as_deref().is_some_and(has)
        || s.state.as_str().contains(needle)
        || profile_name(s.profile).contains(needle)
        || s.task_id.as_deref().is_some_and(has)
        || s.project_id.as_deref().is_some_and(has)
        || s.last_line.as_deref().is_some_and(has)
}

/// The order of two sessions under `key`; ties by age then id, so the order
/// is total and stable across refreshes.
fn compare(key: SortKey, a: &SessionInfo, b: &SessionInfo) -> Ordering {
    let by_key = match key {
        SortKey::State => state_rank(a.state).cmp(&state_rank(b.state)),
        SortKey::Cpu => b.metrics.cpu_percent.total_cmp(&a.metrics.cpu_percent),
        SortKey::Mem => b.metrics.rss_bytes.cmp(&a.metrics.rss_bytes),
        SortKey::Cost => b
            .cost_usd
            .total_cmp(&a.cost_usd)
            .then_with(|| tokens(b).cmp(&tokens(a))),
        SortKey::Age => Ordering::Equal,
    };
    by_key
        .then_with(|| a.created_at.cmp(&b.created_at))
        .then_with(|| a.id.cmp(&b.id))
}
