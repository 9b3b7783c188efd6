//! When a failed attempt is tried again, and after how long.

use std::collections::BTreeSet;
use std::time::Duration;

/// Failures tried again unless `--retry-on` says otherwise: the API's
/// transient refusals (`rate_limited`, `api_error`: overloaded, server
/// errors), a conversation held elsewhere for a moment, and what the runner
/// sees when a session ends under a prompt (`interrupted`, `cancelled`,
/// `lost`) or a reply does not come (`timeout`). Never by default: `budget`
/// (spending more is the one thing it forbids), `not_logged_in`,
/// `authentication`, `context_full` (the same prompt would fail again).
pub const DEFAULT_RETRY_ON: &str =
    "rate_limited,api_error,conversation_busy,interrupted,cancelled,lost,timeout";

/// The retry policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Attempts per task, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub backoff: Duration,
    /// The longest wait between attempts.
    pub backoff_max: Duration,
    /// The failure kinds tried again.
    pub retry_on: BTreeSet<String>,
}

impl Policy {
    /// Whether a failure of this kind is tried again.
    pub fn retryable(&self, kind: &str) -> bool {
        self.retry_on.contains(kind)
    }

    /// The wait before attempt `next` (2, 3, ...).
    pub fn delay(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(30);
        self.backoff
            .saturating_mul(1 << doublings)
            .min(self.backoff_max)
    }
}
