//! The few calls of herd's HTTP API the runner makes, with the daemon's
//! answers read into small types of its own (as a user's script would).
//! A daemon that is down or restarting is waited for, up to `patience`.

use anyhow::{anyhow, Result};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A session, as far as the runner cares.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    /// Its id.
    pub id: String,
    /// Its state (`starting`, `ready`, `busy`, `stopped`, ...).
    pub state: String,
}

impl Session {
    /// Stopped or failed: it will answer nothing more.
    pub fn is_final(&self) -> bool {
        self.state == "stopped" || self.state == "failed"
    }
}

/// A queued prompt and, once answered, its reply.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// Its id.
    pub id: String,
    /// Its text.
    pub text: String,
    /// `queued`, `delivering`, `done`, `failed`, `interrupted`, `cancelled`.
    pub state: String,
    /// The reply.
    #[serde(default)]
    pub reply: Option<String>,
    /// What went wrong.
    #[serde(default)]
    pub error: Option<String>,
    /// How the turn failed (`kind`, `message`, ...).
    #[serde(default)]
    pub failure: Option<Value>,
    /// Tokens the turn used.
    #[serde(default)]
    pub usage: Option<Value>,
}

impl Message {
    /// Nothing more will happen to it.
    pub fn is_final(&self) -> bool {
        matches!(
            self.state.as_str(),
            "done" | "failed" | "interrupted" | "cancelled"
        )
    }
}

/// A refusal from the daemon: its status, code and message.
#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct Refused {
    /// The HTTP status.
    pub status: StatusCode,
    /// The error's code (`invalid`, `not_found`, ...).
    pub code: String,
    /// What the daemon said.
    pub message: String,
}

/// The daemon's API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    /// How long a daemon that does not answer is waited for.
    patience: Duration,
}

impl Api {
    /// A client of the daemon at `base` (`http://127.0.0.1:7777`).
    pub fn new(base: &str, token: String, patience: Duration) -> Result<Api> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
            patience,
        })
    }

    /// One request; a transport error, a 502/503 or a 429 (the daemon is
    /// restarting, its store is busy, or its session limit is reached) is
    /// tried again with backoff until `patience` runs out. `Ok(Err)` is a
    /// refusal the caller must decide about.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<std::result::Result<T, Refused>> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            if let Some(k) = key {
                req = req.header("Idempotency-Key", k);
            }
            let transient = match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    return Ok(Ok(resp.json().await?));
                }
                Ok(resp) => {
                    let status = resp.status();
                    let v: Value = resp.json().await.unwrap_or(Value::Null);
                    let refused = Refused {
                        status,
                        code: v["error"]["code"].as_str().unwrap_or("").to_string(),
                        message: v["error"]["message"]
                            .as_str()
                            .unwrap_or("(no message)")
                            .to_string(),
                    };
                    if !matches!(status.as_u16(), 429 | 502 | 503) {
                        return Ok(Err(refused));
                    }
                    refused.to_string()
                }
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= self.patience {
                return Err(anyhow!(
                    "{method} {path}: the daemon did not answer within {}: {transient}",
                    humantime::format_duration(self.patience)
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// `GET /v1/tasks/{task}`: the task's live session, else its newest.
    pub async fn task_session(&self, task: &str) -> Result<Option<Session>> {
        match self
            .call(Method::GET, &format!("/v1/tasks/{task}"), None, None)
            .await?
        {
            Ok(s) => Ok(Some(s)),
            Err(r) if r.status == StatusCode::NOT_FOUND => Ok(None),
            Err(r) => Err(r.into()),
        }
    }

    /// `GET /v1/sessions/{id}`, `None` once it is gone.
    pub async fn session(&self, id: &str) -> Result<Option<Session>> {
        match self
            .call(Method::GET, &format!("/v1/sessions/{id}"), None, None)
            .await?
        {
            Ok(s) => Ok(Some(s)),
            Err(r) if r.status == StatusCode::NOT_FOUND => Ok(None),
            Err(r) => Err(r.into()),
        }
    }

    /// `POST /v1/sessions` with an `Idempotency-Key`.
    pub async fn create(
        &self,
        body: &Value,
        key: &str,
    ) -> Result<std::result::Result<Session, Refused>> {
        self.call(Method::POST, "/v1/sessions", Some(body), Some(key))
            .await
    }

    /// `POST /v1/sessions/{id}/messages` (queued, not waited for) with an
    /// `Idempotency-Key`.
    pub async fn send(
        &self,
        session: &str,
        text: &str,
        key: &str,
    ) -> Result<std::result::Result<Message, Refused>> {
        let body = serde_json::json!({ "text": text });
        self.call(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(&body),
            Some(key),
        )
        .await
    }

    /// `GET /v1/sessions/{id}/queue`, `None` once the session is gone.
    pub async fn queue(&self, session: &str) -> Result<Option<Vec<Message>>> {
        match self
            .call(
                Method::GET,
                &format!("/v1/sessions/{session}/queue"),
                None,
                None,
            )
            .await?
        {
            Ok(q) => Ok(Some(q)),
            Err(r) if r.status == StatusCode::NOT_FOUND => Ok(None),
            Err(r) => Err(r.into()),
        }
    }

    /// `DELETE /v1/sessions/{id}/messages/{mid}`: true if it was cancelled
    /// (false: it is being answered or ended already).
    pub async fn cancel(&self, session: &str, message: &str) -> Result<bool> {
        let r: std::result::Result<Value, Refused> = self
            .call(
                Method::DELETE,
                &format!("/v1/sessions/{session}/messages/{message}"),
                None,
                None,
            )
            .await?;
        Ok(r.is_ok())
    }

    /// `DELETE /v1/sessions/{id}`: stops it (done already is fine).
    pub async fn stop(&self, session: &str) -> Result<()> {
        let r: std::result::Result<Value, Refused> = self
            .call(
                Method::DELETE,
                &format!("/v1/sessions/{session}"),
                None,
                None,
            )
            .await?;
        match r {
            Ok(_) => Ok(()),
            Err(r) if r.status == StatusCode::NOT_FOUND => Ok(()),
            Err(r) => Err(r.into()),
        }
    }
}
