//! RegistryActor: the one-for-one supervisor of every SessionActor. It owns
//! the session table's writes: admitting a created or restored session,
//! restarting a failed SessionActor from the session's last known spec, and
//! recording the end of one that fails too often.

use super::Restore;
use crate::budget::{Ledger, Spend};
use crate::cause::EndCause;
use crate::config::SessionDefaults;
use crate::error::HerdError;
use crate::events::EventBus;
use crate::gate::Gate;
use crate::handle::{lock, SessionHandle};
use crate::info::{Metrics, SessionInfo};
use crate::journal::{Journal, Record};
use crate::policy::{Decision, ExitStatus, RestartTracker};
use crate::queue::Message;
use crate::session::{SessionActor, SessionArgs};
use crate::spec::SessionSpec;
use crate::state::SessionState;
use crate::tap::Tap;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};
use uuid::Uuid;

pub(super) type Table = Arc<RwLock<HashMap<Uuid, Arc<SessionHandle>>>>;

/// Sessions not yet stopped or failed (what `max_sessions` counts).
pub(super) fn live_count(table: &Table) -> usize {
    let table = table.read().unwrap_or_else(|e| e.into_inner());
    table
        .values()
        .filter(|h| !h.info.borrow().state.is_final())
        .count()
}

/// Messages of the RegistryActor.
pub(super) enum RegistryMsg {
    /// Create and start a session (with a given id, for recovery).
    Create {
        /// What to run.
        spec: Box<SessionSpec>,
        /// Keep this id instead of a new one.
        id: Option<Uuid>,
        /// Bring back a session from a store instead of creating a new one.
        restore: Option<Box<Restore>>,
        /// Messages a new session brings along (queued on the node it came
        /// from): stored with it, delivered once it is ready.
        adopted: Vec<Message>,
        /// The new session, or why not.
        reply: RpcReplyPort<Result<Arc<SessionHandle>, HerdError>>,
    },
    /// Start a stopped or failed session again.
    Revive {
        /// Which.
        id: Uuid,
        /// The session, or why not.
        reply: RpcReplyPort<Result<Arc<SessionHandle>, HerdError>>,
    },
    /// Forget a session that reached a final state.
    Remove {
        /// Which.
        id: Uuid,
        /// Done, or why not.
        reply: RpcReplyPort<Result<(), HerdError>>,
    },
}

/// State of the RegistryActor.
pub(super) struct RegistryState {
    table: Table,
    by_actor: HashMap<ActorId, Uuid>,
    defaults: Arc<SessionDefaults>,
    bus: EventBus,
    journal: Journal,
    tap: Option<Arc<dyn Tap>>,
    /// Per-session budget for actor (not child) restarts.
    actor_restarts: HashMap<Uuid, RestartTracker>,
    /// The fleet's delivery gate, shared by every session.
    gate: Gate,
    /// The fleet's budget ledger, shared by every session.
    ledger: Ledger,
}

/// What a session brings into a new handle besides its snapshot and spec.
#[derive(Default)]
struct History {
    messages: Vec<Message>,
    events: Vec<crate::events::Event>,
    output: Vec<u8>,
}

/// Supervises the SessionActors.
pub(super) struct RegistryActor;

/// Arguments of the RegistryActor.
pub(super) struct RegistryArgs {
    pub(super) table: Table,
    pub(super) defaults: Arc<SessionDefaults>,
    pub(super) bus: EventBus,
    pub(super) journal: Journal,
    pub(super) tap: Option<Arc<dyn Tap>>,
    pub(super) ledger: Ledger,
    pub(super) gate: Gate,
}

impl Actor for RegistryActor {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = RegistryArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RegistryArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let gate = args.gate;
        Ok(RegistryState {
            table: args.table,
            by_actor: HashMap::new(),
            defaults: args.defaults,
            bus: args.bus,
            journal: args.journal,
            tap: args.tap,
            actor_restarts: HashMap::new(),
            gate,
            ledger: args.ledger,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: RegistryMsg,
        st: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::Create {
                spec,
                id,
                restore,
                adopted,
                reply,
            } => {
                let r = match restore {
                    Some(r) => st.restore(&myself, *spec, *r).await,
                    None => st.create(&myself, *spec, id, adopted).await,
                };
                let _ = reply.send(r);
            }
            RegistryMsg::Revive { id, reply } => {
                let _ = reply.send(st.revive(&myself, id).await);
            }
            RegistryMsg::Remove { id, reply } => {
                let r = st.remove(id).await;
                let _ = reply.send(r);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        st: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(id) = st.by_actor.remove(&cell.get_id()) {
                    st.after_actor_end(&myself, id, None).await;
                }
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(id) = st.by_actor.remove(&cell.get_id()) {
                    tracing::error!(session = %id, "session actor failed: {err}");
                    st.after_actor_end(&myself, id, Some(err.to_string())).await;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _st: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        myself
            .stop_children_and_wait(None, Some(Duration::from_secs(10)))
            .await;
        Ok(())
    }
}

impl RegistryState {
    fn live_count(&self) -> usize {
        live_count(&self.table)
    }

    /// Forgets a final session: from the store first, then from the table,
    /// so a removal the store cannot take changes nothing.
    async fn remove(&mut self, id: Uuid) -> Result<(), HerdError> {
        let state = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(|h| h.info().state);
        match state {
            None => return Err(HerdError::NotFound(id.to_string())),
            Some(state) if !state.is_final() => {
                return Err(HerdError::Conflict {
                    id: id.to_string(),
                    action: "remove".into(),
                    state,
                })
            }
            Some(_) => {}
        }
        self.journal
            .store(Record::Removed(id))
            .await
            .map_err(HerdError::Storage)?;
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.actor_restarts.remove(&id);
        Ok(())
    }

    /// Refuses an id already in the table (before anything is recorded).
    fn ensure_new(&self, id: Uuid) -> Result<(), HerdError> {
        if self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
        {
            return Err(HerdError::invalid(
                "id",
                format!("session {id} exists already"),
            ));
        }
        Ok(())
    }

    async fn create(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        spec: SessionSpec,
        id: Option<Uuid>,
        adopted: Vec<Message>,
    ) -> Result<Arc<SessionHandle>, HerdError> {
        let max = self.defaults.limits.max_sessions;
        if self.live_count() >= max {
            return Err(HerdError::LimitReached { max });
        }
        let id = id.unwrap_or_else(Uuid::new_v4);
        self.ensure_new(id)?;
        let now = SystemTime::now();
        let effective = spec.effective(&self.defaults);
        effective.check(&spec)?;
        let info = SessionInfo {
            id,
            name: spec.name.clone(),
            state: SessionState::Pending,
            reason: "created".into(),
            cause: None,
            pid: None,
            generation: 0,
            restarts: 0,
            exit_code: None,
            exit_signal: None,
            profile: spec.profile,
            dialog: None,
            waiting: None,
            error: None,
            usage: Default::default(),
            cost_usd: 0.0,
            task_id: spec.task_id.clone(),
            project_id: spec.project_id.clone(),
            command: spec.command.clone(),
            cwd: spec.cwd.clone(),
            worktree: spec
                .worktree
                .as_ref()
                .map(crate::worktree::WorktreeInfo::of),
            node: None,
            cols: spec.cols,
            rows: spec.rows,
            created_at: now,
            started_at: None,
            updated_at: now,
            restart: effective.restart,
            limits: effective.limits,
            metrics: Metrics::default(),
            last_line: None,
        };
        // Stored before it exists: a session the store cannot take is
        // refused and leaves nothing behind.
        self.journal
            .store(Record::Created {
                info: Box::new(info.clone()),
                spec: Box::new(spec.clone()),
            })
            .await
            .map_err(HerdError::Storage)?;
        for m in &adopted {
            let mut m = m.clone();
            m.session_id = id;
            self.journal
                .store(Record::Message(Box::new(m)))
                .await
                .map_err(HerdError::Storage)?;
        }
        let history = History {
            messages: adopted
                .into_iter()
                .map(|mut m| {
                    m.session_id = id;
                    m
                })
                .collect(),
            ..History::default()
        };
        self.admit(myself, info, spec, history, true).await
    }

    /// Builds the session's handle, starts its actor (if `live`) and puts it in the table.
    async fn admit(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        info: SessionInfo,
        spec: SessionSpec,
        history: History,
        live: bool,
    ) -> Result<Arc<SessionHandle>, HerdError> {
        let id = info.id;
        let capacity = self.defaults.limits.output_buffer.0 as usize;
        let handle = Arc::new(SessionHandle::new(
            info,
            spec,
            capacity,
            self.journal.clone(),
            self.tap.clone(),
            self.bus.clone(),
        ));
        crate::handle::lock(&handle.queue).restore(history.messages);
        // Before the actor starts: its first transitions come after these.
        handle.seed_history(history.events, &history.output);
        if live {
            self.start_actor(myself, &handle, None)
                .await
                .map_err(|e| HerdError::Internal(format!("cannot start session actor: {e}")))?;
        }
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::clone(&handle));
        Ok(handle)
    }

    /// Brings back a session read from a store: a live one starts its next
    /// generation with the same id; a final one is kept as history.
    async fn restore(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        spec: SessionSpec,
        r: Restore,
    ) -> Result<Arc<SessionHandle>, HerdError> {
        let id = r.info.id;
        self.ensure_new(id)?;
        let mut info = r.info;
        // What it spent before the daemon restarted still counts.
        self.ledger.seed(
            &crate::budget::Payer::of(&info, &spec),
            &Spend {
                tokens: crate::budget::tokens_of(&info.usage),
                cost_usd: info.cost_usd,
            },
        );
        // The defaults may have changed since the session was stored.
        let effective = spec.effective(&self.defaults);
        info.restart = effective.restart;
        info.limits = effective.limits;
        info.pid = None;
        if r.live {
            info.state = SessionState::Pending;
            info.reason = "recovered after daemon restart".into();
            info.generation += 1;
            info.restarts += 1;
            info.metrics.restarts = info.restarts;
        }
        let history = History {
            messages: r.messages,
            events: r.events,
            output: r.output,
        };
        self.admit(myself, info, spec, history, r.live).await
    }

    /// Starts a session that ended again: a new handle and actor in its
    /// place, with its history. Not a transition (the table keeps `stopped`
    /// and `failed` final): the session is admitted anew, as recovery does.
    async fn revive(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        id: Uuid,
    ) -> Result<Arc<SessionHandle>, HerdError> {
        let old = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
            .ok_or_else(|| HerdError::NotFound(id.to_string()))?;
        let mut info = old.info();
        if !info.state.is_final() {
            return Err(HerdError::Conflict {
                id: id.to_string(),
                action: "revive".into(),
                state: info.state,
            });
        }
        let max = self.defaults.limits.max_sessions;
        if self.live_count() >= max {
            return Err(HerdError::LimitReached { max });
        }
        let spec = old.spec();
        let effective = spec.effective(&self.defaults);
        info.restart = effective.restart;
        info.limits = effective.limits;
        info.state = SessionState::Pending;
        info.reason = format!("restarted by request after it was {}", old.info().state);
        info.cause = None;
        info.pid = None;
        info.generation += 1;
        info.restarts += 1;
        info.metrics.restarts = info.restarts;
        info.updated_at = SystemTime::now();
        self.journal.record(Record::Updated {
            info: Box::new(info.clone()),
            spec: Box::new(spec.clone()),
        });
        self.actor_restarts.remove(&id);
        let history = History {
            messages: old.messages(),
            events: old.events(),
            output: vec![],
        };
        self.admit(myself, info, spec, history, true).await
    }

    async fn start_actor(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        handle: &Arc<SessionHandle>,
        recovered_from: Option<String>,
    ) -> Result<(), ractor::SpawnErr> {
        let args = SessionArgs {
            handle: Arc::clone(handle),
            defaults: Arc::clone(&self.defaults),
            gate: self.gate.clone(),
            ledger: self.ledger.clone(),
            recovered_from,
        };
        let (actor, _) = Actor::spawn_linked(None, SessionActor, args, myself.get_cell()).await?;
        self.by_actor.insert(actor.get_id(), handle.id());
        Ok(())
    }

    /// A SessionActor ended. If its session is not final, it failed (or was
    /// killed): start a new actor for it from its last known config.
    async fn after_actor_end(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        id: Uuid,
        err: Option<String>,
    ) {
        let Some(handle) = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
        else {
            return;
        };
        *lock(&handle.actor) = None;
        let info = handle.info();
        if info.state.is_final() {
            return;
        }
        let why = err.unwrap_or_else(|| "session actor stopped unexpectedly".into());
        let failure = ExitStatus {
            code: None,
            signal: None,
        };
        let tracker = self.actor_restarts.entry(id).or_default();
        let decision = tracker.decide(
            &info.restart,
            &failure,
            Duration::ZERO,
            true,
            Instant::now(),
        );
        if decision != Decision::GiveUp {
            match self.start_actor(myself, &handle, Some(why.clone())).await {
                Ok(()) => return,
                Err(e) => tracing::error!(session = %id, "cannot restart session actor: {e}"),
            }
        }
        // The actor cannot be brought back: the supervisor records the end,
        // through the same transition function the actor uses.
        let cause = EndCause::ActorFailedTooOften { message: why };
        if let Err(e) =
            handle.transition(SessionState::Failed, cause.to_string(), Some(cause), None)
        {
            tracing::error!(session = %id, "{e}");
        }
    }
}
