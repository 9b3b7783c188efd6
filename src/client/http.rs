//! The typed HTTP client of the daemon's public API, used by every command:
//! discovery of the URL and token, one error type per failure (with its exit
//! code), and a method per route the CLI uses.

use crate::client::exit::{CliError, Exit};
use crate::paths;
use anyhow::{anyhow, Context, Result};
use herd_actors::{Message, SessionInfo, SessionState};
use reqwest::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::Path;

/// Where and how to reach the daemon.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Why there is no token, said when a request needs one (commands on
    /// local files never do).
    no_token: String,
}

impl Client {
    /// URL: `--url`/`HERD_URL`, else `<data dir>/url`, else the default address.
    /// Token: `--token`/`HERD_TOKEN`, else `<data dir>/token`.
    pub fn discover(
        url: Option<String>,
        token: Option<String>,
        data_dir: Option<&Path>,
    ) -> Result<Self> {
        let dir = paths::data_dir(data_dir).ok();
        let read = |name: &str| {
            dir.as_ref()
                .and_then(|d| std::fs::read_to_string(d.join(name)).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let base = url
            .or_else(|| read(paths::URL_FILE))
            .unwrap_or_else(|| format!("http://{}", crate::config::DEFAULT_LISTEN));
        let token = token.or_else(|| read(paths::TOKEN_FILE));
        let no_token = {
            let where_ = match &dir {
                Some(d) if !d.join(paths::TOKEN_FILE).exists() => format!(
                    "no daemon token in {} (is that the daemon's data dir? it is created by `herd serve`)",
                    d.display()
                ),
                Some(d) => format!("the token file in {} cannot be read", d.display()),
                None => "no data dir to read the daemon token from".to_string(),
            };
            format!("{where_}; set --data-dir, HERD_HOME, or --token/HERD_TOKEN")
        };
        let http = reqwest::Client::builder()
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
            no_token,
        })
    }

    /// The token, or the error that says where none was found.
    fn token(&self) -> Result<&str> {
        self.token
            .as_deref()
            .ok_or_else(|| CliError::error(Exit::Unreachable, self.no_token.clone()))
    }

    /// The daemon's base URL, e.g. `http://127.0.0.1:7777`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A WebSocket handshake request for `path` (e.g. `/v1/events?task=t`),
    /// carrying the token: `http://` becomes `ws://`, `https://` `wss://`.
    pub fn ws_request(
        &self,
        path: &str,
    ) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::{header::AUTHORIZATION, HeaderValue};
        let url = match self.base.split_once("://") {
            Some(("http", rest)) => format!("ws://{rest}{path}"),
            Some(("https", rest)) => format!("wss://{rest}{path}"),
            _ => {
                return Err(anyhow!(
                    "invalid daemon URL {:?}: expected http://HOST:PORT",
                    self.base
                ))
            }
        };
        let mut req = url
            .as_str()
            .into_client_request()
            .with_context(|| format!("invalid daemon URL {url:?}"))?;
        let v = HeaderValue::from_str(&format!("Bearer {}", self.token()?))
            .context("the token contains characters not allowed in a header")?;
        req.headers_mut().insert(AUTHORIZATION, v);
        Ok(req)
    }

    /// Opens a WebSocket to `path`, with the token; a failure is one clear line.
    pub async fn ws_connect(
        &self,
        path: &str,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    > {
        use tokio_tungstenite::tungstenite::Error as WsError;
        let req = self.ws_request(path)?;
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(ws),
            Err(WsError::Http(resp)) => {
                let status = resp.status();
                let message = resp
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("the daemon answered {status}"));
                Err(status_error(status, message))
            }
            Err(WsError::Io(io)) => Err(CliError::error(
                Exit::Unreachable,
                format!(
                    "cannot reach the herd daemon at {}: {io} (is `herd serve` running? set --url or HERD_URL)",
                    self.base
                ),
            )),
            Err(other) => Err(anyhow!("WebSocket to {} failed: {other}", self.base)),
        }
    }

    /// Sends a request; a non-2xx answer becomes an error with the API's message.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Response> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url).bearer_auth(self.token()?);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                CliError::error(Exit::Unreachable, format!("cannot reach the herd daemon at {}: is `herd serve` running? (set --url or HERD_URL)", self.base))
            } else {
                CliError::error(Exit::Unreachable, format!("request to {url} failed: {e}"))
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{status}: {text}"));
        Err(status_error(status, message))
    }

    /// Every session matching the query string (e.g. `state=ready&all=true`).
    pub async fn list(&self, query: &str) -> Result<Vec<SessionInfo>> {
        self.json(Method::GET, &format!("/v1/sessions?{query}"), None)
            .await
    }

    /// One session by id or unique prefix.
    pub async fn session(&self, id: &str) -> Result<SessionInfo> {
        self.json(Method::GET, &session_path(id, ""), None).await
    }

    /// Waits (up to `timeout`, in requests of at most an hour) until the
    /// session is in one of `states`.
    pub async fn wait(
        &self,
        id: &str,
        states: &[SessionState],
        timeout: Option<std::time::Duration>,
    ) -> Result<SessionInfo> {
        const CHUNK: std::time::Duration = std::time::Duration::from_secs(3600);
        let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            // Whole milliseconds: the daemon's message quotes the timeout.
            let this = left
                .unwrap_or(CHUNK)
                .clamp(std::time::Duration::from_millis(1), CHUNK);
            let this =
                std::time::Duration::from_millis(this.as_micros().div_ceil(1000).max(1) as u64);
            let path = format!(
                "{}?state={}&timeout={}",
                session_path(id, "/wait"),
                enc(&names.join(",")),
                enc(&humantime::format_duration(this).to_string())
            );
            match self.json(Method::GET, &path, None).await {
                Err(e) if is_exit(&e, Exit::Timeout) && left.is_none_or(|l| l > this) => continue,
                r => return r,
            }
        }
    }

    /// Cancels a queued message.
    pub async fn cancel(&self, id: &str, message: &str) -> Result<Message> {
        let path = format!("{}/{}", session_path(id, "/messages"), enc(message));
        self.json(Method::DELETE, &path, None).await
    }

    /// Removes a session that ended, with its data.
    /// Also returns the daemon's note on the session's worktree (where a
    /// kept one is, that its branch stays), if it had one.
    pub async fn remove(&self, id: &str, force: bool) -> Result<(SessionInfo, Option<String>)> {
        let path = format!("{}?force={force}", session_path(id, "/remove"));
        let v: Value = self.json(Method::POST, &path, None).await?;
        let note = v["note"].as_str().map(str::to_string);
        let info = serde_json::from_value(v).context("reading the removed session")?;
        Ok((info, note))
    }

    /// Stops a session (at once with `force`).
    pub async fn stop(&self, id: &str, force: bool) -> Result<SessionInfo> {
        let path = format!("{}?force={force}", session_path(id, ""));
        self.json(Method::DELETE, &path, None).await
    }

    /// A request whose answer is JSON.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let resp = self.send(method, path, body).await?;
        resp.json::<T>()
            .await
            .context("reading the daemon's answer")
    }
}

/// `/v1/sessions/{id}{rest}`, the id encoded.
pub fn session_path(id: &str, rest: &str) -> String {
    format!("/v1/sessions/{}{rest}", enc(id))
}

/// Whether the error (or one it wraps) exits with `exit`.
pub fn is_exit(e: &anyhow::Error, exit: Exit) -> bool {
    crate::client::exit::code_of(e) == exit.code()
}

/// The error for a non-2xx answer, with the exit code its status means.
fn status_error(status: StatusCode, message: String) -> anyhow::Error {
    let exit = match status {
        StatusCode::UNAUTHORIZED => {
            return CliError::error(
                Exit::Unauthorized,
                format!("{message} (set --token or HERD_TOKEN, or --data-dir of the daemon)"),
            )
        }
        StatusCode::NOT_FOUND => Exit::NotFound,
        StatusCode::CONFLICT => Exit::Conflict,
        StatusCode::GATEWAY_TIMEOUT => Exit::Timeout,
        _ => Exit::Failure,
    };
    CliError::error(exit, message)
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
