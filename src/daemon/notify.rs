//! Webhooks (`[[notify]]`) from a durable outbox.
//!
//! Transitions and notices from the event bus that a target wants become rows
//! of the store's `outbox` table first; a delivery loop then POSTs each row,
//! signed with HMAC-SHA256 of the body, and deletes it only on a 2xx. A
//! failed attempt is retried with a doubling delay. A daemon killed (even
//! with `kill -9`) finds the rows at its next start and goes on: delivery is
//! at least once, and each row's id (the payload's `id`, the
//! `X-Herd-Delivery` header) lets an endpoint drop repeats.

use crate::config::notify::{NotifyEvent, NotifyTarget};
use herd_actors::{Event, EventBus, Notice, NoticeKind, SessionState};
use hmac::{Hmac, Mac};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};
use sha2::Sha256;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// Rows delivered per pass.
const BATCH: usize = 32;
/// The loop looks at the table at least this often (rows added by another
/// process, clocks that jump).
const IDLE_POLL: Duration = Duration::from_secs(5);

/// The webhooks' outbox and its delivery loop.
#[derive(Clone)]
pub struct Notifier {
    targets: Arc<Vec<NotifyTarget>>,
    db: Arc<Mutex<Connection>>,
    wake: Arc<tokio::sync::Notify>,
}

/// One notification queued for one target.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Queued {
    /// The delivery id (the payload's `id`).
    pub id: Uuid,
    /// The target's URL.
    pub url: String,
}

impl Notifier {
    /// Opens the outbox in the (migrated) store at `db`, and starts the
    /// intake from `bus` and the delivery loop.
    pub fn start(db: &Path, targets: Vec<NotifyTarget>, bus: &EventBus) -> anyhow::Result<Self> {
        use anyhow::Context;
        let conn = Connection::open(db)
            .with_context(|| format!("opening the webhook outbox in {}", db.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let n = Self {
            targets: Arc::new(targets),
            db: Arc::new(Mutex::new(conn)),
            wake: Arc::default(),
        };
        if n.targets.is_empty() {
            return Ok(n);
        }
        let (mut events, mut notices) = (bus.sink(), bus.notice_sink());
        let intake = n.clone();
        tokio::spawn(async move {
            loop {
                let (kind, data) = tokio::select! {
                    Some(e) = events.recv() => match event_kind(&e) {
                        Some(k) => (k, Subject::Event(e)),
                        None => continue,
                    },
                    Some(n) = notices.recv() => (notice_kind(&n), Subject::Notice(n)),
                    else => break,
                };
                if let Err(e) = intake.enqueue(kind, data.payload()).await {
                    tracing::error!("cannot store a webhook notification: {e:#}");
                }
            }
        });
        tokio::spawn(n.clone().deliver_forever());
        Ok(n)
    }

    /// A notifier with no targets (for embedding the router without a store).
    #[cfg(test)]
    pub fn none() -> anyhow::Result<Self> {
        Ok(Self {
            targets: Arc::default(),
            db: Arc::new(Mutex::new(Connection::open_in_memory()?)),
            wake: Arc::default(),
        })
    }

    /// True if any webhook is configured.
    pub fn has_targets(&self) -> bool {
        !self.targets.is_empty()
    }

    /// Stores `data` as an `event` notification for every target that wants
    /// it; returns the deliveries queued.
    pub async fn enqueue(&self, event: NotifyEvent, data: Value) -> anyhow::Result<Vec<Queued>> {
        let now = unix_ms();
        let mut rows = vec![];
        for t in self.targets.iter().filter(|t| t.wants(event)) {
            let id = Uuid::new_v4();
            let mut body = json!({
                "id": id,
                "event": event.as_str(),
                "at": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            });
            if let (Some(b), Some(d)) = (body.as_object_mut(), data.as_object()) {
                b.extend(d.clone());
            }
            rows.push((id, t.url.clone(), serde_json::to_string(&body)?));
        }
        let db = Arc::clone(&self.db);
        let ev = event.as_str();
        let queued = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Queued>> {
            let mut conn = lock(&db);
            let tx = conn.transaction()?;
            for (id, url, body) in &rows {
                tx.execute(
                    "INSERT INTO outbox (id, url, event, body, next_at, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![id.to_string(), url, ev, body, now],
                )?;
            }
            tx.commit()?;
            Ok(rows
                .into_iter()
                .map(|(id, url, _)| Queued { id, url })
                .collect())
        })
        .await??;
        self.wake.notify_one();
        Ok(queued)
    }

    async fn deliver_forever(self) {
        let http = match reqwest::Client::builder().build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("webhooks disabled: cannot build an HTTP client: {e}");
                return;
            }
        };
        loop {
            let due = self.due().await.unwrap_or_else(|e| {
                tracing::error!("cannot read the webhook outbox: {e:#}");
                vec![]
            });
            for row in due {
                self.attempt(&http, row).await;
            }
            let wait = self.next_due_in().await.unwrap_or(IDLE_POLL).min(IDLE_POLL);
            if !wait.is_zero() {
                let _ = tokio::time::timeout(wait, self.wake.notified()).await;
            }
        }
    }

    async fn due(&self) -> anyhow::Result<Vec<Row>> {
        let db = Arc::clone(&self.db);
        Ok(
            tokio::task::spawn_blocking(move || -> rusqlite::Result<Vec<Row>> {
                let conn = lock(&db);
                let mut st = conn.prepare(
                    "SELECT id, url, event, body, attempts FROM outbox
                 WHERE next_at <= ?1 ORDER BY next_at, created_at LIMIT ?2",
                )?;
                let rows = st.query_map(params![unix_ms(), BATCH as i64], |r| {
                    Ok(Row {
                        id: r.get(0)?,
                        url: r.get(1)?,
                        event: r.get(2)?,
                        body: r.get(3)?,
                        attempts: r.get(4)?,
                    })
                })?;
                rows.collect()
            })
            .await??,
        )
    }

    async fn next_due_in(&self) -> Option<Duration> {
        let db = Arc::clone(&self.db);
        let next: Option<i64> = tokio::task::spawn_blocking(move || {
            lock(&db)
                .query_row("SELECT min(next_at) FROM outbox", [], |r| r.get(0))
                .optional()
                .ok()
                .flatten()
                .flatten()
        })
        .await
        .ok()
        .flatten();
        next.map(|at| Duration::from_millis(at.saturating_sub(unix_ms()).max(0) as u64))
    }

    /// One POST of one row; the row is deleted on a 2xx, else rescheduled.
    async fn attempt(&self, http: &reqwest::Client, row: Row) {
        let Some(target) = self.targets.iter().find(|t| t.url == row.url) else {
            tracing::warn!(url = %row.url, "dropping a webhook notification: its target is no longer configured");
            self.finish(row.id, None).await;
            return;
        };
        let mut req = http
            .post(&row.url)
            .timeout(target.timeout)
            .header("content-type", "application/json")
            .header("x-herd-delivery", &row.id)
            .header("x-herd-event", &row.event)
            .header("x-herd-attempt", (row.attempts + 1).to_string());
        if let Some(secret) = &target.secret {
            req = req.header("x-herd-signature", sign(secret.expose(), &row.body));
        }
        let result = req.body(row.body.clone()).send().await;
        let error = match result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("HTTP {}", r.status())),
            Err(e) => Some(without_url(&e)),
        };
        match error {
            None => self.finish(row.id, None).await,
            Some(why) => {
                let exp = row.attempts.clamp(0, 20) as u32;
                let delay = target
                    .retry_initial
                    .saturating_mul(2u32.saturating_pow(exp))
                    .min(target.retry_max);
                tracing::warn!(url = %row.url, delivery = %row.id, attempt = row.attempts + 1,
                    retry_in = %humantime::format_duration(delay), "webhook failed: {why}");
                self.finish(row.id, Some((why, delay))).await;
            }
        }
    }

    /// Deletes a row (delivered or dropped), or reschedules it after `retry`.
    async fn finish(&self, id: String, retry: Option<(String, Duration)>) {
        let db = Arc::clone(&self.db);
        let r = tokio::task::spawn_blocking(move || {
            let conn = lock(&db);
            match retry {
                None => conn.execute("DELETE FROM outbox WHERE id = ?1", params![id]),
                Some((why, delay)) => conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3
                     WHERE id = ?1",
                    params![id, unix_ms() + delay.as_millis() as i64, why],
                ),
            }
        })
        .await;
        if !matches!(r, Ok(Ok(_))) {
            tracing::error!("cannot update the webhook outbox: {r:?}");
        }
    }
}

struct Row {
    id: String,
    url: String,
    event: String,
    body: String,
    attempts: i64,
}

enum Subject {
    Event(Event),
    Notice(Notice),
}

impl Subject {
    fn payload(&self) -> Value {
        let (session, task, project, data) = match self {
            Self::Event(e) => (
                e.session_id,
                &e.task_id,
                &e.project_id,
                serde_json::to_value(e),
            ),
            Self::Notice(n) => (
                n.session_id,
                &n.task_id,
                &n.project_id,
                serde_json::to_value(n),
            ),
        };
        json!({
            "session_id": session,
            "task_id": task,
            "project_id": project,
            "data": data.unwrap_or(Value::Null),
        })
    }
}

fn event_kind(e: &Event) -> Option<NotifyEvent> {
    match e.to {
        SessionState::WaitingInput => Some(NotifyEvent::WaitingInput),
        SessionState::Failed => Some(NotifyEvent::Failed),
        SessionState::Stopped => Some(NotifyEvent::Stopped),
        _ => None,
    }
}

fn notice_kind(n: &Notice) -> NotifyEvent {
    match n.kind {
        NoticeKind::Budget(_) => NotifyEvent::Budget,
        NoticeKind::MessageDone { .. } => NotifyEvent::MessageDone,
        NoticeKind::RateLimited { .. } => NotifyEvent::RateLimited,
    }
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn sign(secret: &str, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this branch is never taken.
        Err(_) => return String::new(),
    };
    mac.update(body.as_bytes());
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A reqwest error without its URL (a URL may carry a token).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    kind.to_string()
}

fn lock(db: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    db.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
