//! Restart decisions: which exits restart, how often, and after what delay.

use crate::config::{RestartConfig, RestartPolicy};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, when the child exited by itself.
    pub code: Option<i32>,
    /// The signal number, when a signal ended it.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0) && self.signal.is_none()
    }

    /// Decodes a raw `waitpid` status.
    pub fn from_wait_status(status: i32) -> Self {
        if libc::WIFSIGNALED(status) {
            Self {
                code: None,
                signal: Some(libc::WTERMSIG(status)),
            }
        } else {
            Self {
                code: Some(libc::WEXITSTATUS(status)),
                signal: None,
            }
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (_, Some(sig)) => write!(f, "killed by signal {sig}"),
            (Some(code), None) => write!(f, "exited with code {code}"),
            (None, None) => f.write_str("exited"),
        }
    }
}

/// What to do after a child exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Start a new child after this delay.
    Restart(Duration),
    /// The policy does not restart this exit: the session stops.
    Stop,
    /// Too many restarts within the window: the session fails.
    GiveUp,
}

/// Per-session restart bookkeeping: the intensity window and the backoff step.
#[derive(Debug, Clone, Default)]
pub(crate) struct RestartTracker {
    recent: VecDeque<Instant>,
    /// Consecutive quick restarts: the backoff exponent.
    step: u32,
}

impl RestartTracker {
    /// Decides what follows an exit of a child that ran for `ran_for`.
    /// `forced_failure` marks exits herd caused as failures (e.g. max_memory).
    pub(crate) fn decide(
        &mut self,
        cfg: &RestartConfig,
        exit: &ExitStatus,
        ran_for: Duration,
        forced_failure: bool,
        now: Instant,
    ) -> Decision {
        let failed = forced_failure || !exit.success();
        let wants = match cfg.policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Never => false,
        };
        if !wants {
            return Decision::Stop;
        }
        while let Some(&t) = self.recent.front() {
            if now.duration_since(t) > cfg.restart_window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= cfg.max_restarts as usize {
            return Decision::GiveUp;
        }
        self.recent.push_back(now);
        if ran_for >= cfg.backoff_reset_after {
            self.step = 0;
        }
        let delay = backoff(cfg, self.step);
        self.step = self.step.saturating_add(1);
        Decision::Restart(delay)
    }
}

/// `backoff_initial * 2^step`, capped at `backoff_max`.
pub(crate) fn backoff(cfg: &RestartConfig, step: u32) -> Duration {
    let factor = 2u32.checked_pow(step.min(31)).unwrap_or(u32::MAX);
    cfg.backoff_initial
        .checked_mul(factor)
        .unwrap_or(cfg.backoff_max)
        .min(cfg.backoff_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(policy: RestartPolicy) -> RestartConfig {
        RestartConfig {
            policy,
            max_restarts: 3,
            restart_window: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
            backoff_reset_after: Duration::from_secs(5),
        }
    }
    const OK: ExitStatus = ExitStatus {
        code: Some(0),
        signal: None,
    };
    const BAD: ExitStatus = ExitStatus {
        code: Some(3),
        signal: None,
    };

    #[test]
    fn policies_decide_by_exit() {
        let now = Instant::now();
        let short = Duration::from_millis(1);
        let mut t = RestartTracker::default();
        assert_eq!(
            t.decide(&cfg(RestartPolicy::Never), &BAD, short, false, now),
            Decision::Stop
        );
        assert_eq!(
            t.decide(&cfg(RestartPolicy::OnFailure), &OK, short, false, now),
            Decision::Stop
        );
        assert!(matches!(
            t.decide(&cfg(RestartPolicy::OnFailure), &OK, short, true, now),
            Decision::Restart(_)
        ));
        let mut t = RestartTracker::default();
        assert!(matches!(
            t.decide(&cfg(RestartPolicy::Always), &OK, short, false, now),
            Decision::Restart(_)
        ));
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let c = cfg(RestartPolicy::Always);
        let mut t = RestartTracker::default();
        let mut now = Instant::now();
        let mut delays = vec![];
        for _ in 0..3 {
            now += Duration::from_secs(4);
            match t.decide(&c, &BAD, Duration::from_millis(10), false, now) {
                Decision::Restart(d) => delays.push(d.as_millis()),
                d => panic!("{d:?}"),
            }
        }
        assert_eq!(delays, [100, 200, 350]);
        now += Duration::from_secs(4);
        // A long stable run resets the backoff.
        assert_eq!(
            t.decide(&c, &BAD, Duration::from_secs(6), false, now),
            Decision::Restart(Duration::from_millis(100))
        );
    }

    #[test]
    fn intensity_exceeded_gives_up_and_window_slides() {
        let c = cfg(RestartPolicy::Always);
        let mut t = RestartTracker::default();
        let now = Instant::now();
        for _ in 0..3 {
            assert!(matches!(
                t.decide(&c, &BAD, Duration::ZERO, false, now),
                Decision::Restart(_)
            ));
        }
        assert_eq!(
            t.decide(&c, &BAD, Duration::ZERO, false, now),
            Decision::GiveUp
        );
        let later = now + Duration::from_secs(11);
        assert!(matches!(
            t.decide(&c, &BAD, Duration::ZERO, false, later),
            Decision::Restart(_)
        ));
    }
}
