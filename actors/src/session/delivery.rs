//! Output in, prompts out: each chunk goes to the recorder, the log, the
//! screen and the profile; queued prompts are written when the session is
//! ready; the profile's effects are applied here, in order.

use super::{SessionActorState, SessionMsg};
use crate::budget::Payer;
use crate::cause::EndCause;
use crate::credits::CreditToken;
use crate::error::HerdError;
use crate::events::{Notice, NoticeKind};
use crate::handle::lock;
use crate::journal::Record;
use crate::profile::Effect;
use crate::pty::PtyMsg;
use crate::queue::{Message, MessageState, Outcome};
use crate::state::SessionState::{Ready, Stopping};
use crate::tap::TapEvent;
use crate::waiting::Failure;
use bytes::Bytes;
use ractor::ActorRef;
use std::time::Instant;
use uuid::Uuid;

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
        if self.handle.counters.count_output(data.len() as u64) {
            self.wake_metrics();
        }
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
                    if let Some(u) = &outcome.usage {
                        self.charge(u);
                    }
                    if let Some(Failure::RateLimited { reset, .. }) = &outcome.failure {
                        if let Some(m) = lock(&self.handle.queue).in_flight() {
                            self.notice(NoticeKind::RateLimited {
                                message_id: m.id,
                                message: outcome
                                    .failure
                                    .as_ref()
                                    .map(|f| f.to_string())
                                    .unwrap_or_default(),
                            });
                        }
                        // Not lost: back at the head of the queue, written
                        // again once the fleet's pause ends.
                        self.gate.rate_limited(reset.as_deref().and_then(reset_in));
                        self.slot = None;
                        let note = format!(
                            "rate limited; written again after the pause ({})",
                            outcome
                                .failure
                                .as_ref()
                                .map(|f| f.to_string())
                                .unwrap_or_default()
                        );
                        self.handle.update_queue(|q| q.requeue(note));
                    } else {
                        if outcome.state == MessageState::Done {
                            self.gate.succeeded();
                        }
                        self.end_in_flight(outcome);
                    }
                    let _ = myself.send_message(SessionMsg::Deliver);
                }
                Effect::Waiting(w) => {
                    self.handle.info.send_if_modified(|i| {
                        let changed = i.waiting != w;
                        i.waiting = w;
                        changed
                    });
                }
                Effect::Error(e) => {
                    self.handle.info.send_if_modified(|i| {
                        let changed = i.error != e;
                        i.error = e;
                        changed
                    });
                }
                Effect::Deliver => {
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

    /// Ends the message in flight, and frees the fleet slot it held.
    pub(super) fn end_in_flight(&mut self, outcome: Outcome) {
        let end = lock(&self.handle.output).end();
        let done = self.handle.update_queue(|q| q.finish(outcome, end));
        self.slot = None;
        if let Some(m) = done {
            self.notice(NoticeKind::MessageDone {
                message_id: m.id,
                state: m.state,
                failure: m.failure,
            });
        }
    }

    /// Charges a turn's usage to the session, its task and its project, and
    /// reports the budget thresholds it crossed.
    fn charge(&mut self, u: &crate::usage::Usage) {
        let payer = self.payer();
        let (cost, crossed) = self.ledger.charge(&payer, u);
        self.handle.info.send_modify(|i| {
            i.usage.add(u);
            i.cost_usd += cost;
        });
        for c in crossed {
            tracing::warn!(session = %self.handle.id(), "{c}");
            self.notice(NoticeKind::Budget(c));
        }
    }

    fn payer(&self) -> Payer {
        Payer::of(&self.handle.info(), &self.handle.spec())
    }

    /// Publishes a notice about this session.
    pub(super) fn notice(&self, kind: NoticeKind) {
        let info = self.handle.info();
        self.handle.bus.notice(Notice {
            session_id: info.id,
            task_id: info.task_id,
            project_id: info.project_id,
            kind,
            at: std::time::SystemTime::now(),
        });
    }

    /// Fails the next queued message if a budget of this session is spent
    /// (and stops the session if that budget says so). True if it did.
    fn refuse_over_budget(&mut self, myself: &ActorRef<SessionMsg>) -> bool {
        let Some((failure, stop)) = self.ledger.check(&self.payer()) else {
            return false;
        };
        let start = lock(&self.handle.output).end();
        if self.handle.update_queue(|q| q.start_next(start).is_none()) {
            return false;
        }
        let why = failure.to_string();
        self.end_in_flight(Outcome::failed(failure));
        if stop {
            let _ = self.stop(myself, false, EndCause::BudgetSpent { message: why });
        } else {
            // The rest of the queue fails the same way, one by one.
            let _ = myself.send_message(SessionMsg::Deliver);
        }
        true
    }

    /// Cancels a message that is still queued; one being answered cannot be
    /// (its text is typed already).
    pub(super) fn cancel_message(&mut self, id: Uuid, why: &str) -> Result<Message, HerdError> {
        let session = self.handle.id().to_string();
        self.handle
            .update_queue(|q| q.cancel(id, why))
            .map_err(|state| match state {
                Some(state) => HerdError::MessageConflict {
                    message: id.to_string(),
                    action: "cancel".into(),
                    state,
                },
                None => HerdError::MessageNotFound {
                    session,
                    message: id.to_string(),
                },
            })
    }

    /// Writes the next queued message if the session is ready and none is in
    /// flight (and, for a gated profile, the fleet's gate lets it).
    pub(super) async fn try_deliver(&mut self, myself: &ActorRef<SessionMsg>) {
        if self.state != Ready || self.pty.is_none() {
            return;
        }
        let next = {
            let q = lock(&self.handle.queue);
            if q.in_flight().is_some() {
                return;
            }
            q.next_queued_at()
        };
        let Some(queued_at) = next else {
            return;
        };
        if self.refuse_over_budget(myself) {
            return;
        }
        let (profile, cx) = self.profile();
        if !profile.ready_to_deliver(&cx) {
            return;
        }
        if profile.gated() && self.slot.is_none() {
            match self
                .gate
                .enter(self.handle.id(), queued_at, myself.get_derived())
            {
                Some(slot) => self.slot = Some(slot),
                // Woken with a Deliver when its turn comes.
                None => return,
            }
        }
        let start = lock(&self.handle.output).end();
        let Some(text) = self
            .handle
            .update_queue(|q| q.start_next(start).map(|m| m.text.clone()))
        else {
            self.slot = None;
            return;
        };
        let mut out = vec![];
        let (profile, cx) = self.profile();
        let data = profile.deliver(&cx, &text, &mut out);
        self.last_output = Instant::now();
        self.schedule_quiet(myself, self.limits.quiet_after);
        self.apply(myself, out);
        if let Err(e) = self.input(data).await {
            self.end_in_flight(Outcome::interrupted(e.to_string()));
        }
    }
}

/// How long until a rate limit resets, when the program said it as a
/// duration (`5m`, `in 30 seconds`); a clock time is left to the backoff.
fn reset_in(reset: &str) -> Option<std::time::Duration> {
    let text = reset.trim().trim_start_matches("in ").trim();
    humantime::parse_duration(text)
        .or_else(|_| humantime::parse_duration(&text.replace(' ', "")))
        .ok()
}
