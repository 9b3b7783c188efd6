//! [`Registry`]: the entry point through which a program creates, finds and
//! drives sessions. Its actor, the supervisor of every SessionActor, is in
//! [`supervisor`].

mod supervisor;

use crate::cause::{EndCause, Request};
use crate::config::SessionDefaults;
use crate::error::HerdError;
use crate::events::EventBus;
use crate::handle::SessionHandle;
use crate::info::SessionInfo;
use crate::journal::Journal;
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
use std::time::Duration;
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
        let defaults = Arc::new(defaults);
        let args = RegistryArgs {
            table: Arc::clone(&table),
            defaults: Arc::clone(&defaults),
            bus: bus.clone(),
            journal: journal.clone(),
            tap,
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
        })
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
                    reply,
                },
                Some(CALL_TIMEOUT),
            )
            .await;
        // The registry stored the session before starting it.
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
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<SessionInfo> = table
            .values()
            .map(|h| h.info())
            .filter(|i| {
                (filter.all || filter.state.is_some() || !i.state.is_final())
                    && filter.state.is_none_or(|s| i.state == s)
                    && filter
                        .task_id
                        .as_ref()
                        .is_none_or(|t| i.task_id.as_ref() == Some(t))
                    && filter
                        .project_id
                        .as_ref()
                        .is_none_or(|p| i.project_id.as_ref() == Some(p))
            })
            .collect();
        out.sort_by_key(|i| (i.created_at, i.id));
        out
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

    async fn command(
        &self,
        id: Uuid,
        action: &str,
        msg: impl FnOnce(Reply) -> SessionMsg,
    ) -> Result<SessionInfo, HerdError> {
        let handle = self
            .get(id)
            .ok_or_else(|| HerdError::NotFound(id.to_string()))?;
        let Some(actor) = handle.actor() else {
            return Err(HerdError::Conflict {
                id: id.to_string(),
                action: action.into(),
                state: handle.info().state,
            });
        };
        match unwrap_call(session_actor(actor).call(msg, Some(CALL_TIMEOUT)).await) {
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

    /// SIGSTOP the session's process tree.
    pub async fn suspend(&self, id: Uuid) -> Result<SessionInfo, HerdError> {
        self.command(id, "suspend", SessionMsg::Suspend).await
    }

    /// SIGCONT the session's process tree.
    pub async fn resume(&self, id: Uuid) -> Result<SessionInfo, HerdError> {
        self.command(id, "resume", SessionMsg::Resume).await
    }

    /// Replaces the session's child now.
    pub async fn restart(&self, id: Uuid) -> Result<SessionInfo, HerdError> {
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
        Ok(handle.wait_message(m.id, timeout).await.unwrap_or(m))
    }

    /// Changes metadata, limits or the restart policy of a live session.
    pub async fn patch(&self, id: Uuid, patch: SessionPatch) -> Result<SessionInfo, HerdError> {
        patch.validate()?;
        self.command(id, "change", |r| SessionMsg::Patch(Box::new(patch), r))
            .await
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
        for s in &live {
            let _ = self.wait_for(s.id, timeout, |i| i.state.is_final()).await;
        }
        let _ = self.actor.stop_and_wait(None, Some(timeout)).await;
        if let Err(e) = self.journal.flush().await {
            tracing::error!("at shutdown, some changes could not be stored: {e}");
        }
    }

    /// Test hook: makes the session's actor panic.
    #[cfg(feature = "test-hooks")]
    pub fn inject_panic(&self, id: Uuid) -> Result<(), HerdError> {
        let handle = self
            .get(id)
            .ok_or_else(|| HerdError::NotFound(id.to_string()))?;
        let actor = handle
            .actor()
            .map(session_actor)
            .ok_or_else(|| HerdError::Internal("no actor".into()))?;
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
