//! Output in, prompts out: each chunk goes to the recorder, the log, the
//! screen and the profile; queued prompts are written when the session is
//! ready; the profile's effects are applied here, in order.

use super::{SessionActorState, SessionMsg};
use crate::credits::CreditToken;
use crate::error::HerdError;
use crate::handle::lock;
use crate::journal::Record;
use crate::profile::Effect;
use crate::pty::PtyMsg;
use crate::queue::{Message, Outcome};
use crate::state::SessionState::{Busy, Ready, Stopping};
use crate::tap::TapEvent;
use bytes::Bytes;
use ractor::ActorRef;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl SessionActorState {
    pub(super) fn on_output(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        generation: u64,
        data: Bytes,
        credit: CreditToken,
    ) {
        let now = Instant::now();
        // The recorder gets the chunk with its credit: the reader waits for it too.
        self.handle.tap(
            generation,
            TapEvent::Output {
                data: data.clone(),
                credit: Some(credit),
            },
        );
        self.handle
            .counters
            .bytes_out
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.feed_screen(&data);
        let offset = lock(&self.handle.output).end();
        self.handle.push_output(data.clone());
        self.last_output = now;
        self.last_activity = now;
        // Output of an earlier generation (drained late) moves nothing.
        if generation != self.generation || !self.state.is_running() {
            return;
        }
        let mut out = vec![];
        let (profile, cx) = self.profile();
        profile.output(&cx, offset, &data, &mut out);
        self.schedule_quiet(myself, self.limits.quiet_after);
        self.apply(myself, out);
    }

    /// Applies what the profile said, in order.
    pub(super) fn apply(&mut self, myself: &ActorRef<SessionMsg>, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Go(to, reason) => {
                    if self.state != to && self.go(to, reason, None) && to == Ready {
                        let _ = myself.send_message(SessionMsg::Deliver);
                    }
                }
                Effect::Complete(outcome) => {
                    let end = lock(&self.handle.output).end();
                    self.handle.update_queue(|q| q.finish(outcome, end));
                    let _ = myself.send_message(SessionMsg::Deliver);
                }
                Effect::Write(data) => self.write_detached(data),
                Effect::After(delay, timer) => {
                    myself.send_after(delay, move || SessionMsg::Profile(timer));
                }
                Effect::Dialog(dialog) => self.set_dialog(dialog),
                Effect::WatchQuiet => self.schedule_quiet(myself, self.limits.quiet_after),
            }
        }
    }

    fn set_dialog(&self, dialog: Option<String>) {
        self.handle.info.send_if_modified(|i| {
            let changed = i.dialog != dialog;
            i.dialog = dialog;
            changed
        });
    }

    /// Writes to the child without waiting for the write (answers to dialogs).
    fn write_detached(&self, data: Bytes) {
        if let Some(pty) = &self.pty {
            let (tx, _rx) = tokio::sync::oneshot::channel();
            let _ = pty.send_message(PtyMsg::Write(data, tx.into()));
        }
    }

    /// Queues a prompt once it is stored: a message the store cannot take
    /// is refused and never typed.
    pub(super) async fn enqueue(&mut self, text: String) -> Result<Message, HerdError> {
        if self.state.is_final() || self.state == Stopping {
            return Err(self.conflict("send a message to"));
        }
        let m = Message::new(self.handle.id(), text);
        self.handle
            .journal
            .store(Record::Message(Box::new(m.clone())))
            .await
            .map_err(HerdError::Storage)?;
        self.handle.update_queue(|q| q.push(m.clone()));
        Ok(m)
    }

    /// Writes the next queued message if the session is ready and none is in flight.
    pub(super) async fn try_deliver(&mut self, myself: &ActorRef<SessionMsg>) {
        if self.state != Ready || self.pty.is_none() {
            return;
        }
        let start = lock(&self.handle.output).end();
        let Some(text) = self
            .handle
            .update_queue(|q| q.start_next(start).map(|m| m.text.clone()))
        else {
            return;
        };
        let mut out = vec![];
        let (profile, cx) = self.profile();
        let data = profile.deliver(&cx, &text, &mut out);
        // Busy from the moment the prompt is written: the answer may start silently.
        self.go(Busy, "message delivered", None);
        self.last_output = Instant::now();
        self.schedule_quiet(myself, self.limits.quiet_after);
        self.apply(myself, out);
        if let Err(e) = self.input(data).await {
            let end = lock(&self.handle.output).end();
            self.handle
                .update_queue(|q| q.finish(Outcome::interrupted(e.to_string()), end));
        }
    }
}
