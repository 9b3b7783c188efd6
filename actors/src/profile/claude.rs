//! The Claude Code profile, actor side: its state read from the screen, its
//! first-run dialogs answered, its replies read from its transcript.
//!
//! - [`screen`]: what the screen says (markers from the real CLI);
//! - [`transcript`]: where the conversation is written, and the replies in it.

pub(crate) mod screen;
pub(crate) mod transcript;

use super::{Ctx, Effect, Effects, Interrupt, Strategy, Timer};
use crate::queue::{self, Outcome};
use crate::state::SessionState::{Busy, Ready, Starting, WaitingInput};
use bytes::Bytes;
use screen::ScreenState;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long output must settle before the screen is read.
const SCREEN_DEBOUNCE: Duration = Duration::from_millis(40);
/// First-run dialog answers at most (a dialog that stays is not ours).
const MAX_DIALOG_ANSWERS: u32 = 6;
/// A written prompt that shows no turn this long is taken as answered.
const TURN_START_GRACE: Duration = Duration::from_secs(10);
/// Looks for a reply in the transcript.
const REPLY_RETRIES: u32 = 20;
/// Between two looks.
const REPLY_RETRY_EVERY: Duration = Duration::from_millis(100);
/// When to check that a written prompt was submitted.
const SUBMIT_CHECK_AFTER: Duration = Duration::from_millis(1200);
/// Checks (and extra Enters) at most per prompt.
const SUBMIT_CHECKS: u32 = 4;

/// What the Claude profile tracks of its session.
#[derive(Debug)]
pub(crate) struct Claude {
    /// The conversation's transcript file, where the daemon could tell.
    transcript: Option<PathBuf>,
    /// Its length when the prompt in flight was written: the reply follows.
    transcript_start: u64,
    /// A screen read is scheduled.
    check_pending: bool,
    /// A turn (spinner or dialog) was seen since the last prompt was written.
    saw_busy: bool,
    delivered_at: Instant,
    dialogs_answered: u32,
    /// The prompt written last, to recognise it still sitting in the input box.
    prompt: String,
}

impl Claude {
    /// A Claude strategy reading replies from `transcript`.
    pub(crate) fn new(transcript: Option<PathBuf>) -> Self {
        Self {
            transcript,
            transcript_start: 0,
            check_pending: false,
            saw_busy: false,
            delivered_at: Instant::now(),
            dialogs_answered: 0,
            prompt: String::new(),
        }
    }

    /// Moves the state to what the screen shows. `quiet`: no output for
    /// `quiet_after`, so a ready screen is stable.
    fn apply_screen(&mut self, cx: &Ctx<'_>, quiet: bool, out: &mut Effects) {
        if !matches!(cx.state, Starting | Ready | Busy | WaitingInput) {
            return;
        }
        match screen::classify(&cx.screen_text()) {
            ScreenState::Busy => {
                self.saw_busy = true;
                out.push(Effect::Dialog(None));
                if cx.state != Busy {
                    out.push(Effect::Go(Busy, "screen: esc to interrupt".into()));
                }
            }
            ScreenState::WaitingInput(dialog) => {
                self.saw_busy = true;
                let title = dialog
                    .lines()
                    .map(str::trim)
                    .find(|l| l.ends_with('?'))
                    .unwrap_or("dialog")
                    .to_string();
                out.push(Effect::Dialog(Some(dialog)));
                if cx.state != WaitingInput {
                    out.push(Effect::Go(WaitingInput, format!("screen: {title}")));
                }
            }
            ScreenState::FirstRun(kind) => {
                if self.dialogs_answered < MAX_DIALOG_ANSWERS {
                    self.dialogs_answered += 1;
                    tracing::info!(session = %cx.handle.id(), ?kind, "answering a first-run dialog");
                    out.push(Effect::Write(Bytes::from_static(kind.answer())));
                }
            }
            ScreenState::Ready if quiet => {
                // A prompt just written may not have started its turn yet.
                let waiting_for_turn = cx.in_flight()
                    && !self.saw_busy
                    && self.delivered_at.elapsed() < TURN_START_GRACE;
                if waiting_for_turn {
                    out.push(Effect::WatchQuiet);
                    return;
                }
                out.push(Effect::Dialog(None));
                if cx.state != Ready {
                    out.push(Effect::Go(Ready, "screen: input prompt".into()));
                    self.finish_reply(cx, 0, out);
                }
            }
            ScreenState::Ready | ScreenState::Starting => {
                if cx.state.is_running() {
                    out.push(Effect::WatchQuiet);
                }
            }
        }
    }

    /// The reply of the message in flight is the assistant text the
    /// transcript gained since delivery. The CLI may write it a moment after
    /// the screen settles: look again a few times, then fall back to the screen.
    fn finish_reply(&mut self, cx: &Ctx<'_>, attempt: u32, out: &mut Effects) {
        if !cx.in_flight() {
            return;
        }
        let reply = self
            .transcript
            .as_deref()
            .and_then(|t| transcript::reply_since(t, self.transcript_start));
        let reply = match reply {
            Some(r) => r,
            None if attempt < REPLY_RETRIES && self.transcript.is_some() => {
                out.push(Effect::After(REPLY_RETRY_EVERY, Timer::Reply(attempt + 1)));
                return;
            }
            None => cx.screen_text(),
        };
        out.push(Effect::Complete(Outcome::done(reply)));
    }

    /// A CLI still drawing (e.g. a resumed conversation) can take the typed
    /// prompt but miss its Enter. If no turn started and the input box still
    /// holds the prompt, press Enter again (a few times at most).
    fn check_submitted(&mut self, cx: &Ctx<'_>, attempt: u32, out: &mut Effects) {
        if !cx.in_flight() || self.saw_busy || !matches!(cx.state, Busy | Ready) {
            return;
        }
        if screen::prompt_pending(&cx.screen_text(), &self.prompt) {
            tracing::info!(session = %cx.handle.id(), attempt, "prompt not submitted yet: pressing Enter again");
            out.push(Effect::Write(Bytes::from_static(b"\r")));
        }
        if attempt < SUBMIT_CHECKS {
            out.push(Effect::After(
                SUBMIT_CHECK_AFTER,
                Timer::Submit(attempt + 1),
            ));
        }
    }
}

impl Strategy for Claude {
    fn reads_screen(&self) -> bool {
        true
    }

    fn output(&mut self, _cx: &Ctx<'_>, _offset: u64, _data: &[u8], out: &mut Effects) {
        // The screen decides; look at it once the burst settles a little.
        if !std::mem::replace(&mut self.check_pending, true) {
            out.push(Effect::After(SCREEN_DEBOUNCE, Timer::Screen));
        }
    }

    fn quiet(&mut self, cx: &Ctx<'_>, out: &mut Effects) {
        self.apply_screen(cx, true, out);
    }

    fn timer(&mut self, cx: &Ctx<'_>, timer: Timer, out: &mut Effects) {
        match timer {
            Timer::Screen => {
                self.check_pending = false;
                self.apply_screen(cx, false, out);
            }
            Timer::Reply(attempt) if cx.state == Ready => self.finish_reply(cx, attempt, out),
            Timer::Reply(_) => {}
            Timer::Submit(attempt) => self.check_submitted(cx, attempt, out),
        }
    }

    fn deliver(&mut self, cx: &Ctx<'_>, text: &str, out: &mut Effects) -> Bytes {
        self.saw_busy = false;
        self.delivered_at = Instant::now();
        self.transcript_start = self
            .transcript
            .as_deref()
            .map(transcript::transcript_len)
            .unwrap_or(0);
        self.prompt = text.to_string();
        out.push(Effect::After(SUBMIT_CHECK_AFTER, Timer::Submit(1)));
        Bytes::from(queue::payload(text, cx.bracketed_paste()))
    }

    fn interrupt(&self) -> Interrupt {
        // Claude Code interrupts a turn on Escape; SIGINT would end it.
        Interrupt::Keys(b"\x1b")
    }
}
