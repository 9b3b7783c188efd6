//! The model and the view of `herd top`, drawn on ratatui's `TestBackend`.

use super::model::{Action, Mode, Model, SortKey};
use super::view::{self, Column};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use herd_actors::{Event, Metrics, SessionInfo, SessionState, Waiting};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::time::{Duration, Instant, SystemTime};
use uuid::Uuid;

/// Session `n`: created `n` seconds after the first, with `n`-dependent figures.
fn session(n: u32, state: SessionState) -> SessionInfo {
    let t0 = SystemTime::now() - Duration::from_secs(100_000);
    SessionInfo {
        id: Uuid::from_u128(0x1000_0000_0000_0000_0000_0000_0000_0000 + u128::from(n)),
        name: Some(format!("worker-{n}")),
        state,
        reason: "test".into(),
        cause: None,
        pid: Some(1000 + n as i32),
        generation: 0,
        restarts: u64::from(n % 3),
        exit_code: None,
        exit_signal: None,
        profile: herd_actors::Profile::Claude,
        dialog: None,
        waiting: None,
        error: None,
        usage: Default::default(),
        cost_usd: f64::from(n % 7) / 10.0,
        task_id: None,
        project_id: None,
        command: vec!["sh".into()],
        cwd: None,
        worktree: None,
        node: None,
        cols: 80,
        rows: 24,
        created_at: t0 + Duration::from_secs(u64::from(n)),
        started_at: None,
        updated_at: t0,
        restart: Default::default(),
        limits: Default::default(),
        metrics: Metrics {
            cpu_percent: (n % 11) as f32,
            rss_bytes: u64::from(n % 5) << 20,
            ..Default::default()
        },
        last_line: Some(format!("line of {n}")),
    }
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// The text of a frame of `model` drawn at `cols`×`rows`, one string a line.
fn render(model: &mut Model, cols: u16, rows: u16) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(cols, rows)).unwrap();
    t.draw(|f| view::draw(f, model)).unwrap();
    let buf = t.backend().buffer();
    (0..rows)
        .map(|y| {
            (0..cols)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .collect()
}

fn names(m: &Model) -> Vec<String> {
    m.rows().map(|s| s.name.clone().unwrap()).collect()
}

#[test]
fn sorts_by_state_then_cycles_through_cpu_mem_cost_age() {
    let mut m = Model::default();
    m.set_sessions(vec![
        session(1, SessionState::Stopped),
        session(2, SessionState::Ready),
        session(3, SessionState::WaitingInput),
        session(4, SessionState::Busy),
    ]);
    // What needs a person first, ended sessions last.
    assert_eq!(names(&m), ["worker-3", "worker-4", "worker-2", "worker-1"]);
    m.key(ch('s'));
    assert_eq!(m.sort, SortKey::Cpu);
    assert_eq!(names(&m), ["worker-4", "worker-3", "worker-2", "worker-1"]);
    m.key(ch('s'));
    assert_eq!(m.sort, SortKey::Mem);
    assert_eq!(names(&m), ["worker-4", "worker-3", "worker-2", "worker-1"]);
    m.key(ch('s'));
    assert_eq!(m.sort, SortKey::Cost);
    assert_eq!(names(&m), ["worker-4", "worker-3", "worker-2", "worker-1"]);
    m.key(ch('s'));
    assert_eq!(m.sort, SortKey::Age);
    assert_eq!(names(&m), ["worker-1", "worker-2", "worker-3", "worker-4"]);
    m.key(ch('s'));
    assert_eq!(m.sort, SortKey::State);
}

#[test]
fn the_selection_follows_its_session_through_a_resort() {
    let mut m = Model::default();
    m.set_sessions((1..=5).map(|n| session(n, SessionState::Ready)).collect());
    m.key(key(KeyCode::Down));
    m.key(key(KeyCode::Down));
    assert_eq!(m.selected().unwrap().name.as_deref(), Some("worker-3"));
    m.key(ch('s')); // cpu: 5, 4, 3, 2, 1
    assert_eq!(m.selected().unwrap().name.as_deref(), Some("worker-3"));
    assert_eq!(m.selected_index(), Some(2));
}

#[test]
fn filter_narrows_by_name_state_or_last_line_and_esc_clears_it() {
    let mut m = Model::default();
    m.set_sessions((1..=20).map(|n| session(n, SessionState::Ready)).collect());
    assert_eq!(m.key(ch('/')), Action::None);
    assert_eq!(m.mode, Mode::Filter);
    for c in "worker-1".chars() {
        m.key(ch(c));
    }
    // worker-1 and worker-10..19.
    assert_eq!(m.len(), 11);
    m.key(ch('7'));
    assert_eq!(names(&m), ["worker-17"]);
    m.key(key(KeyCode::Enter));
    assert_eq!(m.mode, Mode::Normal);
    assert_eq!(m.selected().unwrap().name.as_deref(), Some("worker-17"));
    // Esc in the list clears the filter before it would quit.
    assert_eq!(m.key(key(KeyCode::Esc)), Action::None);
    assert_eq!(m.len(), 20);
    assert_eq!(m.key(key(KeyCode::Esc)), Action::Quit);
    // By the screen's last line too.
    m.key(ch('/'));
    for c in "LINE OF 20".chars() {
        m.key(ch(c));
    }
    assert_eq!(names(&m), ["worker-20"]);
    m.key(key(KeyCode::Backspace));
    m.key(key(KeyCode::Backspace));
    assert_eq!(m.len(), 20, "'line of ' is on every row");
}

#[test]
fn selection_is_clamped_at_1000_rows_and_only_visible_rows_are_drawn() {
    let mut m = Model::default();
    m.set_sessions((0..1000).map(|n| session(n, SessionState::Ready)).collect());
    m.sort = SortKey::Age;
    m.key(ch('s'));
    m.key(ch('s'));
    m.key(ch('s'));
    m.key(ch('s'));
    m.key(ch('s')); // back to Age after a full cycle
    assert_eq!(m.sort, SortKey::Age);
    m.key(key(KeyCode::Up));
    assert_eq!(m.selected_index(), Some(0));
    m.key(key(KeyCode::End));
    assert_eq!(m.selected_index(), Some(999));
    m.key(key(KeyCode::Down));
    assert_eq!(m.selected_index(), Some(999));
    let screen = render(&mut m, 80, 24);
    // 2 header lines, the column titles, 20 rows, the status line.
    assert_eq!(m.page, 20);
    assert!(screen[22].contains("worker-999"), "{screen:#?}");
    assert!(screen[3].contains("worker-980"), "{screen:#?}");
    assert!(screen[23].contains("1000/1000"), "{screen:#?}");
    m.key(key(KeyCode::PageUp));
    assert_eq!(m.selected_index(), Some(979));
    m.key(key(KeyCode::Home));
    m.key(key(KeyCode::PageUp));
    assert_eq!(m.selected_index(), Some(0));
    m.key(key(KeyCode::PageDown));
    assert_eq!(m.selected_index(), Some(20));
    // A shorter list clamps the selection to its end.
    m.set_sessions((0..5).map(|n| session(n, SessionState::Ready)).collect());
    assert_eq!(m.selected_index(), Some(4));
    m.set_sessions(vec![]);
    assert_eq!(m.selected_index(), None);
    assert_eq!(m.key(key(KeyCode::Enter)), Action::None);
}

#[test]
fn columns_drop_by_priority_and_the_last_line_takes_the_rest() {
    use Column::*;
    assert_eq!(
        view::columns(80),
        [Id, Name, State, Wait, Cpu, Mem, Cost, Last]
    );
    assert_eq!(view::columns(40), [Id, State, Last]);
    assert_eq!(view::columns(200).len(), 12);
    let mut m = Model::default();
    let mut s = session(7, SessionState::WaitingInput);
    s.waiting = Some(Waiting {
        reason: herd_actors::WaitReason::Permission,
        tool: Some("Bash".into()),
        summary: None,
        choices: vec![],
        message: None,
    });
    s.last_line = Some("Do you want to proceed? ".to_string() + &"x".repeat(100));
    m.set_sessions(vec![s]);
    let screen = render(&mut m, 80, 24);
    let title = &screen[2];
    for t in [
        "ID",
        "NAME",
        "STATE",
        "WAIT",
        "CPU%",
        "MEM",
        "COST",
        "LAST LINE",
    ] {
        assert!(title.contains(t), "{t} missing: {title}");
    }
    for t in ["PROFILE", "TOKENS", "RST", "AGE"] {
        assert!(!title.contains(t), "{t} at 80 columns: {title}");
    }
    let row = &screen[3];
    assert!(row.starts_with("10000000 worker-7"), "{row}");
    assert!(row.contains("waiting_input perm Bash"), "{row}");
    // The last line gets what is left, 12 cells at 80 columns, and at a
    // wider terminal fills the row to the edge, cut there.
    assert_eq!(row.chars().count(), 80);
    assert!(row.ends_with(" Do you want "), "{row}");
    let wide = &render(&mut m, 160, 24)[3];
    assert!(wide.contains("Do you want to proceed? xxx"), "{wide}");
    assert!(wide.ends_with('x'), "{wide}");
}

#[test]
fn events_move_rows_live_and_a_new_session_asks_for_a_list() {
    let mut m = Model::default();
    m.set_sessions(vec![
        session(1, SessionState::Ready),
        session(2, SessionState::Ready),
    ]);
    let mut e = Event {
        session_id: session(2, SessionState::Ready).id,
        task_id: None,
        project_id: None,
        from: SessionState::Ready,
        to: SessionState::Busy,
        reason: "prompt".into(),
        cause: None,
        at: SystemTime::now(),
        generation: 0,
    };
    assert!(m.apply_event(&e));
    assert_eq!(names(&m), ["worker-2", "worker-1"]);
    let screen = render(&mut m, 100, 10).join("\n");
    assert!(screen.contains("1 ready"), "{screen}");
    assert!(screen.contains("1 busy"), "{screen}");
    e.session_id = Uuid::nil();
    assert!(!m.apply_event(&e));
}

#[test]
fn dialog_keys_answer_only_a_waiting_session_and_restart_asks_first() {
    let mut m = Model::default();
    m.set_sessions(vec![
        session(1, SessionState::WaitingInput),
        session(2, SessionState::Ready),
    ]);
    let waiting = session(1, SessionState::Ready).id;
    assert_eq!(m.key(ch('y')), Action::Answer(waiting, "yes"));
    assert_eq!(m.key(ch('n')), Action::Answer(waiting, "no"));
    assert_eq!(m.key(ch('!')), Action::Answer(waiting, "always"));
    assert_eq!(m.key(ch('i')), Action::Interrupt(waiting));
    assert_eq!(m.key(ch('a')), Action::Attach(waiting));
    m.key(key(KeyCode::Down));
    assert_eq!(m.key(ch('y')), Action::None);
    assert!(
        m.flash.as_deref().unwrap().contains("no dialog"),
        "{:?}",
        m.flash
    );
    let ready = session(2, SessionState::Ready).id;
    assert_eq!(m.key(ch('r')), Action::None);
    assert_eq!(m.mode, Mode::ConfirmRestart(ready));
    let screen = render(&mut m, 80, 24);
    assert!(
        screen[23].contains("restart 10000000 (worker-2)? y/n"),
        "{screen:#?}"
    );
    assert_eq!(m.key(ch('n')), Action::None);
    assert_eq!(m.mode, Mode::Normal);
    m.key(ch('r'));
    assert_eq!(m.key(ch('y')), Action::Restart(ready));
    assert_eq!(m.key(ch('?')), Action::None);
    let help = render(&mut m, 80, 24).join("\n");
    assert!(help.contains("answer the dialog"), "{help}");
    assert_eq!(m.key(ch('x')), Action::None, "any key closes the help");
    assert_eq!(m.mode, Mode::Normal);
    assert_eq!(m.key(ch('q')), Action::Quit);
}

/// Not a timed test (those go to benchmarks): a figure for the record,
/// printed with `cargo test top -- --nocapture`.
#[test]
fn a_frame_at_1000_sessions_draws_only_what_fits() {
    let mut m = Model::default();
    m.set_sessions((0..1000).map(|n| session(n, SessionState::Ready)).collect());
    let mut t = Terminal::new(TestBackend::new(200, 60)).unwrap();
    let start = Instant::now();
    for _ in 0..20 {
        t.draw(|f| view::draw(f, &mut m)).unwrap();
    }
    eprintln!(
        "herd top: one frame at 1,000 sessions, 200x60: {:?}",
        start.elapsed() / 20
    );
    assert_eq!(m.page, 56);
}
