//! A session's life: spawning each child, what follows its exit (the restart
//! policy), the limits that end it, and stop and restart on request.

use super::{SessionActorState, SessionMsg};
use crate::cause::{EndCause, Request};
use crate::error::HerdError;
use crate::handle::lock;
use crate::info::SessionInfo;
use crate::metrics::Sample;
use crate::policy::{Decision, ExitStatus};
use crate::process::Pid;
use crate::profile::Launch;
use crate::pty::{PtyActor, PtyArgs, PtyMsg};
use crate::queue::Outcome;
use crate::state::SessionState::*;
use crate::tap::{Marker, TapEvent};
use ractor::{Actor, ActorRef};
use std::time::{Duration, Instant, SystemTime};

impl SessionActorState {
    pub(super) async fn spawn(&mut self, myself: &ActorRef<SessionMsg>) {
        self.spawn_timer = None;
        let reason = match self.state {
            Pending if self.generation > 0 => "recovered after daemon restart",
            Pending => "spawn",
            Restarting => {
                self.generation += 1;
                self.restarts += 1;
                "restart"
            }
            // Stopped meanwhile, or a stale timer.
            _ => return,
        };
        self.go(Starting, reason, None);
        let spec = self.handle.spec();
        let argv = match (&spec.resume_command, self.generation) {
            (Some(resume), g) if g > 0 => resume.clone(),
            _ => spec.command.clone(),
        };
        let mut launch = Launch {
            argv,
            env: spec.env.clone().into_iter().collect(),
            runtime_dir: crate::profile::runtime_dir(),
        };
        let marks = vec![
            ("HERD_SESSION_ID".to_string(), self.handle.id().to_string()),
            ("HERD_GENERATION".to_string(), self.generation.to_string()),
        ];
        launch.env.extend(marks.iter().cloned());
        self.profile.prepare(&mut launch);
        self.argv = launch.argv.clone();
        let args = PtyArgs {
            argv: launch.argv,
            cwd: spec.cwd.clone(),
            env: launch.env,
            inherit: self.inherit_env(&spec),
            secret_env: spec.secret_env.clone().into_iter().collect(),
            cols: spec.cols,
            rows: spec.rows,
            generation: self.generation,
            marks,
            session: myself.get_derived(),
        };
        self.child_started = Instant::now();
        match Actor::spawn_linked(None, PtyActor, args, myself.get_cell()).await {
            Ok((pty, _)) => self.pty = Some(pty),
            Err(e) => {
                self.errors += 1;
                let message = match e {
                    ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
                    other => other.to_string(),
                };
                tracing::warn!(session = %self.handle.id(), "spawn failed: {message}");
                self.exit_cause = Some(EndCause::SpawnError { message });
                let status = ExitStatus {
                    code: None,
                    signal: None,
                };
                self.after_exit(myself, status, false);
            }
        }
    }

    /// What the child inherits of the daemon's environment: the base
    /// allowlist, the config's `inherit_env`, the profile's needs and the
    /// session's own `inherit_env`.
    fn inherit_env(&self, spec: &crate::spec::SessionSpec) -> Vec<String> {
        crate::config::BASE_ENV
            .iter()
            .chain(spec.profile.inherited_env())
            .map(|s| s.to_string())
            .chain(self.defaults.inherit_env.iter().cloned())
            .chain(spec.inherit_env.iter().cloned())
            .collect()
    }

    pub(super) fn on_spawned(&mut self, myself: &ActorRef<SessionMsg>, pid: Pid) {
        let now = Instant::now();
        self.last_output = now;
        self.last_activity = now;
        let started = SystemTime::now();
        self.handle.info.send_modify(|i| {
            i.pid = Some(pid);
            i.started_at = Some(started);
        });
        self.handle.journal.record(crate::journal::Record::Spawned {
            session_id: self.handle.id(),
            generation: self.generation,
            pid,
            start_time: crate::process::start_time(pid),
        });
        let spec = self.handle.spec();
        self.handle.tap(
            self.generation,
            TapEvent::Start {
                cols: spec.cols,
                rows: spec.rows,
                command: self.argv.clone(),
                title: spec.name.unwrap_or_else(|| self.handle.id().to_string()),
                started,
            },
        );
        if let Some(why) = self.last_exit.take() {
            self.handle.tap(
                self.generation,
                TapEvent::Marker(Marker::Restart {
                    reason: why.to_string(),
                }),
            );
        }
        self.watch_metrics(Some(pid));
        let mut out = vec![];
        let (profile, cx) = self.profile();
        profile.started(&cx, &mut out);
        self.apply(myself, out);
        self.schedule_quiet(myself, self.limits.quiet_after);
        self.schedule_tick(myself);
    }

    /// Time left before the idle timeout and the max duration, if enabled.
    fn deadlines(&self) -> (Option<Duration>, Option<Duration>) {
        let l = &self.limits;
        let idle = (!l.idle_timeout.is_zero() && self.state != Suspended)
            .then(|| l.idle_timeout.saturating_sub(self.last_activity.elapsed()));
        let created = self.handle.info.borrow().created_at;
        let age = SystemTime::now()
            .duration_since(created)
            .unwrap_or_default();
        let max = (!l.max_duration.is_zero()).then(|| l.max_duration.saturating_sub(age));
        (idle, max)
    }

    pub(super) fn schedule_tick(&mut self, myself: &ActorRef<SessionMsg>) {
        if self.tick_pending {
            return;
        }
        let (idle, max) = self.deadlines();
        if let Some(next) = [idle, max].into_iter().flatten().min() {
            self.tick_pending = true;
            self.tick_seq += 1;
            let seq = self.tick_seq;
            // A little slack so the check lands after the deadline, not before.
            myself.send_after(next + Duration::from_millis(5), move || {
                SessionMsg::Tick(seq)
            });
        }
    }

    pub(super) fn on_tick(&mut self, myself: &ActorRef<SessionMsg>) {
        self.tick_pending = false;
        if !self.state.is_running() {
            return;
        }
        match self.deadlines() {
            (_, Some(max)) if max.is_zero() => {
                let _ = self.stop(myself, false, EndCause::MaxDuration);
            }
            (Some(idle), _) if idle.is_zero() => {
                let _ = self.stop(myself, false, EndCause::IdleTimeout);
            }
            _ => self.schedule_tick(myself),
        }
    }

    pub(super) fn on_sample(&mut self, s: Sample) {
        let same = {
            let m = &self.handle.info.borrow().metrics;
            (m.cpu_percent, m.rss_bytes, m.processes) == (s.cpu_percent, s.rss_bytes, s.processes)
        };
        // An idle session's samples repeat: writing them anyway would throw
        // away its kept JSON every sample.
        if !same {
            self.handle.info.send_if_modified(|i| {
                i.metrics.cpu_percent = s.cpu_percent;
                i.metrics.rss_bytes = s.rss_bytes;
                i.metrics.processes = s.processes;
                false
            });
        }
        let limit = self.limits.max_memory.map(|m| m.0).filter(|m| *m > 0);
        if let (Some(limit), Some(pty)) = (limit, &self.pty) {
            if s.rss_bytes > limit && self.exit_cause.is_none() && self.state.is_running() {
                tracing::warn!(session = %self.handle.id(), rss = s.rss_bytes, limit, "max_memory exceeded");
                self.exit_cause = Some(EndCause::MemoryLimit);
                let _ = pty.send_message(PtyMsg::Kill);
            }
        }
    }

    pub(super) fn on_exit(&mut self, myself: &ActorRef<SessionMsg>, status: ExitStatus) {
        if let Some(pty) = self.pty.take() {
            pty.stop(None);
        }
        if !status.success() && self.state != Stopping && !self.restart_requested {
            self.errors += 1;
        }
        self.after_exit(myself, status, true);
    }

    /// The current child is gone (exited, or never started: `spawned` false):
    /// decide what follows.
    fn after_exit(&mut self, myself: &ActorRef<SessionMsg>, status: ExitStatus, spawned: bool) {
        self.watch_metrics(None);
        // Herd's own reason (a limit, a spawn error) outranks the raw status.
        let herd_caused = self.exit_cause.is_some();
        let cause = self
            .exit_cause
            .take()
            .unwrap_or_else(|| EndCause::from_status(&status));
        self.handle
            .tap(self.generation, TapEvent::End(cause.clone()));
        self.last_exit = Some(cause.clone());
        let why = format!("the child ended while the message was being answered ({status})");
        self.end_in_flight(Outcome::interrupted(why));
        self.handle.info.send_modify(|i| {
            i.pid = None;
            i.exit_code = status.code;
            i.exit_signal = status.signal;
        });
        if self.state == Stopping {
            let cause = self.stop_cause.take().unwrap_or(cause);
            self.go(Stopped, cause.to_string(), Some(cause));
            self.finish(myself);
            return;
        }
        if std::mem::take(&mut self.restart_requested) {
            let cause = EndCause::Requested {
                request: Request::Restart,
            };
            self.go(Restarting, cause.to_string(), Some(cause));
            let _ = myself.send_message(SessionMsg::Spawn);
            return;
        }
        let ran = self.child_started.elapsed();
        let decision =
            self.tracker
                .decide(&self.restart_cfg, &status, ran, herd_caused, Instant::now());
        let reason = cause.to_string();
        match decision {
            Decision::Restart(delay) => {
                self.go(Restarting, reason, Some(cause));
                if delay.is_zero() {
                    let _ = myself.send_message(SessionMsg::Spawn);
                } else {
                    self.spawn_timer = Some(myself.send_after(delay, || SessionMsg::Spawn));
                }
            }
            // A spawn error is a failure; a child herd killed (e.g. max_memory)
            // is handled by the policy like any other exit.
            Decision::Stop if !spawned => {
                self.go(Failed, reason, Some(cause));
                self.finish(myself);
            }
            Decision::Stop => {
                self.go(Stopping, reason.clone(), Some(cause.clone()));
                self.go(Stopped, reason, Some(cause));
                self.finish(myself);
            }
            Decision::GiveUp => {
                if self.state != Starting {
                    self.go(Restarting, reason, Some(cause.clone()));
                }
                let c = &self.restart_cfg;
                let gave_up = EndCause::RestartIntensity {
                    max_restarts: c.max_restarts,
                    window: c.restart_window,
                    last: Box::new(cause),
                };
                self.go(Failed, gave_up.to_string(), Some(gave_up));
                self.finish(myself);
            }
        }
    }

    /// Final state reached: release the children and end the actor. The
    /// handle keeps the output, screen and info for history.
    fn finish(&mut self, myself: &ActorRef<SessionMsg>) {
        let end = lock(&self.handle.output).end();
        let why = format!("the session is {}", self.state);
        self.handle.update_queue(|q| q.cancel_all(&why, end));
        self.slot = None;
        self.gate.leave(self.handle.id());
        if let Some(t) = self.spawn_timer.take() {
            t.abort();
        }
        if let Some(m) = self.metrics.take() {
            m.stop(None);
        }
        if let Some(p) = self.pty.take() {
            p.stop(None);
        }
        myself.stop(Some(self.state.to_string()));
    }

    pub(super) fn stop(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        force: bool,
        cause: EndCause,
    ) -> Result<SessionInfo, HerdError> {
        match self.state {
            s if s.is_final() => return Err(self.conflict("stop")),
            Stopping => {
                if force {
                    if let Some(p) = &self.pty {
                        let _ = p.send_message(PtyMsg::Terminate(Duration::ZERO));
                    }
                }
            }
            Pending | Restarting => {
                if let Some(t) = self.spawn_timer.take() {
                    t.abort();
                }
                self.go(Stopping, cause.to_string(), Some(cause.clone()));
                self.go(Stopped, cause.to_string(), Some(cause));
                self.finish(myself);
            }
            _ => {
                self.go(Stopping, cause.to_string(), Some(cause.clone()));
                let grace = if force {
                    Duration::ZERO
                } else {
                    self.limits.stop_grace
                };
                match &self.pty {
                    Some(p) => {
                        self.stop_cause = Some(cause);
                        let _ = p.send_message(PtyMsg::Terminate(grace));
                    }
                    None => {
                        self.go(Stopped, cause.to_string(), Some(cause));
                        self.finish(myself);
                    }
                }
            }
        }
        Ok(self.handle.info())
    }

    pub(super) fn restart(
        &mut self,
        myself: &ActorRef<SessionMsg>,
    ) -> Result<SessionInfo, HerdError> {
        match self.state {
            Restarting => {
                if let Some(t) = self.spawn_timer.take() {
                    t.abort();
                }
                let _ = myself.send_message(SessionMsg::Spawn);
            }
            s if s.is_running() => {
                let Some(p) = &self.pty else {
                    return Err(self.conflict("restart"));
                };
                self.restart_requested = true;
                let _ = p.send_message(PtyMsg::Terminate(self.limits.stop_grace));
            }
            _ => return Err(self.conflict("restart")),
        }
        Ok(self.handle.info())
    }
}
