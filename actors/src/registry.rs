//! [`Registry`]: the entry point through which a program creates, finds and
//! drives sessions. Its actor, the supervisor of every SessionActor, is in
//! [`supervisor`].
//!
//! Over 600 lines: one thin, documented method per user-visible action on a
//! session; splitting them by theme would scatter one facade.

mod supervisor;

use crate::cause::{EndCause, Request};
use crate::config::SessionDefaults;
use crate::error::HerdError;
use crate::events::EventBus;
use crate::handle::SessionHandle;
use crate::info::SessionInfo;
use crate::journal::Journal;
use crate::profile::claude::hook::ClaudeHook;
use crate::queue::Message;
use crate::session::{Reply, SessionMsg};
use crate::spec::{SessionPatch, SessionSpec};
use crate::state::SessionState;
use crate::tap::Tap;
use bytes::Bytes;
use ractor::rpc::CallResult;
use ractor::ActorCell;
use ractor::{Actor, ActorRef};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use supervisor::{live_count, RegistryActor, RegistryArgs, RegistryMsg, Table};

/// The typed actor of a session, from the untyped cell its handle keeps.
fn session_actor(cell: ActorCell) -> ActorRef<SessionMsg> {
    cell.into()
}
use uuid::Uuid;

/// How long a command waits for a session actor to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a registry sends what it must not keep to itself.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Every change, in order, for a store.
    pub journal: Journal,
    /// Every session's output, input and markers, for a recorder.
    pub tap: Option<Arc<dyn Tap>>,
}

/// A session read back from a store.
#[derive(Debug, Clone)]
pub struct Restore {
    /// Its last known snapshot (id, created_at, generation, restarts, ...).
    pub info: SessionInfo,
    /// Its messages: final ones become history, queued ones are delivered.
    pub messages: Vec<Message>,
    /// Start its next generation (true) or keep it as history (false).
    pub live: bool,
    /// Its stored transitions, oldest first, so its event history survives
    /// the daemon (the newest 512 are kept).
    pub events: Vec<crate::events::Event>,
    /// The tail of its last generation's output (from its recording), so
    /// `logs` and `screen` of a session that ended still show it.
    pub output: Vec<u8>,
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only in this state.
    pub state: Option<SessionState>,
    /// Only serving this task.
    pub task_id: Option<String>,
    /// Only in this project.
    pub project_id: Option<String>,
    /// Include stopped and failed sessions.
    pub all: bool,
}

/// The entry point of the actor system: create, find and drive sessions.
#[derive(Clone)]
pub struct Registry {
    actor: ActorRef<RegistryMsg>,
    table: Table,
    bus: EventBus,
    defaults: Arc<SessionDefaults>,
    journal: Journal,
    ledger: crate::budget::Ledger,
    /// Shared with every session: read for [`Registry::fleet`].
    gate: crate::gate::Gate,
}

impl Registry {
    /// Starts a registry with these defaults and no persistence.
    pub async fn start(defaults: SessionDefaults) -> Result<Self, HerdError> {
        Self::start_with(defaults, Hooks::default()).await
    }

    /// Starts a registry whose changes go to `hooks.journal` and whose
    /// sessions' output goes to `hooks.tap`.
    pub async fn start_with(defaults: SessionDefaults, hooks: Hooks) -> Result<Self, HerdError> {
        let Hooks { journal, tap } = hooks;
        let table: Table = Arc::default();
        let bus = EventBus::new();
        let ledger = crate::budget::Ledger::new(defaults.budgets.clone(), defaults.prices.clone());
        let gate = crate::gate::Gate::new(defaults.fleet.clone());
        let defaults = Arc::new(defaults);
        let args = RegistryArgs {
            table: Arc::clone(&table),
            defaults: Arc::clone(&defaults),
            bus: bus.clone(),
            journal: journal.clone(),
            tap,
            ledger: ledger.clone(),
            gate: gate.clone(),
        };
        let (actor, _) = Actor::spawn(None, RegistryActor, args)
            .await
            .map_err(|e| HerdError::Internal(format!("cannot start registry: {e}")))?;
        Ok(Self {
            actor,
            table,
            bus,
            defaults,
            journal,
            ledger,
            gate,
        })
    }

    /// The fleet's delivery gate now: slots held, waiters, a rate-limit pause.
    pub fn fleet(&self) -> crate::gate::FleetStatus {
        self.gate.status()
    }

    /// Spend and budgets of every session, task and project that spent
    /// anything since the daemon started (restored sessions included).
    pub fn budgets(&self) -> Vec<crate::budget::BudgetStatus> {
        self.ledger.statuses()
    }

    /// The event bus of every transition.
    pub fn events(&self) -> &EventBus {
        &self.bus
    }

    /// The defaults sessions inherit.
    pub fn defaults(&self) -> &SessionDefaults {
        &self.defaults
    }

    /// Validates the spec and starts a session; returns it in state `pending` or later.
    pub async fn create(&self, spec: SessionSpec) -> Result<SessionInfo, HerdError> {
        self.create_with_id(spec, None).await
    }

    /// Like [`Self::create`], keeping a given id (used to recover sessions).
    pub async fn create_with_id(
        &self,
        spec: SessionSpec,
        id: Option<Uuid>,
    ) -> Result<SessionInfo, HerdError> {
        spec.validate()?;
        let r = self
            .actor
            .call(
                |reply| RegistryMsg::Create {
                    spec: Box::new(spec),
                    id,
                    restore: None,
                    adopted: vec![],
                    reply,
                },
                Some(CALL_TIMEOUT),
            )
            .await;
        // The registry stored the session before starting it.
        Ok(unwrap_call(r)??.info())
    }

    /// Starts a session that ran elsewhere (another node of a cluster) under
    /// its id, with the messages still queued for it there: all stored
    /// before it starts; queued ones are delivered once it is ready, one
    /// that was being answered is `interrupted` (never typed twice).
    pub async fn adopt(
        &self,
        spec: SessionSpec,
        id: Uuid,
        messages: Vec<Message>,
    ) -> Result<SessionInfo, HerdError> {
        spec.validate()?;
        let now = std::time::SystemTime::now();
        let messages = messages
            .into_iter()
            .map(|mut m| {
                if m.state == crate::queue::MessageState::Delivering {
                    m.state = crate::queue::MessageState::Interrupted;
                    m.completed_at = Some(now);
                    m.error = Some("the session's node was lost while the message was being answered; it was not sent again".into());
                }
                m
            })
            .collect();
        let r = self
            .actor
            .call(
                |reply| RegistryMsg::Create {
                    spec: Box::new(spec),
                    id: Some(id),
                    restore: None,
                    adopted: messages,
                    reply,
                },
                Some(CALL_TIMEOUT),
            )
            .await;
        Ok(unwrap_call(r)??.info())
    }

    /// Brings back a session from a store (no `max_sessions` check: it existed).
    pub async fn restore(
        &self,
        spec: SessionSpec,
        restore: Restore,
    ) -> Result<SessionInfo, HerdError> {
        let r = self
            .actor
            .call(
                |reply| RegistryMsg::Create {
                    spec: Box::new(spec),
                    id: None,
                    restore: Some(Box::new(restore)),
                    adopted: vec![],
                    reply,
                },
                Some(CALL_TIMEOUT),
            )
            .await;
        Ok(unwrap_call(r)??.info())
    }

    /// The journal every change goes to.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Every session matching the filter, oldest first.
    pub fn list(&self, filter: &ListFilter) -> Vec<SessionInfo> {
        self.list_by(filter, false)
    }

    /// As [`Registry::list`], each with its screen's last line
    /// ([`SessionInfo::last_line`]), for fleet views.
    pub fn list_with_last_line(&self, filter: &ListFilter) -> Vec<SessionInfo> {
        self.list_by(filter, true)
    }

    fn list_by(&self, filter: &ListFilter, last_line: bool) -> Vec<SessionInfo> {
        self.list_handles(filter)
            .iter()
            .map(|h| SessionInfo {
                last_line: if last_line { h.last_line() } else { None },
                ..h.info()
            })
            .collect()
    }

    /// The sessions matching the filter, oldest first, as handles: for a
    /// list that reads each one's kept JSON ([`SessionHandle::info_json`])
    /// instead of cloning every snapshot.
    pub fn list_handles(&self, filter: &ListFilter) -> Vec<Arc<SessionHandle>> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<((SystemTime, Uuid), Arc<SessionHandle>)> = table
            .values()
            .filter_map(|h| {
                let i = h.info.borrow();
                let keep = (filter.all || filter.state.is_some() || !i.state.is_final())
                    && filter.state.is_none_or(|s| i.state == s)
                    && filter
                        .task_id
                        .as_ref()
                        .is_none_or(|t| i.task_id.as_ref() == Some(t))
                    && filter
                        .project_id
                        .as_ref()
                        .is_none_or(|p| i.project_id.as_ref() == Some(p));
                keep.then(|| ((i.created_at, i.id), h.clone()))
            })
            .collect();
        drop(table);
        out.sort_by_key(|(k, _)| *k);
        out.into_iter().map(|(_, h)| h).collect()
    }

    /// Lets go of the output and screen of every session that ended more
    /// than `after` ago (see [`SessionHandle::release_buffers`]); returns how
    /// many were released now. For a daemon whose recorder holds them.
    pub fn release_ended(&self, after: Duration) -> usize {
        let handles: Vec<Arc<SessionHandle>> = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let now = std::time::SystemTime::now();
        handles
            .iter()
            .filter(|h| !h.is_released())
            .filter(|h| {
                let i = h.info.borrow();
                i.state.is_final() && now.duration_since(i.updated_at).unwrap_or_default() >= after
            })
            .filter(|h| h.release_buffers())
            .count()
    }

    /// Live (not final) sessions.
    pub fn live_count(&self) -> usize {
        live_count(&self.table)
    }

    /// The session with this full id or unique id prefix.
    pub fn resolve(&self, id: &str) -> Result<Arc<SessionHandle>, HerdError> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        if let Ok(uuid) = Uuid::parse_str(id) {
            return table
                .get(&uuid)
                .cloned()
                .ok_or_else(|| HerdError::NotFound(id.into()));
        }
        let prefix = id.to_ascii_lowercase();
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(HerdError::invalid(
                "id",
                format!("{id:?} is not a session id or id prefix"),
            ));
        }
        let mut hits = table
            .iter()
            .filter(|(k, _)| k.to_string().starts_with(&prefix));
        match (hits.next(), hits.next()) {
            (None, _) => Err(HerdError::NotFound(id.into())),
            (Some((_, h)), None) => Ok(Arc::clone(h)),
            (Some(_), Some(_)) => Err(HerdError::Ambiguous {
                prefix: id.into(),
                count: 2 + hits.count(),
            }),
        }
    }

    /// The session with this id, if it exists.
    pub fn get(&self, id: Uuid) -> Option<Arc<SessionHandle>> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// The session and its actor, or why `action` cannot reach it.
    fn session_and_actor(
        &self,
        id: Uuid,
        action: &str,
    ) -> Result<(Arc<SessionHandle>, ActorRef<SessionMsg>), HerdError> {
        let handle = self
            .get(id)
            .ok_or_else(|| HerdError::NotFound(id.to_string()))?;
        let actor = handle
            .actor()
            .map(session_actor)
            .ok_or_else(|| HerdError::Conflict {
                id: id.to_string(),
                action: action.into(),
                state: handle.info().state,
            })?;
        Ok((handle, actor))
    }

    async fn command(
        &self,
        id: Uuid,
        action: &str,
        msg: impl FnOnce(Reply) -> SessionMsg,
    ) -> Result<SessionInfo, HerdError> {
        let (handle, actor) = self.session_and_actor(id, action)?;
        match unwrap_call(actor.call(msg, Some(CALL_TIMEOUT)).await) {
            Ok(r) => r,
            // The actor ended between lookup and call: the session just reached a final state.
            Err(_) if handle.info().state.is_final() => Err(HerdError::Conflict {
                id: id.to_string(),
                action: action.into(),
                state: handle.info().state,
            }),
            Err(e) => Err(e),
        }
    }

    /// Writes bytes to the session's terminal.
    pub async fn input(&self, id: Uuid, data: Bytes) -> Result<SessionInfo, HerdError> {
        self.command(id, "send input to", |r| SessionMsg::Input(data, r))
            .await
    }

    /// Resizes the session's terminal.
    pub async fn resize(&self, id: Uuid, cols: u16, rows: u16) -> Result<SessionInfo, HerdError> {
        self.command(id, "resize", |r| SessionMsg::Resize(cols, rows, r))
            .await
    }

    /// SIGINT to the foreground process group of the session's terminal.
    pub async fn interrupt(&self, id: Uuid) -> Result<SessionInfo, HerdError> {
        self.command(id, "interrupt", SessionMsg::Interrupt).await
    }

    /// Answers the dialog a `waiting_input` session shows, by meaning
    /// (`yes`, `always`, `no`) or with free text; the profile picks the key
    /// from the choices on screen, never a digit typed blind.
    pub async fn answer(&self, id: Uuid, answer: String) -> Result<SessionInfo, HerdError> {
        if answer.trim().is_empty() {
            return Err(HerdError::invalid("choice", "must not be empty"));
        }
        self.command(id, "answer", |r| SessionMsg::Answer(answer, r))
            .await
    }

    /// Hands a hook event to its session without waiting: the program that
    /// reported it must never be slowed down by herd.
    pub fn hook(&self, id: Uuid, hook: ClaudeHook) -> Result<(), HerdError> {
        let (_, actor) = self.session_and_actor(id, "report a hook to")?;
        actor
            .send_message(SessionMsg::Hook(Box::new(hook)))
            .map_err(|_| HerdError::Internal("the session actor is gone".into()))
    }

    /// SIGSTOP the session's process tree.
    pub async fn suspend(&self, id: Uuid) -> Result<SessionInfo, HerdError> {
        self.command(id, "suspend", SessionMsg::Suspend).await
    }

    /// SIGCONT the session's process tree.
    pub async fn resume(&self, id: Uuid) -> Result<SessionInfo, HerdError> {
        self.command(id, "resume", SessionMsg::Resume).await
    }

    /// Replaces the session's child now; a session that ended starts again
    /// (see [`Self::revive`]).
    pub async fn restart(&self, id: Uuid) -> Result<SessionInfo, HerdError> {
        let ended = self
            .get(id)
            .is_some_and(|h| h.actor().is_none() && h.info().state.is_final());
        if ended {
            return self.revive(id).await;
        }
        self.command(id, "restart", SessionMsg::Restart).await
    }

    /// Stops the session (graceful unless `force`); returns at once, in state `stopping`.
    pub async fn stop(&self, id: Uuid, force: bool) -> Result<SessionInfo, HerdError> {
        let request = if force { Request::Kill } else { Request::Stop };
        self.command(id, "stop", |reply| SessionMsg::Stop {
            force,
            cause: EndCause::Requested { request },
            reply: Some(reply),
        })
        .await
    }

    /// Stops a session for a cause of the caller's (a cluster fencing or
    /// handing it over), never restarted by its policy.
    pub async fn stop_for(
        &self,
        id: Uuid,
        force: bool,
        cause: EndCause,
    ) -> Result<SessionInfo, HerdError> {
        self.command(id, "stop", |reply| SessionMsg::Stop {
            force,
            cause,
            reply: Some(reply),
        })
        .await
    }

    /// Queues a prompt; it is written when the session is ready, then Enter.
    pub async fn send(&self, id: Uuid, text: String) -> Result<Message, HerdError> {
        if text.is_empty() {
            return Err(HerdError::invalid("text", "must not be empty"));
        }
        let handle = self
            .get(id)
            .ok_or_else(|| HerdError::NotFound(id.to_string()))?;
        let state = handle.info().state;
        let conflict = || HerdError::Conflict {
            id: id.to_string(),
            action: "send a message to".into(),
            state,
        };
        let actor = handle.actor().map(session_actor).ok_or_else(conflict)?;
        match unwrap_call(
            actor
                .call(|r| SessionMsg::Send(text, r), Some(CALL_TIMEOUT))
                .await,
        ) {
            // The actor stored the message before queueing it.
            Ok(r) => r,
            Err(_) if handle.info().state.is_final() => Err(conflict()),
            Err(e) => Err(e),
        }
    }

    /// Queues a prompt and waits (up to `timeout`) for the session to answer
    /// and be ready again; returns the message as it is then.
    pub async fn send_and_wait(
        &self,
        id: Uuid,
        text: String,
        timeout: Duration,
    ) -> Result<Message, HerdError> {
        let m = self.send(id, text).await?;
        let handle = self
            .get(id)
            .ok_or_else(|| HerdError::NotFound(id.to_string()))?;
        let m = handle.wait_message(m.id, timeout).await.unwrap_or(m);
        if m.state != crate::queue::MessageState::Queued {
            return Ok(m);
        }
        // Nobody waits for it any more: a prompt typed later, unwatched,
        // would surprise whoever uses the session next. One being answered
        // cannot be taken back and stays.
        match self.cancel(id, m.id).await {
            Ok(cancelled) => Ok(cancelled),
            Err(_) => Ok(handle.message(m.id).unwrap_or(m)),
        }
    }

    /// Changes metadata, limits or the restart policy of a live session.
    pub async fn patch(&self, id: Uuid, patch: SessionPatch) -> Result<SessionInfo, HerdError> {
        patch.validate()?;
        self.command(id, "change", |r| SessionMsg::Patch(Box::new(patch), r))
            .await
    }

    /// Cancels a message that is still queued (409 once it is being answered).
    pub async fn cancel(&self, id: Uuid, message: Uuid) -> Result<Message, HerdError> {
        let handle = self
            .get(id)
            .ok_or_else(|| HerdError::NotFound(id.to_string()))?;
        let settled = |handle: &SessionHandle| match handle.message(message) {
            Some(m) => HerdError::MessageConflict {
                message: message.to_string(),
                action: "cancel".into(),
                state: m.state,
            },
            None => HerdError::MessageNotFound {
                session: id.to_string(),
                message: message.to_string(),
            },
        };
        // A session that ended has no queued message left: each was cancelled.
        let Some(actor) = handle.actor().map(session_actor) else {
            return Err(settled(&handle));
        };
        let why = "cancelled by request".to_string();
        match unwrap_call(
            actor
                .call(|r| SessionMsg::Cancel(message, why, r), Some(CALL_TIMEOUT))
                .await,
        ) {
            Ok(r) => {
                // Stored before the caller hears of it.
                self.journal.flush().await.map_err(HerdError::Storage)?;
                r
            }
            Err(_) if handle.info().state.is_final() => Err(settled(&handle)),
            Err(e) => Err(e),
        }
    }

    /// Starts a stopped or failed session again: a new actor and child with
    /// the same id, spec, task and message history, generation + 1.
    pub async fn revive(&self, id: Uuid) -> Result<SessionInfo, HerdError> {
        let r = self
            .actor
            .call(
                |reply| RegistryMsg::Revive { id, reply },
                Some(CALL_TIMEOUT),
            )
            .await;
        let handle = unwrap_call(r)??;
        self.journal.flush().await.map_err(HerdError::Storage)?;
        Ok(handle.info())
    }

    /// Forgets a stopped or failed session.
    pub async fn remove(&self, id: Uuid) -> Result<(), HerdError> {
        unwrap_call(
            self.actor
                .call(
                    |reply| RegistryMsg::Remove { id, reply },
                    Some(CALL_TIMEOUT),
                )
                .await,
        )?
    }

    /// Waits until the session is in a state that `pred` accepts, or `timeout` passes.
    pub async fn wait_for(
        &self,
        id: Uuid,
        timeout: Duration,
        pred: impl Fn(&SessionInfo) -> bool,
    ) -> Result<SessionInfo, HerdError> {
        let handle = self
            .get(id)
            .ok_or_else(|| HerdError::NotFound(id.to_string()))?;
        let mut rx = handle.watch();
        // Drop the borrow `wait_for` returns before reading the info again: a
        // second read lock on the watch deadlocks behind a queued writer.
        let r = tokio::time::timeout(timeout, rx.wait_for(|i| pred(i)))
            .await
            .map(|r| r.map(|_| ()));
        match r {
            Ok(Ok(())) => Ok(handle.info()),
            _ => Err(HerdError::Internal(format!(
                "timed out after {} waiting for session {id} (it is {})",
                humantime::format_duration(timeout),
                handle.info().state
            ))),
        }
    }

    /// Stops every live session and waits (up to `timeout`) for them to end,
    /// then stops the registry.
    pub async fn shutdown(&self, timeout: Duration) {
        let live: Vec<_> = self.list(&ListFilter::default());
        for s in &live {
            if let Some(actor) = self.get(s.id).and_then(|h| h.actor()) {
                let _ = session_actor(actor).send_message(SessionMsg::Stop {
                    force: false,
                    cause: EndCause::DaemonShutdown,
                    reply: None,
                });
            }
        }
        // One deadline for all: thousands of sessions must not wait
        // `timeout` each.
        let deadline = tokio::time::Instant::now() + timeout;
        for s in &live {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let _ = self.wait_for(s.id, left, |i| i.state.is_final()).await;
        }
        let _ = self.actor.stop_and_wait(None, Some(timeout)).await;
        if let Err(e) = self.journal.flush().await {
            tracing::error!("at shutdown, some changes could not be stored: {e}");
        }
    }

    /// Test hook: makes the session's actor panic.
    #[cfg(feature = "test-hooks")]
    pub fn inject_panic(&self, id: Uuid) -> Result<(), HerdError> {
        let (_, actor) = self.session_and_actor(id, "inject a panic into")?;
        actor
            .send_message(SessionMsg::Panic)
            .map_err(|e| HerdError::Internal(e.to_string()))
    }
}

fn unwrap_call<T, M>(r: Result<CallResult<T>, ractor::MessagingErr<M>>) -> Result<T, HerdError> {
    match r {
        Ok(CallResult::Success(v)) => Ok(v),
        Ok(CallResult::Timeout) => Err(HerdError::Internal(
            "the session did not answer in time".into(),
        )),
        Ok(CallResult::SenderError) => Err(HerdError::Internal(
            "the session ended while answering".into(),
        )),
        Err(_) => Err(HerdError::Internal("the actor is gone".into())),
    }
}
