//! Profiles: what a session's events mean for its state and its messages.
//!
//! The session actor owns the lifecycle (spawn, exit, restart policy, limits,
//! stop) and asks its profile — a [`Strategy`] — what each event means. The
//! profile answers with [`Effect`]s: a transition with its reason, a message
//! completed with its reply, keys to write, a timer to set. `session.rs` has
//! no branch on the kind of profile; a new profile is a new file here.
//!
//! - [`generic`]: any program: busy while output flows, ready after quiet;
//! - [`shell`]: bash or zsh, with OSC 133 prompt marks that herd injects;
//! - [`claude`]: Claude Code: state from its screen, replies from its transcript.

pub(crate) mod claude;
pub(crate) mod generic;
pub(crate) mod shell;

use crate::error::HerdError;
use crate::handle::{lock, SessionHandle};
use crate::queue::Outcome;
use crate::spec::{Profile, SessionSpec};
use crate::state::SessionState;
use crate::waiting::{Failure, Waiting};
use bytes::Bytes;
/// An event a program reports through its hooks (Claude Code's, today):
/// profiles that have hooks read it in [`Strategy::hook`].
pub(crate) use claude::hook::ClaudeHook as Hook;
use std::path::PathBuf;
use std::time::Duration;

/// The strategy of one session's profile. Each call gets a [`Ctx`] to read
/// the session and pushes what the event means onto `out`.
pub(crate) trait Strategy: Send + Sync + 'static {
    /// Adjusts a child's launch before it starts (argv, environment).
    fn prepare(&mut self, _launch: &mut Launch) {}

    /// True if the fleet's gate applies (`max_busy`, rate-limit pauses).
    fn gated(&self) -> bool {
        false
    }

    /// True if the profile reads the screen: it is then parsed for every
    /// chunk, even during an output flood.
    fn reads_screen(&self) -> bool {
        false
    }

    /// A new child generation started.
    fn started(&mut self, _cx: &Ctx<'_>, _out: &mut Effects) {}

    /// The current child wrote `data`, which starts at output offset `offset`.
    fn output(&mut self, cx: &Ctx<'_>, offset: u64, data: &[u8], out: &mut Effects);

    /// No output for `quiet_after`.
    fn quiet(&mut self, cx: &Ctx<'_>, out: &mut Effects);

    /// A timer this profile set went off.
    fn timer(&mut self, _cx: &Ctx<'_>, _timer: Timer, _out: &mut Effects) {}

    /// The program reported an event through a hook (Claude Code's hooks).
    fn hook(&mut self, _cx: &Ctx<'_>, _hook: &Hook, _out: &mut Effects) {}

    /// False while the next prompt must not go in yet (e.g. the input box
    /// still holds an interrupted one); the profile asks for delivery again
    /// with [`Effect::Deliver`] once it may.
    fn ready_to_deliver(&mut self, _cx: &Ctx<'_>) -> bool {
        true
    }

    /// The keys that answer a waiting dialog by meaning (`yes`, `always`,
    /// `no`) or with free text.
    fn answer(&mut self, cx: &Ctx<'_>, _answer: &str) -> Result<Bytes, HerdError> {
        Err(HerdError::Conflict {
            id: cx.handle.id().to_string(),
            action: "answer (this profile has no dialogs to answer)".into(),
            state: cx.state,
        })
    }

    /// A queued prompt is about to be written: the bytes that type and submit it.
    fn deliver(&mut self, cx: &Ctx<'_>, text: &str, out: &mut Effects) -> Bytes;

    /// How to interrupt what the session is doing.
    fn interrupt(&mut self) -> Interrupt {
        Interrupt::Signal(libc::SIGINT)
    }
}

/// What a profile reads of its session.
pub(crate) struct Ctx<'a> {
    /// The session's state now.
    pub(crate) state: SessionState,
    /// The shared side: screen, output, queue.
    pub(crate) handle: &'a SessionHandle,
}

impl Ctx<'_> {
    /// True while a message is being answered.
    pub(crate) fn in_flight(&self) -> bool {
        lock(&self.handle.queue).in_flight().is_some()
    }

    /// Where the reply of the message in flight starts in the output.
    pub(crate) fn reply_start(&self) -> Option<u64> {
        lock(&self.handle.queue)
            .in_flight()
            .map(|m| m.output_start.unwrap_or(0))
    }

    /// The screen as text.
    pub(crate) fn screen_text(&self) -> String {
        self.handle.screen_text()
    }

    /// True if the program asked for bracketed paste.
    pub(crate) fn bracketed_paste(&self) -> bool {
        self.handle.screen().bracketed_paste()
    }
}

/// What an event means, in the order it should happen.
pub(crate) type Effects = Vec<Effect>;

/// One thing a profile asks its session to do.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Move to a state (the session checks it against the table).
    Go(SessionState, String),
    /// The message in flight is over; the next one may go.
    Complete(Outcome),
    /// Write to the child without waiting (a dialog's answer, an extra Enter).
    Write(Bytes),
    /// Call [`Strategy::timer`] after a while.
    After(Duration, Timer),
    /// The question on screen, or none.
    Dialog(Option<String>),
    /// What the session waits for, or nothing.
    Waiting(Option<Waiting>),
    /// The failure the session is in (e.g. not logged in), or none.
    Error(Option<Failure>),
    /// Deliver the next queued prompt if the session is ready.
    Deliver,
    /// Call [`Strategy::quiet`] once the output has been quiet for `quiet_after`.
    WatchQuiet,
}

/// Timers that profiles set; only the profile that set one reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Read the screen once a burst of output settles.
    Screen,
    /// Look again for a reply (attempt number).
    Reply(u32),
    /// Check that a written prompt was submitted (attempt number).
    Submit(u32),
}

/// How to interrupt a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupt {
    /// Send this signal to the terminal's foreground process group.
    Signal(i32),
    /// Type these keys.
    Keys(&'static [u8]),
}

/// A child about to start: what a profile may adjust.
#[derive(Debug)]
pub(crate) struct Launch {
    /// Program and arguments.
    pub(crate) argv: Vec<String>,
    /// Environment added to the child's.
    pub(crate) env: Vec<(String, String)>,
    /// Where a profile may keep files it needs at run time (rc snippets).
    pub(crate) runtime_dir: PathBuf,
}

/// Where profiles keep files a child reads at start (shell rc snippets):
/// `$XDG_RUNTIME_DIR/herd`, else a per-user folder in the temp dir.
pub(crate) fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("herd"),
        // SAFETY: getuid cannot fail.
        _ => std::env::temp_dir().join(format!("herd-{}", unsafe { libc::getuid() })),
    }
}

/// The strategy for a session's profile.
pub(crate) fn strategy(spec: &SessionSpec) -> Box<dyn Strategy> {
    match spec.profile {
        Profile::Generic => Box::new(generic::Generic),
        Profile::Shell => Box::new(shell::Shell::default()),
        Profile::Claude => {
            let opts = spec.claude.clone().unwrap_or_default();
            Box::new(claude::Claude::new(opts.transcript, opts.hooks))
        }
    }
}
