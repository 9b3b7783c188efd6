//! `[[notify]]`: webhooks that hear about the fleet.

use herd_actors::Secret;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a webhook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A session waits for a person (a permission, a question, a login).
    WaitingInput,
    /// A session failed (spawn error, restart intensity exceeded).
    Failed,
    /// A session stopped.
    Stopped,
    /// A budget reached its warning threshold or was spent.
    Budget,
    /// A message reached a final state (done, failed, interrupted).
    MessageDone,
    /// A rate limit paused delivery fleet-wide.
    RateLimited,
    /// `herd notify test` (always sent, whatever `events` says).
    Test,
}

impl NotifyEvent {
    /// The snake_case name (the payload's `event`, the `X-Herd-Event` header).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WaitingInput => "waiting_input",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Budget => "budget",
            Self::MessageDone => "message_done",
            Self::RateLimited => "rate_limited",
            Self::Test => "test",
        }
    }
}

/// One webhook: a JSON POST per matching event, signed with HMAC-SHA256 of
/// the body under `secret` (`X-Herd-Signature: sha256=<hex>`), from a durable
/// outbox, retried with backoff until a 2xx.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    /// `http://` or `https://` URL to POST to.
    pub url: String,
    /// Which events; empty: every event but `message_done`.
    #[serde(default)]
    pub events: Vec<NotifyEvent>,
    /// The HMAC key; unsigned when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// First retry delay; doubles per failed attempt up to `retry_max`.
    #[serde(default = "retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest delay between attempts.
    #[serde(default = "retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// One attempt's timeout.
    #[serde(default = "timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn retry_initial() -> Duration {
    Duration::from_secs(1)
}
fn retry_max() -> Duration {
    Duration::from_secs(300)
}
fn timeout() -> Duration {
    Duration::from_secs(10)
}

impl NotifyTarget {
    /// True if this target wants `event`.
    pub fn wants(&self, event: NotifyEvent) -> bool {
        event == NotifyEvent::Test
            || self.events.contains(&event)
            || (self.events.is_empty() && event != NotifyEvent::MessageDone)
    }

    /// Checks the URL and the delays; the message names the key and the value.
    pub fn check(&self, i: usize) -> Result<(), String> {
        let u = reqwest::Url::parse(&self.url)
            .map_err(|e| format!("notify[{i}].url = {:?}: {e}", self.url))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!(
                "notify[{i}].url = {:?}: must be http:// or https://",
                self.url
            ));
        }
        if self.retry_initial.is_zero() || self.retry_max < self.retry_initial {
            return Err(format!(
                "notify[{i}].retry_initial = {:?}: must be positive and at most retry_max",
                humantime::format_duration(self.retry_initial).to_string()
            ));
        }
        if self.secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
            return Err(format!("notify[{i}].secret is empty"));
        }
        Ok(())
    }
}
