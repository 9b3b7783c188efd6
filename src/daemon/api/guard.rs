//! Checks on every request before anything else: a Host header naming this
//! machine when the daemon listens on loopback (a web page that rebinds its
//! own name to 127.0.0.1 must not reach the API), and a bounded URI length,
//! answered with a JSON body like every other error.

use super::error::ApiError;
use super::AppState;
use axum::extract::{Request, State};
use axum::http::header::HOST;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Longest request URI (path and query) accepted.
pub const MAX_URI: usize = 8 * 1024;

/// Host names a loopback daemon answers to.
pub const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]", "::1"];

/// The host of a `Host` header, without its port, lower-cased.
fn host_name(value: &str) -> String {
    let v = value.trim().to_ascii_lowercase();
    if let Some(end) = v.strip_prefix('[').and_then(|r| r.find(']')) {
        return v[..end + 2].to_string();
    }
    v.split(':').next().unwrap_or_default().to_string()
}

/// Refuses a foreign Host (421) and an overlong URI (414).
pub async fn check_request(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI {
        return ApiError {
            status: StatusCode::URI_TOO_LONG,
            code: "uri_too_long",
            message: format!("the request URI is {uri_len} bytes long; the limit is {MAX_URI}"),
        }
        .into_response();
    }
    if app.loopback_only {
        let host = req
            .headers()
            .get(HOST)
            .map(|h| host_name(h.to_str().unwrap_or("?")));
        if let Some(h) = host {
            if !LOOPBACK_HOSTS.contains(&h.as_str()) {
                return ApiError {
                    status: StatusCode::MISDIRECTED_REQUEST,
                    code: "bad_host",
                    message: format!(
                        "Host {h:?} is not this daemon (it answers to localhost, 127.0.0.1 and [::1] only)"
                    ),
                }
                .into_response();
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("localhost:7777"), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("Evil.Example:7777"), "evil.example");
    }
}
