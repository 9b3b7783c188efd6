//! A webhook receiver on loopback, for the `[[notify]]` tests.

use serde_json::Value;
use std::time::Duration;

/// How long a webhook is waited for.
const T: Duration = Duration::from_secs(90);

/// A webhook endpoint on loopback that refuses the first `fail_first`
/// attempts (503) and records every request: (headers, body).
pub struct Hooks {
    /// Every request: (headers, body).
    pub got: std::sync::Arc<std::sync::Mutex<Vec<(reqwest::header::HeaderMap, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Hooks {
    // A test endpoint, not part of herd's API: no OpenAPI document to keep in step.
    #[allow(clippy::disallowed_methods)]
    /// Serves `POST /hook` on `listener`.
    pub async fn serve(listener: tokio::net::TcpListener, fail_first: usize) -> Hooks {
        use axum::http::{HeaderMap, StatusCode};
        let got: std::sync::Arc<std::sync::Mutex<Vec<(HeaderMap, String)>>> = Default::default();
        let seen = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    let mut g = seen.lock().unwrap();
                    g.push((headers, body));
                    if g.len() <= fail_first {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hooks { got, task }
    }

    /// The bodies received, parsed.
    pub fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_str(b).unwrap())
            .collect()
    }

    /// The distinct delivery ids acknowledged (2xx) or not, by event.
    pub async fn wait_for(&self, event: &str, n: usize) -> Vec<Value> {
        let ok = super::wait_until(T, || {
            self.bodies().iter().filter(|b| b["event"] == event).count() >= n
        })
        .await;
        assert!(ok, "no {n} {event}: {:?}", self.bodies());
        self.bodies()
            .into_iter()
            .filter(|b| b["event"] == event)
            .collect()
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Asserts that `headers` sign `body` with HMAC-SHA256 under `secret`.
pub fn verify(headers: &reqwest::header::HeaderMap, body: &str, secret: &str) {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        headers["x-herd-signature"].to_str().unwrap(),
        format!("sha256={want}")
    );
}
