//! The fleet's delivery gate: at most `max_busy` sessions (of the profiles
//! that ask for it: Claude) answer a prompt at once, across the registry,
//! and a rate limit pauses every delivery until it lifts.
//!
//! A session asks for a slot when it is about to deliver its next prompt,
//! keyed by that prompt's enqueue time; the gate grants slots strictly in
//! that order, so the fleet is fair by enqueue time. A session that must wait
//! is woken (with a `Deliver`) when its turn comes. A slot is held by a
//! [`Slot`] guard and freed when the guard drops — when the message ends, or
//! when the session's actor dies — so a crash never leaks a slot.

use ractor::DerivedActorRef;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use uuid::Uuid;

/// What the gate sends a waiting session when its turn comes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wake;

/// The settings of the fleet's gate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FleetConfig {
    /// Sessions answering at once (Claude profile); 0: no cap.
    pub max_busy: usize,
    /// The first pause after a rate limit with no reset time; it doubles at
    /// each rate limit in a row, up to 32 times this.
    #[serde(with = "humantime_serde")]
    pub rate_limit_backoff: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            max_busy: 0,
            rate_limit_backoff: Duration::from_secs(30),
        }
    }
}

/// The gate now, as `GET /v1/stats` shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FleetStatus {
    /// Sessions answering at once at most (Claude profile); 0: no cap.
    pub max_busy: usize,
    /// Sessions holding a slot now.
    pub busy: usize,
    /// Sessions whose next prompt waits for a slot or for a pause to end.
    pub waiting: usize,
    /// Deliveries are paused fleet-wide by a rate limit until then.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[serde(default, with = "humantime_serde::option")]
    pub paused_until: Option<SystemTime>,
}

#[derive(Default)]
struct State {
    busy: HashSet<Uuid>,
    /// Sessions waiting for a slot, by the enqueue time of their next prompt.
    waiting: BTreeMap<(SystemTime, Uuid), DerivedActorRef<Wake>>,
    paused_until: Option<Instant>,
    /// Rate limits in a row (the backoff's exponent).
    limits_in_a_row: u32,
    /// A wake-up is scheduled for the end of the pause.
    timer: bool,
}

/// The gate, shared by every session of a registry.
#[derive(Clone)]
pub(crate) struct Gate {
    cfg: FleetConfig,
    state: Arc<Mutex<State>>,
}

/// A held slot; dropping it frees the slot and wakes the next waiter.
pub(crate) struct Slot {
    gate: Gate,
    session: Uuid,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.gate.lock();
        st.busy.remove(&self.session);
        self.gate.wake_next(&mut st);
    }
}

impl Gate {
    pub(crate) fn new(cfg: FleetConfig) -> Self {
        Self {
            cfg,
            state: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for `session`, whose next prompt was queued at `queued_at`; or
    /// `None`, and `wake` is told when to ask again.
    pub(crate) fn enter(
        &self,
        session: Uuid,
        queued_at: SystemTime,
        wake: DerivedActorRef<Wake>,
    ) -> Option<Slot> {
        let mut st = self.lock();
        let key = (queued_at, session);
        // A session waits under one key only: its next prompt's.
        st.waiting.retain(|(_, s), _| *s != session);
        let paused = st.paused_until.is_some_and(|t| Instant::now() < t);
        let full = self.cfg.max_busy > 0 && st.busy.len() >= self.cfg.max_busy;
        let earlier_waiter = st.waiting.keys().next().is_some_and(|k| *k < key);
        if paused || full || earlier_waiter {
            st.waiting.insert(key, wake);
            if paused {
                self.schedule_end_of_pause(&mut st);
            }
            return None;
        }
        st.busy.insert(session);
        Some(Slot {
            gate: self.clone(),
            session,
        })
    }

    /// Forgets a session that no longer waits (it stopped, or its queue emptied).
    pub(crate) fn leave(&self, session: Uuid) {
        let mut st = self.lock();
        st.waiting.retain(|(_, s), _| *s != session);
        self.wake_next(&mut st);
    }

    /// A rate limit: nothing is delivered until `for_at_least` passes (or
    /// the growing backoff, when the limit gave no reset time).
    pub(crate) fn rate_limited(&self, for_at_least: Option<Duration>) {
        let mut st = self.lock();
        let exp = st.limits_in_a_row.min(5);
        st.limits_in_a_row += 1;
        let backoff = self.cfg.rate_limit_backoff * 2u32.pow(exp);
        let pause = for_at_least
            .unwrap_or(backoff)
            .max(Duration::from_millis(10));
        let until = Instant::now() + pause;
        st.paused_until = Some(st.paused_until.map_or(until, |t| t.max(until)));
        tracing::warn!(pause = %humantime::format_duration(pause), "rate limited: delivery paused fleet-wide");
        self.schedule_end_of_pause(&mut st);
    }

    /// A turn succeeded: the next rate limit starts the backoff afresh.
    pub(crate) fn succeeded(&self) {
        self.lock().limits_in_a_row = 0;
    }

    /// Slots held, waiters and the pause now.
    pub(crate) fn status(&self) -> FleetStatus {
        let st = self.lock();
        let now = Instant::now();
        FleetStatus {
            max_busy: self.cfg.max_busy,
            busy: st.busy.len(),
            waiting: st.waiting.len(),
            paused_until: st
                .paused_until
                .filter(|t| now < *t)
                .map(|t| SystemTime::now() + (t - now)),
        }
    }

    /// True while deliveries are paused.
    #[cfg(test)]
    fn paused(&self) -> bool {
        self.lock().paused_until.is_some_and(|t| Instant::now() < t)
    }

    fn schedule_end_of_pause(&self, st: &mut State) {
        let Some(until) = st.paused_until else { return };
        if std::mem::replace(&mut st.timer, true) {
            return;
        }
        let gate = self.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            st.timer = false;
            return;
        };
        rt.spawn(async move {
            tokio::time::sleep_until(until.into()).await;
            let mut st = gate.lock();
            st.timer = false;
            match st.paused_until {
                Some(t) if Instant::now() < t => gate.schedule_end_of_pause(&mut st),
                _ => {
                    st.paused_until = None;
                    gate.wake_next(&mut st);
                }
            }
        });
    }

    /// Wakes the earliest waiters, as many as there are free slots.
    fn wake_next(&self, st: &mut State) {
        if st.paused_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let free = if self.cfg.max_busy == 0 {
            usize::MAX
        } else {
            self.cfg.max_busy.saturating_sub(st.busy.len())
        };
        let keys: Vec<_> = st.waiting.keys().take(free).copied().collect();
        for k in keys {
            // The woken session asks again under its key: it is the earliest,
            // so it gets the slot. A dead one is forgotten.
            let alive = st
                .waiting
                .get(&k)
                .is_some_and(|w| w.send_message(Wake).is_ok());
            if !alive {
                st.waiting.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_resets() {
        let g = Gate::new(FleetConfig {
            max_busy: 1,
            rate_limit_backoff: Duration::from_millis(100),
        });
        let at = |g: &Gate| {
            g.lock()
                .paused_until
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or_default()
        };
        g.rate_limited(None);
        assert!(at(&g) <= Duration::from_millis(100) && g.paused());
        g.lock().paused_until = None;
        g.rate_limited(None);
        assert!(at(&g) > Duration::from_millis(150), "{:?}", at(&g));
        g.succeeded();
        g.lock().paused_until = None;
        g.rate_limited(Some(Duration::from_millis(50)));
        assert!(at(&g) <= Duration::from_millis(50));
    }

    #[test]
    fn status_shows_the_cap_and_a_pause_only_while_it_lasts() {
        let g = Gate::new(FleetConfig {
            max_busy: 2,
            rate_limit_backoff: Duration::from_secs(60),
        });
        assert_eq!(
            g.status(),
            FleetStatus {
                max_busy: 2,
                ..Default::default()
            }
        );
        g.rate_limited(Some(Duration::from_secs(60)));
        let until = g.status().paused_until.expect("paused");
        let left = until.duration_since(SystemTime::now()).unwrap_or_default();
        assert!(left > Duration::from_secs(50), "{left:?}");
        g.lock().paused_until = Some(Instant::now() - Duration::from_millis(1));
        assert_eq!(g.status().paused_until, None);
    }
}
