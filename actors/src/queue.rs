//! The prompt queue of a session: messages written when the session is
//! ready, one at a time, each completed when the session is ready again.

use crate::usage::Usage;
use crate::waiting::Failure;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::SystemTime;
use uuid::Uuid;

/// Completed messages kept per session for `GET /queue`.
const DONE_KEPT: usize = 100;
/// Text longer than this goes in as a bracketed paste even on one line.
const PASTE_OVER: usize = 512;

/// Where a message is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Waiting for the session to be ready.
    Queued,
    /// Written; waiting for the session to be ready again.
    Delivering,
    /// The session answered and is ready again.
    Done,
    /// The child ended while the message was being answered; not sent again.
    Interrupted,
    /// The session ended before the message was written.
    Cancelled,
    /// The turn failed (its `failure` says how: not logged in, rate limited, ...).
    Failed,
}

impl MessageState {
    /// True once nothing more will happen to the message.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Done | Self::Interrupted | Self::Cancelled | Self::Failed
        )
    }

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Delivering => "delivering",
            Self::Done => "done",
            Self::Interrupted => "interrupted",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for MessageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One prompt sent to a session.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Stable id.
    pub id: Uuid,
    /// The session.
    pub session_id: Uuid,
    /// The text (without the final Enter).
    pub text: String,
    /// Where it is.
    pub state: MessageState,
    /// When it was queued.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(with = "humantime_serde")]
    pub created_at: SystemTime,
    /// When it was written to the session.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[serde(default, with = "humantime_serde::option")]
    pub delivered_at: Option<SystemTime>,
    /// When it reached a final state.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[serde(default, with = "humantime_serde::option")]
    pub completed_at: Option<SystemTime>,
    /// Output offset at delivery: the reply starts here.
    pub output_start: Option<u64>,
    /// Output offset at completion.
    pub output_end: Option<u64>,
    /// What the session wrote between delivery and readiness, escape sequences removed.
    pub reply: Option<String>,
    /// Why the message did not complete.
    pub error: Option<String>,
    /// The exit status of the command, where the profile knows it (a shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// How the turn failed, for a `failed` message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Tokens the answer used, where the profile knows them (Claude).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl Message {
    /// A new queued message.
    pub fn new(session_id: Uuid, text: String) -> Self {
        Self {
            id: Uuid::new_v4(),
            session_id,
            text,
            state: MessageState::Queued,
            created_at: SystemTime::now(),
            delivered_at: None,
            completed_at: None,
            output_start: None,
            output_end: None,
            reply: None,
            error: None,
            exit_code: None,
            failure: None,
            usage: None,
        }
    }
}

/// How a message in flight ended, as its session's profile tells it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// Done, or interrupted.
    pub state: MessageState,
    /// The reply.
    pub reply: Option<String>,
    /// Why it did not complete.
    pub error: Option<String>,
    /// The command's exit status, where known.
    pub exit_code: Option<i32>,
    /// How it failed.
    pub failure: Option<Failure>,
    /// Tokens used.
    pub usage: Option<Usage>,
}

impl Outcome {
    /// Answered with `reply`.
    pub(crate) fn done(reply: String) -> Self {
        Self {
            state: MessageState::Done,
            reply: Some(reply),
            error: None,
            exit_code: None,
            failure: None,
            usage: None,
        }
    }

    /// Not answered, for `why`.
    pub(crate) fn interrupted(why: String) -> Self {
        Self {
            state: MessageState::Interrupted,
            error: Some(why),
            ..Self::done(String::new())
        }
        .without_reply()
    }

    /// Failed, named.
    pub(crate) fn failed(failure: Failure) -> Self {
        Self {
            state: MessageState::Failed,
            error: Some(failure.to_string()),
            failure: Some(failure),
            ..Self::done(String::new())
        }
        .without_reply()
    }

    fn without_reply(mut self) -> Self {
        self.reply = None;
        self
    }
}

/// Pending and recent messages of a session, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Queue {
    pending: VecDeque<Message>,
    done: VecDeque<Message>,
    /// Snapshots of messages changed since the last [`Queue::take_changed`].
    changed: Vec<Message>,
}

impl Queue {
    /// Appends a message the caller stored already (so it is not reported
    /// as changed).
    pub(crate) fn push(&mut self, m: Message) {
        self.pending.push_back(m);
    }

    /// Restores messages read back from a store: finished ones as history,
    /// queued ones to deliver.
    pub(crate) fn restore(&mut self, messages: Vec<Message>) {
        for m in messages {
            if m.state.is_final() {
                self.remember(m);
            } else {
                self.pending.push_back(m);
            }
        }
    }

    /// Messages changed since the last call.
    pub(crate) fn take_changed(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.changed)
    }

    /// The message being answered, if any.
    pub(crate) fn in_flight(&self) -> Option<&Message> {
        self.pending
            .front()
            .filter(|m| m.state == MessageState::Delivering)
    }

    /// When the next message to write was queued, if one waits and none is in flight.
    pub(crate) fn next_queued_at(&self) -> Option<SystemTime> {
        self.pending
            .front()
            .filter(|m| m.state == MessageState::Queued)
            .map(|m| m.created_at)
    }

    /// Puts the message in flight back at the head of the queue, untouched
    /// but for a note (it will be written again, e.g. after a rate limit).
    pub(crate) fn requeue(&mut self, note: String) {
        if let Some(m) = self
            .pending
            .front_mut()
            .filter(|m| m.state == MessageState::Delivering)
        {
            m.state = MessageState::Queued;
            m.delivered_at = None;
            m.output_start = None;
            m.error = Some(note);
            self.changed.push(m.clone());
        }
    }

    /// The next message to write, marked delivering, if none is in flight.
    pub(crate) fn start_next(&mut self, output_start: u64) -> Option<&Message> {
        let m = self.pending.front_mut()?;
        if m.state != MessageState::Queued {
            return None;
        }
        m.state = MessageState::Delivering;
        m.delivered_at = Some(SystemTime::now());
        m.output_start = Some(output_start);
        self.changed.push(m.clone());
        self.pending.front()
    }

    /// Ends the in-flight message with `state`.
    pub(crate) fn finish(&mut self, outcome: Outcome, output_end: u64) -> Option<Message> {
        self.in_flight()?;
        let mut m = self.pending.pop_front()?;
        m.state = outcome.state;
        m.completed_at = Some(SystemTime::now());
        m.output_end = Some(output_end);
        m.reply = outcome.reply;
        m.error = outcome.error;
        m.exit_code = outcome.exit_code;
        m.failure = outcome.failure;
        m.usage = outcome.usage;
        self.remember(m.clone());
        Some(m)
    }

    /// Cancels one message that is still queued (never one being answered:
    /// its text is typed already). `Err(Some(state))`: it is past queued;
    /// `Err(None)`: no such message.
    pub(crate) fn cancel(&mut self, id: Uuid, why: &str) -> Result<Message, Option<MessageState>> {
        let Some(pos) = self.pending.iter().position(|m| m.id == id) else {
            return Err(self.get(id).map(|m| m.state));
        };
        if self.pending[pos].state != MessageState::Queued {
            return Err(Some(self.pending[pos].state));
        }
        let Some(mut m) = self.pending.remove(pos) else {
            return Err(None);
        };
        m.state = MessageState::Cancelled;
        m.completed_at = Some(SystemTime::now());
        m.error = Some(why.to_string());
        self.remember(m.clone());
        Ok(m)
    }

    /// Ends every pending message (the session is over).
    pub(crate) fn cancel_all(&mut self, why: &str, output_end: u64) {
        while let Some(m) = self.pending.front() {
            let state = if m.state == MessageState::Delivering {
                MessageState::Interrupted
            } else {
                MessageState::Cancelled
            };
            let Some(mut m) = self.pending.pop_front() else {
                break;
            };
            m.state = state;
            m.completed_at = Some(SystemTime::now());
            if state == MessageState::Interrupted {
                m.output_end = Some(output_end);
            }
            m.error = Some(why.to_string());
            self.remember(m);
        }
    }

    fn remember(&mut self, m: Message) {
        self.changed.push(m.clone());
        if self.done.len() >= DONE_KEPT {
            self.done.pop_front();
        }
        self.done.push_back(m);
    }

    /// Recent finished messages, then pending ones, oldest first.
    pub(crate) fn all(&self) -> Vec<Message> {
        self.done
            .iter()
            .chain(self.pending.iter())
            .cloned()
            .collect()
    }

    /// Pending messages (queued or in flight).
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.pending.len()
    }

    /// One message by id.
    pub(crate) fn get(&self, id: Uuid) -> Option<Message> {
        self.pending
            .iter()
            .chain(self.done.iter())
            .find(|m| m.id == id)
            .cloned()
    }
}

/// The bytes that type `text` and press Enter. Multi-line or long text goes
/// in as one bracketed paste when the program asked for that mode, so its
/// newlines do not each submit a line.
pub(crate) fn payload(text: &str, bracketed_paste: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    if bracketed_paste && (text.contains('\n') || text.len() > PASTE_OVER) {
        out.extend_from_slice(b"\x1b[200~");
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\x1b[201~");
    } else {
        out.extend_from_slice(text.replace('\n', "\r").as_bytes());
    }
    out.push(b'\r');
    out
}

/// Output bytes as plain text: escape sequences removed, `\r\n` as `\n`.
pub(crate) fn clean_text(raw: &[u8]) -> String {
    let stripped = strip_ansi_escapes::strip(raw);
    String::from_utf8_lossy(&stripped)
        .replace("\r\n", "\n")
        .replace('\r', "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_delivers_in_order_one_at_a_time() {
        let sid = Uuid::new_v4();
        let mut q = Queue::default();
        q.push(Message::new(sid, "a".into()));
        q.push(Message::new(sid, "b".into()));
        assert_eq!(q.start_next(10).unwrap().text, "a");
        assert!(q.start_next(11).is_none(), "one in flight at a time");
        let done = q.finish(Outcome::done("ra".into()), 20).unwrap();
        assert_eq!(
            (done.text.as_str(), done.output_start, done.output_end),
            ("a", Some(10), Some(20))
        );
        assert_eq!(q.start_next(20).unwrap().text, "b");
        q.cancel_all("stopped", 25);
        let all = q.all();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].state, MessageState::Interrupted);
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn cancel_takes_only_queued_messages() {
        let sid = Uuid::new_v4();
        let mut q = Queue::default();
        let a = Message::new(sid, "a".into());
        let b = Message::new(sid, "b".into());
        let (aid, bid) = (a.id, b.id);
        q.push(a);
        q.push(b);
        q.start_next(0);
        assert_eq!(q.cancel(aid, "x"), Err(Some(MessageState::Delivering)));
        let m = q.cancel(bid, "by request").unwrap();
        assert_eq!(m.state, MessageState::Cancelled);
        assert_eq!(m.error.as_deref(), Some("by request"));
        assert_eq!(q.cancel(bid, "x"), Err(Some(MessageState::Cancelled)));
        assert_eq!(q.cancel(Uuid::new_v4(), "x"), Err(None));
        assert_eq!(q.pending(), 1, "the one in flight stays");
    }

    #[test]
    fn payload_uses_paste_only_for_multiline_when_enabled() {
        assert_eq!(payload("ls", true), b"ls\r");
        assert_eq!(payload("a\nb", true), b"\x1b[200~a\nb\x1b[201~\r");
        assert_eq!(payload("a\nb", false), b"a\rb\r");
        assert_eq!(clean_text(b"\x1b[31mred\x1b[0m\r\nnext"), "red\nnext");
    }
}
