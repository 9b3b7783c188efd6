//! One task from start to result: its session, its attempts, its file.
//!
//! Every step first looks for what an earlier run of the runner may have
//! done already, and writes what it did to the state file before the next
//! step relies on it:
//! - the session: the one in the state file, else the daemon's session of
//!   the task (`GET /v1/tasks/{task}`), else a new one, created with an
//!   `Idempotency-Key` derived from the task id;
//! - the prompt: the message id in the state file, else a message of the
//!   session's queue with the prompt's text that no earlier attempt claimed
//!   (it was acknowledged, but the runner died before writing it down),
//!   else a `POST` with the attempt's `Idempotency-Key` (which the daemon
//!   answers with the first message if the first `POST` is still running).
//!
//! The daemon keeps idempotency keys in memory only; the queue and the task
//! map are stored, so this holds across a restart of the daemon too.

use crate::client::{Api, Message, Refused};
use crate::policy::Policy;
use crate::state::{self, Attempt, Outcome, StateFile, Status, TaskRecord};
use crate::tasks::Task;
use anyhow::{Context, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Sessions made for one task before it is given up (each new one only
/// after the previous ended).
const MAX_SESSIONS: u32 = 5;

/// What every task shares.
pub struct Runner {
    /// The daemon.
    pub api: Api,
    /// The runner's memory.
    pub state: StateFile,
    /// Retries.
    pub policy: Policy,
    /// Where results go, one `<task>.json` each.
    pub out: PathBuf,
    /// How long one attempt may wait for its reply.
    pub timeout: Duration,
    /// How often a pending message is looked at.
    pub poll: Duration,
    /// Leave sessions running after their task ended.
    pub keep_sessions: bool,
    /// Tasks in all, for the progress lines.
    pub total: usize,
    /// Tasks done, for the progress lines.
    pub done: AtomicUsize,
    /// Tasks failed, for the progress lines.
    pub failed: AtomicUsize,
}

/// What became of an attempt's prompt.
enum Sent {
    /// The daemon holds it under this id.
    Id(String),
    /// It never got there, or cannot be followed.
    Lost(Outcome),
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn outcome_of(m: &Message) -> Outcome {
    Outcome {
        state: m.state.clone(),
        failure: m
            .failure
            .as_ref()
            .and_then(|f| f["kind"].as_str())
            .map(str::to_string),
        error: m.error.clone().or_else(|| {
            m.failure
                .as_ref()
                .and_then(|f| f["message"].as_str())
                .map(str::to_string)
        }),
    }
}

fn lost(state: &str, error: String) -> Outcome {
    Outcome {
        state: state.to_string(),
        failure: None,
        error: Some(error),
    }
}

impl Outcome {
    /// The word the retry policy is asked about.
    fn kind(&self) -> &str {
        self.failure.as_deref().unwrap_or(&self.state)
    }
}

impl Runner {
    fn say(&self, task: &str, what: impl std::fmt::Display) {
        println!(
            "[{}/{} done, {} failed] {task}: {what}",
            self.done.load(Ordering::Relaxed),
            self.total,
            self.failed.load(Ordering::Relaxed)
        );
    }

    fn count(&self, status: Status) {
        let counter = if status == Status::Done {
            &self.done
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs a task to its end (done or failed). An error leaves it pending
    /// in the state file, for the next run to continue.
    pub async fn run(&self, task: &Task) -> Result<Status> {
        let max = task.max_attempts.unwrap_or(self.policy.max_attempts);
        let rec = self.state.get(&task.id);
        if rec.status != Status::Pending {
            self.count(rec.status);
            self.say(&task.id, format_args!("{:?} in an earlier run", rec.status));
        }
        loop {
            let rec = self.state.get(&task.id);
            if rec.status != Status::Pending {
                self.release(task, &rec).await?;
                return Ok(rec.status);
            }
            let attempt = match rec.attempts.last() {
                Some(a) if a.outcome.is_none() => a.clone(),
                last => {
                    // The last attempt failed (now, or before a run died
                    // without deciding): try again, or end the task.
                    if let Some(Some(o)) = last.map(|a| a.outcome.as_ref()) {
                        let n = last.map_or(0, |a| a.n);
                        if !self.again(task, n, o, max).await? {
                            continue;
                        }
                    }
                    match self.next_attempt(task, &rec).await? {
                        Ok(a) => a,
                        Err(reason) => {
                            self.finish(task, Status::Failed, None, Some(reason))
                                .await?;
                            continue;
                        }
                    }
                }
            };
            let sent = match &attempt.message_id {
                Some(id) => Sent::Id(id.clone()),
                None => self.deliver(task, &attempt, &rec).await?,
            };
            let outcome = match sent {
                Sent::Id(mid) => match self.wait(&attempt.session_id, &mid).await? {
                    Ok(m) if m.state == "done" => {
                        self.finish(task, Status::Done, Some(&m), None).await?;
                        continue;
                    }
                    Ok(m) => outcome_of(&m),
                    Err(o) => o,
                },
                Sent::Lost(o) => o,
            };
            self.record(task, attempt.n, outcome).await?;
        }
    }

    /// After attempt `n` failed with `outcome`: true after the backoff if
    /// the policy tries again; else the task is ended as failed.
    async fn again(&self, task: &Task, n: u32, outcome: &Outcome, max: u32) -> Result<bool> {
        let why = format!(
            "attempt {n} {}: {}",
            describe(outcome),
            outcome.error.as_deref().unwrap_or("no detail")
        );
        let reason = if !self.policy.retryable(outcome.kind()) {
            format!("{why} (not retried)")
        } else if n >= max {
            format!("{why} (attempts spent: {max})")
        } else {
            let wait = self.policy.delay(n + 1);
            self.say(
                &task.id,
                format_args!(
                    "{why}; attempt {} in {}",
                    n + 1,
                    humantime::format_duration(wait)
                ),
            );
            tokio::time::sleep(wait).await;
            return Ok(true);
        };
        self.finish(task, Status::Failed, None, Some(reason))
            .await?;
        Ok(false)
    }

    /// A new attempt, on a live session, written down before its prompt is
    /// sent. `Ok(Err)`: the task cannot run (its session is refused).
    async fn next_attempt(
        &self,
        task: &Task,
        rec: &TaskRecord,
    ) -> Result<std::result::Result<Attempt, String>> {
        let session = match self.session(task, rec).await? {
            Ok(s) => s,
            Err(reason) => return Ok(Err(reason)),
        };
        let n = rec.attempts.len() as u32 + 1;
        let attempt = Attempt {
            n,
            session_id: session,
            key: format!("herd-jobs:{}:prompt:{n}", task.id),
            message_id: None,
            outcome: None,
        };
        let a = attempt.clone();
        self.state.update(&task.id, |r| r.attempts.push(a))?;
        Ok(Ok(attempt))
    }

    /// The task's live session: found, or created once.
    async fn session(
        &self,
        task: &Task,
        rec: &TaskRecord,
    ) -> Result<std::result::Result<String, String>> {
        if let Some(id) = &rec.session_id {
            if let Some(s) = self.api.session(id).await? {
                if !s.is_final() {
                    return Ok(Ok(s.id));
                }
            }
        }
        // Created by a run that died before writing it down.
        if let Some(s) = self.api.task_session(&task.id).await? {
            if !s.is_final() {
                let id = s.id.clone();
                self.state
                    .update(&task.id, |r| r.session_id = Some(id.clone()))?;
                self.say(&task.id, format_args!("session {} found", short(&s.id)));
                return Ok(Ok(s.id));
            }
        }
        let body = task.session_body();
        loop {
            let n = self.state.get(&task.id).session_key;
            if n >= MAX_SESSIONS {
                return Ok(Err(format!(
                    "{MAX_SESSIONS} sessions ended under this task: given up"
                )));
            }
            let key = format!("herd-jobs:{}:session:{n}", task.id);
            let s = match self.api.create(&body, &key).await? {
                Ok(s) => s,
                Err(r) => return Ok(Err(format!("session refused: {r}"))),
            };
            if s.is_final() {
                // The answer remembered for this key is a session that has
                // ended since: the next key makes a new one.
                self.state.update(&task.id, |r| r.session_key = n + 1)?;
                continue;
            }
            let id = s.id.clone();
            self.state.update(&task.id, |r| {
                r.session_id = Some(id.clone());
                r.released = false;
            })?;
            self.say(&task.id, format_args!("session {} created", short(&s.id)));
            return Ok(Ok(s.id));
        }
    }

    /// Sends the attempt's prompt, unless an earlier run did.
    async fn deliver(&self, task: &Task, attempt: &Attempt, rec: &TaskRecord) -> Result<Sent> {
        let claimed: BTreeSet<&str> = rec
            .attempts
            .iter()
            .filter_map(|a| a.message_id.as_deref())
            .collect();
        let text = task.prompt.trim_end_matches(['\r', '\n']);
        let Some(queue) = self.api.queue(&attempt.session_id).await? else {
            return Ok(Sent::Lost(lost("lost", "the session is gone".into())));
        };
        let found = queue
            .iter()
            .find(|m| m.text == text && !claimed.contains(m.id.as_str()));
        let (id, how) = match found {
            Some(m) => (m.id.clone(), "found sent"),
            None => match self
                .api
                .send(&attempt.session_id, text, &attempt.key)
                .await?
            {
                Ok(m) => (m.id, "sent"),
                Err(r) => return Ok(Sent::Lost(refused(r))),
            },
        };
        let mid = id.clone();
        self.state.update(&task.id, |r| {
            if let Some(a) = r.attempts.iter_mut().find(|a| a.n == attempt.n) {
                a.message_id = Some(mid);
            }
        })?;
        self.say(
            &task.id,
            format_args!(
                "prompt {how} (attempt {}, message {}, session {})",
                attempt.n,
                short(&id),
                short(&attempt.session_id)
            ),
        );
        Ok(Sent::Id(id))
    }

    /// Polls the session's queue until the message is final. `Err`: it
    /// cannot be followed, or took longer than the timeout (then cancelled
    /// if it was not typed yet).
    async fn wait(
        &self,
        session: &str,
        mid: &str,
    ) -> Result<std::result::Result<Message, Outcome>> {
        let started = Instant::now();
        loop {
            let Some(queue) = self.api.queue(session).await? else {
                return Ok(Err(lost("lost", "the session is gone".into())));
            };
            match queue.into_iter().find(|m| m.id == mid) {
                Some(m) if m.is_final() => return Ok(Ok(m)),
                Some(_) => {}
                None => {
                    return Ok(Err(lost(
                        "lost",
                        format!("message {mid} is no longer in the session's queue"),
                    )))
                }
            }
            if started.elapsed() >= self.timeout {
                let cancelled = self.api.cancel(session, mid).await?;
                return Ok(Err(lost(
                    "timeout",
                    format!(
                        "no reply within {}{}",
                        humantime::format_duration(self.timeout),
                        if cancelled { " (cancelled)" } else { "" }
                    ),
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Writes an attempt's outcome down.
    async fn record(&self, task: &Task, n: u32, o: Outcome) -> Result<()> {
        self.state.update(&task.id, |r| {
            if let Some(a) = r.attempts.iter_mut().find(|a| a.n == n) {
                a.outcome = Some(o);
            }
        })
    }

    /// Ends a task: its result file first, then the state (a run that dies
    /// in between writes the same result again).
    async fn finish(
        &self,
        task: &Task,
        status: Status,
        reply: Option<&Message>,
        reason: Option<String>,
    ) -> Result<()> {
        let rec = self.state.get(&task.id);
        let mut history = rec.attempts.clone();
        if let (Some(m), Some(last)) = (reply, history.last_mut()) {
            last.outcome = Some(outcome_of(m));
        }
        let result = json!({
            "task": task.id,
            "status": status,
            "session_id": rec.session_id,
            "message_id": reply.map(|m| m.id.clone()),
            "reply": reply.and_then(|m| m.reply.clone()),
            "usage": reply.and_then(|m| m.usage.clone()),
            "reason": reason,
            "attempts": rec.attempts.len(),
            "history": history,
        });
        let path = self.out.join(format!("{}.json", task.id));
        let bytes = serde_json::to_vec_pretty(&result).context("encoding a result")?;
        state::write_atomic(&path, &bytes)?;
        let n = rec.attempts.len() as u32;
        let (r2, m2) = (reason.clone(), reply.map(outcome_of));
        self.state.update(&task.id, |r| {
            if let (Some(o), Some(a)) = (m2, r.attempts.iter_mut().find(|a| a.n == n)) {
                a.outcome = Some(o);
            }
            r.status = status;
            r.reason = r2;
        })?;
        self.count(status);
        match status {
            Status::Done => {
                let tokens = reply
                    .and_then(|m| m.usage.as_ref())
                    .map(usage_tokens)
                    .unwrap_or(0);
                self.say(
                    &task.id,
                    format_args!("done (attempt {n}, {tokens} tokens) → {}", path.display()),
                )
            }
            _ => self.say(
                &task.id,
                format_args!("FAILED: {}", reason.as_deref().unwrap_or("?")),
            ),
        }
        Ok(())
    }

    /// Stops a finished task's session, once (unless `--keep-sessions`).
    async fn release(&self, task: &Task, rec: &TaskRecord) -> Result<()> {
        if self.keep_sessions || rec.released {
            return Ok(());
        }
        if let Some(id) = &rec.session_id {
            self.api.stop(id).await?;
        }
        self.state.update(&task.id, |r| r.released = true)
    }
}

fn describe(o: &Outcome) -> String {
    match &o.failure {
        Some(f) => format!("failed ({f})"),
        None => o.state.clone(),
    }
}

fn usage_tokens(u: &Value) -> u64 {
    ["input_tokens", "output_tokens"]
        .iter()
        .filter_map(|k| u[*k].as_u64())
        .sum()
}

/// A prompt the daemon refused: a session that ended (409, 404) may be
/// replaced and tried again; anything else is the prompt's own fault.
fn refused(r: Refused) -> Outcome {
    let state = match r.status {
        StatusCode::CONFLICT | StatusCode::NOT_FOUND => "lost",
        _ => "refused",
    };
    lost(state, r.to_string())
}
