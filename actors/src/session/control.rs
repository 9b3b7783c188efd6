//! Commands that act on a running session: input, resize, signals,
//! suspend and resume, and changes to its settings.

use super::{SessionActorState, SessionMsg};
use crate::error::HerdError;
use crate::handle::lock;
use crate::info::SessionInfo;
use crate::profile::Interrupt;
use crate::pty::{PtyMsg, SignalTarget};
use crate::spec::{validate_size, SessionPatch};
use crate::state::SessionState::*;
use crate::tap::TapEvent;
use bytes::Bytes;
use ractor::ActorRef;
use std::time::{Duration, Instant};

impl SessionActorState {
    pub(super) async fn input(&mut self, data: Bytes) -> Result<SessionInfo, HerdError> {
        let Some(pty) = self.pty.as_ref().filter(|_| self.state.is_running()) else {
            return Err(self.conflict("send input to"));
        };
        let len = data.len() as u64;
        let recorded = data.clone();
        let written = pty
            .call(
                |reply| PtyMsg::Write(data, reply),
                Some(Duration::from_secs(5)),
            )
            .await;
        match written {
            Ok(ractor::rpc::CallResult::Success(Ok(()))) => {
                self.handle.tap(self.generation, TapEvent::Input(recorded));
                if self.handle.counters.count_input(len) {
                    self.wake_metrics();
                }
                self.last_activity = Instant::now();
                Ok(self.handle.info())
            }
            Ok(ractor::rpc::CallResult::Success(Err(()))) => {
                Err(HerdError::InputFull(self.handle.id().to_string()))
            }
            _ => Err(self.conflict("send input to")),
        }
    }

    pub(super) fn resize(&mut self, cols: u16, rows: u16) -> Result<SessionInfo, HerdError> {
        if self.state.is_final() {
            return Err(self.conflict("resize"));
        }
        validate_size(cols, rows)?;
        {
            let mut spec = lock(&self.handle.spec);
            spec.cols = cols;
            spec.rows = rows;
        }
        self.handle.screen().resize(cols, rows);
        self.handle.info.send_modify(|i| {
            i.cols = cols;
            i.rows = rows;
        });
        if let Some(pty) = &self.pty {
            let _ = pty.send_message(PtyMsg::Resize(cols, rows));
        }
        self.handle
            .tap(self.generation, TapEvent::Resize { cols, rows });
        self.handle.record_update();
        Ok(self.handle.info())
    }

    fn signal(
        &mut self,
        action: &str,
        sig: i32,
        target: SignalTarget,
    ) -> Result<SessionInfo, HerdError> {
        match &self.pty {
            Some(pty) if self.state.is_running() => {
                let _ = pty.send_message(PtyMsg::Signal(sig, target));
                Ok(self.handle.info())
            }
            _ => Err(self.conflict(action)),
        }
    }

    /// Interrupts the child the way its profile says (a signal, or keys).
    pub(super) async fn interrupt(&mut self) -> Result<SessionInfo, HerdError> {
        match self.profile.interrupt() {
            Interrupt::Signal(sig) => self.signal("interrupt", sig, SignalTarget::Foreground),
            Interrupt::Keys(keys) => self.input(Bytes::from_static(keys)).await,
        }
    }

    pub(super) fn suspend(&mut self) -> Result<SessionInfo, HerdError> {
        if !matches!(self.state, Starting | Ready | Busy | WaitingInput) {
            return Err(self.conflict("suspend"));
        }
        self.signal("suspend", libc::SIGSTOP, SignalTarget::Tree)?;
        self.suspended_from = self.state;
        self.go(Suspended, "suspend requested", None);
        Ok(self.handle.info())
    }

    pub(super) fn resume(
        &mut self,
        myself: &ActorRef<SessionMsg>,
    ) -> Result<SessionInfo, HerdError> {
        if self.state != Suspended {
            return Err(self.conflict("resume"));
        }
        self.signal("resume", libc::SIGCONT, SignalTarget::Tree)?;
        self.go(self.suspended_from, "resume requested", None);
        self.last_activity = Instant::now();
        self.schedule_tick(myself);
        if self.state == Ready {
            let _ = myself.send_message(SessionMsg::Deliver);
        }
        Ok(self.handle.info())
    }

    /// Applies a patch: the effective settings are resolved here, once, and
    /// kept in the snapshot.
    pub(super) async fn patch(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        patch: &SessionPatch,
    ) -> Result<SessionInfo, HerdError> {
        if self.state.is_final() {
            return Err(self.conflict("change"));
        }
        let mut spec = self.handle.spec();
        patch.apply(&mut spec);
        let effective = spec.effective(&self.defaults);
        effective.check(&spec)?;
        let mut info = self.handle.info();
        info.name = spec.name.clone();
        info.task_id = spec.task_id.clone();
        info.project_id = spec.project_id.clone();
        info.restart = effective.restart.clone();
        info.limits = effective.limits.clone();
        // Stored before it applies: a change the store cannot take changes nothing.
        self.handle
            .journal
            .store(crate::journal::Record::Updated {
                info: Box::new(info.clone()),
                spec: Box::new(spec.clone()),
            })
            .await
            .map_err(HerdError::Storage)?;
        *lock(&self.handle.spec) = spec;
        self.restart_cfg = effective.restart.clone();
        self.limits = effective.limits.clone();
        self.handle.info.send_modify(|i| {
            i.name = info.name;
            i.task_id = info.task_id;
            i.project_id = info.project_id;
            i.restart = effective.restart;
            i.limits = effective.limits;
        });
        // New limits may have moved a deadline closer.
        self.tick_pending = false;
        self.schedule_tick(myself);
        Ok(self.handle.info())
    }
}
