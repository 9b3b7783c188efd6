//! The Claude Code profile, actor side. Claude Code's own hooks are the
//! ground truth: UserPromptSubmit → busy, PermissionRequest (or a permission
//! notification) → waiting_input with what it waits for, Stop → ready with
//! the reply, StopFailure → the message fails with a named cause. The screen
//! is evidence for what no hook reports — first-run dialogs, an interrupt —
//! and the whole story when hooks are off or never come (an older CLI).
//!
//! - [`hook`]: the hook events as herd receives them;
//! - [`screen`]: what the screen says (markers from the real CLI);
//! - [`transcript`]: where the conversation is written, and a turn read back.

pub(crate) mod hook;
pub(crate) mod screen;
pub(crate) mod transcript;

use super::{Ctx, Effect, Effects, Interrupt, Strategy, Timer};
use crate::error::HerdError;
use crate::queue::{self, MessageState, Outcome};
use crate::state::SessionState::{Busy, Ready, Starting, WaitingInput};
use crate::waiting::{self, Choice, Failure, Meaning, WaitReason, Waiting};
use bytes::Bytes;
use hook::ClaudeHook;
use screen::ScreenState;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long output must settle before the screen is read.
const SCREEN_DEBOUNCE: Duration = Duration::from_millis(40);
/// First-run dialog answers at most (a dialog that stays is not ours).
const MAX_DIALOG_ANSWERS: u32 = 6;
/// Without hooks: a written prompt that shows no turn this long is taken as answered.
const TURN_START_GRACE: Duration = Duration::from_secs(10);
/// Without hooks: looks for a reply in the transcript.
const REPLY_RETRIES: u32 = 20;
/// Between two looks.
const REPLY_RETRY_EVERY: Duration = Duration::from_millis(100);
/// When to check that a written prompt was submitted.
const SUBMIT_CHECK_AFTER: Duration = Duration::from_millis(1200);
/// Checks (and extra Enters) at most per prompt.
const SUBMIT_CHECKS: u32 = 4;
/// With hooks: how long a turn may look finished on screen with no hook
/// before herd concludes the hooks are not coming and reads the screen.
const HOOK_GRACE: Duration = Duration::from_secs(3);
/// After a Stop hook: reads of the transcript at most, waiting for it to
/// hold the turn's last message (the CLI may write it a moment later).
const STOP_READS: u32 = 25;
/// Between two reads.
const STOP_READ_EVERY: Duration = Duration::from_millis(20);
/// After a Stop, the next prompt waits for the CLI to be idle on screen at
/// most this long (it still runs its Stop hooks and redraws).
const SETTLE_MAX: Duration = Duration::from_secs(3);
/// Ctrl-U: clears Claude's input line.
const CLEAR_LINE: &[u8] = b"\x15";
/// Clears of a dirty input line at most before giving up on verifying it.
const MAX_CLEARS: u32 = 5;

/// The prompt written last, and what is known of its turn.
#[derive(Debug)]
struct Turn {
    /// The text, to recognise it still sitting in the input box.
    prompt: String,
    delivered_at: Instant,
    /// The transcript's length at delivery: the turn's entries follow.
    transcript_start: u64,
    /// From UserPromptSubmit: links the transcript entries of the turn.
    prompt_id: Option<String>,
    /// The CLI took the prompt (UserPromptSubmit, or a spinner on screen).
    started: bool,
    /// herd pressed Escape for it.
    interrupted: bool,
}

/// What the Claude profile tracks of its session.
#[derive(Debug)]
pub(crate) struct Claude {
    /// The conversation's transcript file, where the daemon could tell.
    transcript: Option<PathBuf>,
    /// The daemon injected hooks: they decide, unless they prove absent.
    hooks: bool,
    /// A hook arrived from the current child.
    hooks_seen: bool,
    /// The current turn, from delivery until its end.
    turn: Option<Turn>,
    /// A screen read is scheduled.
    check_pending: bool,
    /// The screen looked finished at this moment with a turn still open.
    finished_on_screen: Option<Instant>,
    dialogs_answered: u32,
    /// The tool of the last PreToolUse (a permission notification names none).
    last_tool: Option<String>,
    /// What the session waits for, while it does.
    waiting: Option<Waiting>,
    /// An interrupted prompt was put back in the input box: clear it (and see
    /// it cleared) before the next prompt goes in, so prompts never merge.
    input_dirty: bool,
    clears: u32,
    /// A Stop hook came (with this last message) and the transcript has not
    /// caught up with it yet: the message completes when it has.
    stopped: Option<Option<String>>,
    /// Since a Stop: the CLI may still be busy (running its Stop hooks,
    /// redrawing), and a prompt typed then is queued by the CLI and can be
    /// glued to the previous one. The next prompt goes in once the screen
    /// is idle with an empty input box (or after [`SETTLE_MAX`]).
    settling: Option<Instant>,
    /// The last prompt written, to recognise it left in the input box.
    last_prompt: String,
}

impl Claude {
    /// A Claude strategy reading replies from `transcript`, with or without hooks.
    pub(crate) fn new(transcript: Option<PathBuf>, hooks: bool) -> Self {
        Self {
            transcript,
            hooks,
            hooks_seen: false,
            turn: None,
            check_pending: false,
            finished_on_screen: None,
            dialogs_answered: 0,
            last_tool: None,
            waiting: None,
            input_dirty: false,
            clears: 0,
            stopped: None,
            settling: None,
            last_prompt: String::new(),
        }
    }

    /// A turn ended: hold the next prompt until the screen is idle.
    fn settle(&mut self, out: &mut Effects) {
        self.settling = Some(Instant::now());
        out.push(Effect::After(SCREEN_DEBOUNCE, Timer::Screen));
    }

    /// While settling: on an idle screen with an empty input box, the next
    /// prompt may go; our previous prompt left in the box is cleared first;
    /// a person's typing is waited out.
    fn check_settled(&mut self, cx: &Ctx<'_>, text: &str, state: &ScreenState, out: &mut Effects) {
        let Some(since) = self.settling else {
            return;
        };
        if since.elapsed() >= SETTLE_MAX {
            tracing::warn!(session = %cx.handle.id(), "the CLI did not settle after its turn; delivering anyway");
            self.settling = None;
            out.push(Effect::Deliver);
            return;
        }
        if !matches!(state, ScreenState::Ready) {
            out.push(Effect::WatchQuiet);
            return;
        }
        let line = screen::input_line(text).unwrap_or_default();
        if line
            .trim_matches(|c: char| c.is_whitespace() || c == '\u{a0}')
            .is_empty()
        {
            self.settling = None;
            out.push(Effect::Deliver);
        } else if screen::prompt_pending(text, &self.last_prompt) {
            self.settling = None;
            self.input_dirty = true;
            self.clears = 0;
            self.check_input(cx, text, out);
        } else {
            out.push(Effect::WatchQuiet);
        }
    }

    /// What the transcript holds of `turn` so far (nothing without one).
    fn read_turn(&self, turn: Option<&Turn>) -> transcript::Turn {
        match (&self.transcript, turn) {
            (Some(path), Some(t)) => {
                transcript::turn(path, t.prompt_id.as_deref(), t.transcript_start)
            }
            _ => transcript::Turn::default(),
        }
    }

    /// Hooks are the truth for this child (configured, and not proven absent).
    fn hook_mode(&self) -> bool {
        self.hooks
    }

    fn set_waiting(&mut self, w: Option<Waiting>, out: &mut Effects) {
        if self.waiting != w {
            self.waiting.clone_from(&w);
            out.push(Effect::Waiting(w));
        }
    }

    /// The turn's reply from the transcript (matched by prompt id), or from
    /// `fallback` (the Stop hook's last message) when the transcript has none.
    /// The transcript may lag the Stop hook by a write: until it holds the
    /// last message, look again a few times (the state is ready already).
    fn finish_turn(
        &mut self,
        cx: &Ctx<'_>,
        fallback: Option<String>,
        attempt: u32,
        out: &mut Effects,
    ) {
        self.stopped = None;
        if !cx.in_flight() {
            self.turn = None;
            return;
        }
        let read = self.read_turn(self.turn.as_ref());
        let caught_up = match &fallback {
            Some(last) => read.texts.last() == Some(last),
            None => true,
        };
        if !caught_up && self.transcript.is_some() && attempt < STOP_READS {
            self.stopped = Some(fallback);
            out.push(Effect::After(STOP_READ_EVERY, Timer::Reply(attempt + 1)));
            return;
        }
        self.turn = None;
        let mut texts = read.texts;
        // The transcript can lag the hook by a write: the Stop hook's last
        // message is the turn's last words.
        if let Some(last) = fallback {
            if texts.last() != Some(&last) {
                texts.push(last);
            }
        }
        let reply = texts.join("\n\n");
        let mut outcome = Outcome::done(reply);
        outcome.usage = (!read.usage.is_empty()).then_some(read.usage);
        out.push(Effect::Complete(outcome));
    }

    fn on_hook(&mut self, cx: &Ctx<'_>, hook: &ClaudeHook, out: &mut Effects) {
        self.hooks_seen = true;
        self.finished_on_screen = None;
        match hook {
            ClaudeHook::UserPromptSubmit { prompt_id } => {
                if let Some(t) = self.turn.as_mut() {
                    t.started = true;
                    if t.prompt_id.is_none() {
                        t.prompt_id.clone_from(prompt_id);
                    }
                }
                self.set_waiting(None, out);
                out.push(Effect::Go(Busy, "hook: UserPromptSubmit".into()));
            }
            ClaudeHook::PreToolUse { tool } => {
                self.last_tool = Some(tool.clone());
                if cx.state == WaitingInput {
                    self.set_waiting(None, out);
                    out.push(Effect::Go(Busy, "hook: PreToolUse".into()));
                }
            }
            ClaudeHook::PostToolUse { .. } => {
                if cx.state == WaitingInput {
                    self.set_waiting(None, out);
                    out.push(Effect::Go(Busy, "hook: PostToolUse".into()));
                }
            }
            ClaudeHook::PermissionRequest { tool, input } => {
                self.last_tool = Some(tool.clone());
                let w = self.permission(cx, Some(tool.clone()), waiting::summary(input));
                self.set_waiting(Some(w), out);
                out.push(Effect::Go(
                    WaitingInput,
                    format!("hook: PermissionRequest ({tool})"),
                ));
            }
            ClaudeHook::Notification { kind, message } => {
                let reason = match kind.as_str() {
                    "permission_prompt" => WaitReason::Permission,
                    "elicitation_dialog" => WaitReason::Question,
                    // idle_prompt, auth_success, ...: nothing to answer.
                    _ => return,
                };
                if cx.state == WaitingInput {
                    return;
                }
                let mut w = if reason == WaitReason::Permission {
                    self.permission(cx, self.last_tool.clone(), None)
                } else {
                    Waiting {
                        reason,
                        tool: None,
                        summary: None,
                        choices: screen_choices(cx),
                        message: None,
                    }
                };
                w.message = Some(message.clone());
                self.set_waiting(Some(w), out);
                out.push(Effect::Go(
                    WaitingInput,
                    format!("hook: Notification ({kind})"),
                ));
            }
            ClaudeHook::Stop { last_message, .. } => {
                self.set_waiting(None, out);
                self.settle(out);
                out.push(Effect::Error(None));
                out.push(Effect::Go(Ready, "hook: Stop".into()));
                self.finish_turn(cx, last_message.clone(), 0, out);
            }
            ClaudeHook::StopFailure {
                error,
                last_message,
                ..
            } => {
                let failure = Failure::from_claude(error, last_message.as_deref().unwrap_or(""));
                self.set_waiting(None, out);
                self.settle(out);
                self.turn = None;
                if cx.in_flight() {
                    out.push(Effect::Complete(Outcome::failed(failure.clone())));
                }
                out.push(Effect::Error(Some(failure)));
                out.push(Effect::Go(Ready, format!("hook: StopFailure ({error})")));
            }
            ClaudeHook::SessionEnd { .. } | ClaudeHook::Other(_) => {}
        }
    }

    /// A permission wait, with the choices read from the screen when the
    /// dialog is drawn, else the CLI's usual three.
    fn permission(&self, cx: &Ctx<'_>, tool: Option<String>, summary: Option<String>) -> Waiting {
        let mut choices = screen_choices(cx);
        if choices.is_empty() {
            choices = [
                (Meaning::Yes, "Yes"),
                (Meaning::Always, "Yes, and don't ask again"),
                (Meaning::No, "No"),
            ]
            .iter()
            .enumerate()
            .map(|(i, (meaning, label))| Choice {
                meaning: *meaning,
                label: (*label).into(),
                key: (i + 1).to_string(),
            })
            .collect();
        }
        Waiting {
            reason: WaitReason::Permission,
            tool,
            summary,
            choices,
            message: None,
        }
    }

    /// Moves the state to what the screen shows. `quiet`: no output for
    /// `quiet_after`, so a ready screen is stable.
    fn apply_screen(&mut self, cx: &Ctx<'_>, quiet: bool, out: &mut Effects) {
        if !matches!(cx.state, Starting | Ready | Busy | WaitingInput) {
            return;
        }
        let text = cx.screen_text();
        let state = screen::classify(&text);
        if let ScreenState::FirstRun(kind) = state {
            if self.dialogs_answered < MAX_DIALOG_ANSWERS {
                self.dialogs_answered += 1;
                tracing::info!(session = %cx.handle.id(), ?kind, "answering a first-run dialog");
                out.push(Effect::Write(Bytes::from_static(kind.answer())));
            }
            return;
        }
        if self.input_dirty && quiet {
            self.check_input(cx, &text, out);
        }
        if screen::not_logged_in(&text) && matches!(cx.state, Starting | Ready) {
            out.push(Effect::Error(Some(Failure::NotLoggedIn {
                message: "Not logged in · Run /login".into(),
            })));
        }
        if self.hook_mode() {
            self.screen_with_hooks(cx, &text, state, quiet, out);
        } else {
            self.screen_alone(cx, &text, state, quiet, out);
        }
    }

    /// With hooks, the screen only covers what no hook reports: the first
    /// ready prompt, an interrupt, the dialog's exact choices, hooks that
    /// never come.
    fn screen_with_hooks(
        &mut self,
        cx: &Ctx<'_>,
        text: &str,
        state: ScreenState,
        quiet: bool,
        out: &mut Effects,
    ) {
        self.check_settled(cx, text, &state, out);
        match state {
            // A fresh CLI is ready at its first idle frame: no hook says so,
            // and waiting for `quiet_after` would only add to its start.
            ScreenState::Ready if cx.state == Starting => {
                out.push(Effect::Go(Ready, "screen: input prompt".into()));
            }
            ScreenState::WaitingInput(dialog) => {
                out.push(Effect::Dialog(Some(dialog.clone())));
                if let Some(w) = self.waiting.clone() {
                    // The screen has the real labels: refine the hook's guess.
                    let choices = waiting::choices(&dialog);
                    if !choices.is_empty() && choices != w.choices {
                        self.set_waiting(Some(Waiting { choices, ..w }), out);
                    }
                }
            }
            ScreenState::Busy => {
                if let Some(t) = self.turn.as_mut() {
                    t.started = true;
                }
                self.finished_on_screen = None;
            }
            ScreenState::Ready if quiet => {
                out.push(Effect::Dialog(None));
                let Some(turn) = self.turn.as_ref() else {
                    if cx.state == Starting {
                        out.push(Effect::Go(Ready, "screen: input prompt".into()));
                    }
                    return;
                };
                if turn.started
                    && (turn.interrupted
                        || screen::interrupted_after(text, &turn.prompt)
                        || screen::prompt_pending(text, &turn.prompt))
                {
                    return self.interrupted(cx, text, out);
                }
                // Finished on screen, but no Stop: give the hook a moment, then
                // conclude it is not coming.
                let since = *self.finished_on_screen.get_or_insert_with(Instant::now);
                if since.elapsed() >= HOOK_GRACE
                    && (turn.started || turn.delivered_at.elapsed() >= TURN_START_GRACE)
                {
                    tracing::warn!(session = %cx.handle.id(), "no Stop hook for a finished turn: reading the screen");
                    self.hooks = self.hooks_seen;
                    self.finish_turn(cx, None, 0, out);
                    out.push(Effect::Go(Ready, "screen: input prompt (no hook)".into()));
                } else {
                    out.push(Effect::After(HOOK_GRACE, Timer::Screen));
                }
            }
            ScreenState::Ready | ScreenState::Starting => {
                if cx.state.is_running() {
                    out.push(Effect::WatchQuiet);
                }
            }
            ScreenState::FirstRun(_) => {}
        }
    }

    /// Escape ended the turn (no hook says so): the message is interrupted,
    /// with what the assistant had said; a prompt put back in the input box
    /// is cleared before anything else goes in.
    fn interrupted(&mut self, cx: &Ctx<'_>, text: &str, out: &mut Effects) {
        let Some(turn) = self.turn.take() else {
            return;
        };
        if screen::prompt_pending(text, &turn.prompt) {
            self.input_dirty = true;
            self.clears = 0;
            self.check_input(cx, text, out);
        }
        if cx.in_flight() {
            let partial = self
                .read_turn(Some(&turn))
                .reply()
                .or_else(|| screen::partial_reply(text, &turn.prompt));
            out.push(Effect::Complete(Outcome {
                state: MessageState::Interrupted,
                reply: partial,
                error: Some("interrupted (Escape) before the turn ended".into()),
                ..Outcome::done(String::new())
            }));
        }
        self.set_waiting(None, out);
        out.push(Effect::Go(Ready, "screen: interrupted".into()));
    }

    /// Clears the input box while it holds a prompt herd put there; the next
    /// prompt goes in only once it is seen empty.
    fn check_input(&mut self, cx: &Ctx<'_>, text: &str, out: &mut Effects) {
        let line = screen::input_line(text).unwrap_or_default();
        if line
            .trim_matches(|c: char| c.is_whitespace() || c == '\u{a0}')
            .is_empty()
        {
            self.input_dirty = false;
            out.push(Effect::Deliver);
        } else if self.clears < MAX_CLEARS {
            self.clears += 1;
            out.push(Effect::Write(Bytes::from_static(CLEAR_LINE)));
            out.push(Effect::WatchQuiet);
        } else {
            tracing::warn!(session = %cx.handle.id(), "the input box does not clear; delivering anyway");
            self.input_dirty = false;
            out.push(Effect::Deliver);
        }
    }

    /// Without hooks (off, or an older CLI): the state is what the screen says.
    fn screen_alone(
        &mut self,
        cx: &Ctx<'_>,
        text: &str,
        state: ScreenState,
        quiet: bool,
        out: &mut Effects,
    ) {
        match state {
            ScreenState::Busy => {
                if let Some(t) = self.turn.as_mut() {
                    t.started = true;
                }
                out.push(Effect::Dialog(None));
                self.set_waiting(None, out);
                if cx.state != Busy {
                    out.push(Effect::Go(Busy, "screen: esc to interrupt".into()));
                }
            }
            ScreenState::WaitingInput(dialog) => {
                if let Some(t) = self.turn.as_mut() {
                    t.started = true;
                }
                let title = dialog
                    .lines()
                    .map(str::trim)
                    .find(|l| l.ends_with('?'))
                    .unwrap_or("dialog")
                    .to_string();
                let tool = dialog
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(|l| l.trim_end_matches(" command").to_string());
                let mut w = self.permission(cx, tool, None);
                w.choices = waiting::choices(&dialog);
                out.push(Effect::Dialog(Some(dialog)));
                self.set_waiting(Some(w), out);
                if cx.state != WaitingInput {
                    out.push(Effect::Go(WaitingInput, format!("screen: {title}")));
                }
            }
            ScreenState::Ready if quiet => {
                // A prompt just written may not have started its turn yet.
                if let Some(t) = &self.turn {
                    if !t.started && t.delivered_at.elapsed() < TURN_START_GRACE {
                        out.push(Effect::WatchQuiet);
                        return;
                    }
                    if t.started && (t.interrupted || screen::interrupted_after(text, &t.prompt)) {
                        return self.interrupted(cx, text, out);
                    }
                }
                out.push(Effect::Dialog(None));
                self.set_waiting(None, out);
                if cx.state != Ready {
                    out.push(Effect::Go(Ready, "screen: input prompt".into()));
                    self.reply_from_screen(cx, 0, out);
                }
            }
            ScreenState::Ready | ScreenState::Starting => {
                if cx.state.is_running() {
                    out.push(Effect::WatchQuiet);
                }
            }
            ScreenState::FirstRun(_) => {}
        }
    }

    /// Without hooks: the reply is the transcript's turn; the CLI may write it
    /// a moment after the screen settles, so look again a few times; with no
    /// transcript at all, the screen is all there is.
    fn reply_from_screen(&mut self, cx: &Ctx<'_>, attempt: u32, out: &mut Effects) {
        if !cx.in_flight() {
            self.turn = None;
            return;
        }
        let read = self.read_turn(self.turn.as_ref());
        let reply = match read.reply() {
            Some(r) => r,
            None if attempt < REPLY_RETRIES && self.transcript.is_some() => {
                out.push(Effect::After(REPLY_RETRY_EVERY, Timer::Reply(attempt + 1)));
                return;
            }
            None if self.transcript.is_some() => String::new(),
            None => cx.screen_text(),
        };
        self.turn = None;
        let mut outcome = Outcome::done(reply);
        outcome.usage = (!read.usage.is_empty()).then_some(read.usage);
        out.push(Effect::Complete(outcome));
    }

    /// A CLI still drawing (e.g. a resumed conversation) can take the typed
    /// prompt but miss its Enter. If no turn started and the input box still
    /// holds the prompt, press Enter again (a few times at most).
    fn check_submitted(&mut self, cx: &Ctx<'_>, attempt: u32, out: &mut Effects) {
        let Some(t) = &self.turn else { return };
        if !cx.in_flight() || t.started || !matches!(cx.state, Busy | Ready) {
            return;
        }
        if screen::prompt_pending(&cx.screen_text(), &t.prompt) {
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

/// The numbered choices of the dialog on screen, if one is drawn.
fn screen_choices(cx: &Ctx<'_>) -> Vec<Choice> {
    match screen::classify(&cx.screen_text()) {
        ScreenState::WaitingInput(dialog) => waiting::choices(&dialog),
        _ => vec![],
    }
}

impl Strategy for Claude {
    fn reads_screen(&self) -> bool {
        true
    }

    fn gated(&self) -> bool {
        true
    }

    fn started(&mut self, _cx: &Ctx<'_>, _out: &mut Effects) {
        self.hooks_seen = false;
        self.turn = None;
        self.waiting = None;
        self.finished_on_screen = None;
        self.input_dirty = false;
        self.stopped = None;
        self.settling = None;
    }

    fn output(&mut self, _cx: &Ctx<'_>, _offset: u64, _data: &[u8], out: &mut Effects) {
        // The screen is evidence; look at it once the burst settles a little.
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
                let quiet = self.finished_on_screen.is_some();
                self.apply_screen(cx, quiet, out);
            }
            Timer::Reply(attempt) if self.stopped.is_some() => {
                let last = self.stopped.take().flatten();
                self.finish_turn(cx, last, attempt, out);
            }
            Timer::Reply(attempt) if cx.state == Ready => self.reply_from_screen(cx, attempt, out),
            Timer::Reply(_) => {}
            Timer::Submit(attempt) => self.check_submitted(cx, attempt, out),
        }
    }

    fn hook(&mut self, cx: &Ctx<'_>, hook: &ClaudeHook, out: &mut Effects) {
        self.on_hook(cx, hook, out);
    }

    fn ready_to_deliver(&mut self, _cx: &Ctx<'_>) -> bool {
        if self.settling.is_some_and(|t| t.elapsed() >= SETTLE_MAX) {
            self.settling = None;
        }
        !self.input_dirty && self.settling.is_none()
    }

    fn deliver(&mut self, cx: &Ctx<'_>, text: &str, out: &mut Effects) -> Bytes {
        self.finished_on_screen = None;
        self.last_prompt = text.to_string();
        self.turn = Some(Turn {
            prompt: text.to_string(),
            delivered_at: Instant::now(),
            transcript_start: self
                .transcript
                .as_deref()
                .map(transcript::transcript_len)
                .unwrap_or(0),
            prompt_id: None,
            started: false,
            interrupted: false,
        });
        out.push(Effect::After(SUBMIT_CHECK_AFTER, Timer::Submit(1)));
        // With hooks, busy comes from UserPromptSubmit: the CLI took the
        // prompt. Without, busy from the moment it is written.
        if !self.hook_mode() {
            out.push(Effect::Go(Busy, "message delivered".into()));
        }
        Bytes::from(queue::payload(text, cx.bracketed_paste()))
    }

    fn interrupt(&mut self) -> Interrupt {
        if let Some(t) = self.turn.as_mut() {
            t.interrupted = true;
        }
        // Claude Code interrupts a turn on Escape; SIGINT would end it.
        Interrupt::Keys(b"\x1b")
    }

    fn answer(&mut self, cx: &Ctx<'_>, answer: &str) -> Result<Bytes, HerdError> {
        let conflict = || HerdError::Conflict {
            id: cx.handle.id().to_string(),
            action: "answer".into(),
            state: cx.state,
        };
        if cx.state != WaitingInput {
            return Err(conflict());
        }
        let mut choices = screen_choices(cx);
        if choices.is_empty() {
            choices = self
                .waiting
                .as_ref()
                .map(|w| w.choices.clone())
                .unwrap_or_default();
        }
        let meaning = match answer {
            "yes" => Some(Meaning::Yes),
            "always" => Some(Meaning::Always),
            "no" => Some(Meaning::No),
            _ => None,
        };
        let no_such = || {
            let offered = if choices.is_empty() {
                "none that herd can read".to_string()
            } else {
                choices
                    .iter()
                    .map(|c| format!("{}. {}", c.key, c.label))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            HerdError::invalid(
                "choice",
                format!("{answer:?}: the dialog offers no such choice; it offers {offered} (answer yes, always or no)"),
            )
        };
        let Some(meaning) = meaning else {
            // A free answer: a choice with that label; to a question, the
            // text itself. A permission takes only its choices: typed text
            // would end in an Enter that picks whatever is selected.
            if let Some(c) = choices
                .iter()
                .find(|c| c.label.eq_ignore_ascii_case(answer))
            {
                return Ok(Bytes::from(c.key.clone()));
            }
            let permission = self
                .waiting
                .as_ref()
                .is_none_or(|w| w.reason == WaitReason::Permission);
            if permission {
                return Err(no_such());
            }
            let mut text = answer.replace('\n', " ").into_bytes();
            text.push(b'\r');
            return Ok(Bytes::from(text));
        };
        choices
            .iter()
            .find(|c| c.meaning == meaning)
            .map(|c| Bytes::from(c.key.clone()))
            .ok_or_else(no_such)
    }
}
