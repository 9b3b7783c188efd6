//! How a browser logs in without ever holding the API token.
//!
//! `POST /v1/login` (bearer only) mints a ticket: 256 random bits, usable
//! once, for [`TICKET_TTL`]. Opening the link redeems it for a session
//! cookie: `<expiry>.<nonce>.<mac>`, an HMAC-SHA256 under a key derived from
//! the API token, so it survives a daemon restart and dies with a new token.
//! The cookie is HttpOnly and SameSite=Strict; a cookie-authenticated request
//! that changes anything, or opens a WebSocket, must also come from the
//! daemon's own origin (the `Origin` header names the host the request was
//! sent to), and a write must carry [`CSRF_HEADER`], which a cross-site form
//! cannot set and a cross-site script cannot send without a CORS preflight
//! that the daemon never grants.

use axum::http::header::{COOKIE, HOST, ORIGIN, UPGRADE};
use axum::http::{HeaderMap, Method};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A login ticket is good this long after it was minted.
pub const TICKET_TTL: Duration = Duration::from_secs(60);
/// A browser stays logged in this long.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Header that cookie-authenticated writes must carry (any value).
pub const CSRF_HEADER: &str = "x-herd-csrf";
/// Unredeemed tickets kept at most; minting more forgets the oldest.
const MAX_TICKETS: usize = 256;

type HmacSha256 = Hmac<Sha256>;

/// Why a cookie-authenticated request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials at all.
    #[error("missing Authorization: Bearer <token> header")]
    Missing,
    /// A cookie, but forged, damaged or expired.
    #[error("the dashboard session expired or is invalid: log in again")]
    BadCookie,
    /// The request comes from another origin (or says none where it must).
    #[error("cross-origin request refused: Origin {origin} is not this daemon ({host})")]
    CrossOrigin {
        /// What the browser sent, or "(none)".
        origin: String,
        /// The host the request was sent to.
        host: String,
    },
    /// A write without the CSRF header.
    #[error("a browser request that changes something needs the {CSRF_HEADER} header")]
    NoCsrfHeader,
}

/// Tickets and cookies of one daemon.
pub struct WebAuth {
    /// HMAC key of the cookies: derived from the API token.
    key: [u8; 32],
    /// Outstanding tickets and when each expires.
    tickets: Mutex<HashMap<String, Instant>>,
    /// Cookie name, with the port: cookies are shared by every port of a
    /// host, and two daemons on one machine must not log each other out.
    cookie_name: String,
    /// TLS is configured: cookies are `Secure`.
    secure: bool,
}

impl WebAuth {
    /// The web login of a daemon with this token, port and TLS setting.
    pub fn new(token: &str, port: u16, secure: bool) -> Self {
        let mut h = Sha256::new();
        h.update(b"herd web session key v1\0");
        h.update(token.as_bytes());
        Self {
            key: h.finalize().into(),
            tickets: Mutex::new(HashMap::new()),
            cookie_name: format!("herd_{port}"),
            secure,
        }
    }

    /// Whether the daemon speaks TLS (cookies are `Secure`).
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// A new one-time ticket.
    pub fn mint_ticket(&self) -> String {
        let ticket = random_hex::<32>();
        let now = Instant::now();
        let mut t = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        t.retain(|_, exp| *exp > now);
        if t.len() >= MAX_TICKETS {
            if let Some(oldest) = t
                .iter()
                .min_by_key(|(_, exp)| **exp)
                .map(|(k, _)| k.clone())
            {
                t.remove(&oldest);
            }
        }
        t.insert(ticket.clone(), now + TICKET_TTL);
        ticket
    }

    /// Uses a ticket up: true once, if it exists and has not expired.
    pub fn redeem_ticket(&self, ticket: &str) -> bool {
        let mut t = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        matches!(t.remove(ticket), Some(exp) if exp > Instant::now())
    }

    /// The `Set-Cookie` value of a new browser session.
    pub fn issue_cookie(&self) -> String {
        let expiry = unix(SystemTime::now() + SESSION_TTL);
        let body = format!("{expiry}.{}", random_hex::<16>());
        let mac = hex(&self.mac(&body));
        format!(
            "{}={body}.{mac}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
            self.cookie_name,
            SESSION_TTL.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that logs a browser out.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
            self.cookie_name,
            if self.secure { "; Secure" } else { "" }
        )
    }

    fn mac(&self, body: &str) -> [u8; 32] {
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(body.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// Whether the request carries a valid, unexpired session cookie.
    pub fn has_session(&self, headers: &HeaderMap) -> bool {
        cookies(headers, &self.cookie_name).any(|v| self.valid(v))
    }

    fn valid(&self, value: &str) -> bool {
        let Some((body, mac)) = value.rsplit_once('.') else {
            return false;
        };
        let Some(mac) = unhex(mac) else {
            return false;
        };
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(body.as_bytes());
        if m.verify_slice(&mac).is_err() {
            return false;
        }
        let expiry = body.split('.').next().and_then(|e| e.parse::<u64>().ok());
        expiry.is_some_and(|e| e > unix(SystemTime::now()))
    }

    /// Authenticates a request by its cookie (there was no bearer token):
    /// a valid session, and, for writes and WebSockets, this origin.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let mut any = false;
        let mut ok = false;
        for v in cookies(headers, &self.cookie_name) {
            any = true;
            ok |= self.valid(v);
        }
        if !any {
            return Err(Refusal::Missing);
        }
        if !ok {
            return Err(Refusal::BadCookie);
        }
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let upgrade = headers.contains_key(UPGRADE);
        if !safe || upgrade || headers.contains_key(ORIGIN) {
            same_origin(headers)?;
        }
        if !safe && !headers.contains_key(CSRF_HEADER) {
            return Err(Refusal::NoCsrfHeader);
        }
        Ok(())
    }
}

/// The request's `Origin` names the host it was sent to. The scheme is not
/// compared: one port is one server, whichever protocol reached it.
pub fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let origin = headers.get(ORIGIN).and_then(|o| o.to_str().ok());
    let authority = origin
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.to_ascii_lowercase());
    match authority {
        Some(a) if !host.is_empty() && a == host => Ok(()),
        _ => Err(Refusal::CrossOrigin {
            origin: origin.unwrap_or("(none)").chars().take(200).collect(),
            host: host.chars().take(200).collect(),
        }),
    }
}

/// The values of the cookies named `name`.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn random_hex<const N: usize>() -> String {
    use rand::Rng;
    let bytes: [u8; N] = rand::rng().random();
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn cookie_of(auth: &WebAuth) -> String {
        auth.issue_cookie().split(';').next().unwrap().to_string()
    }

    #[test]
    fn tickets_are_single_use() {
        let a = WebAuth::new("t".repeat(32).as_str(), 7777, false);
        let t = a.mint_ticket();
        assert_eq!(t.len(), 64);
        assert!(!a.redeem_ticket("0000"));
        assert!(a.redeem_ticket(&t));
        assert!(!a.redeem_ticket(&t), "a ticket works once");
    }

    #[test]
    fn expired_tickets_do_not_log_in() {
        let a = WebAuth::new("t".repeat(32).as_str(), 7777, false);
        let t = a.mint_ticket();
        a.tickets
            .lock()
            .unwrap()
            .insert(t.clone(), Instant::now() - Duration::from_millis(1));
        assert!(!a.redeem_ticket(&t));
    }

    #[test]
    fn cookies_are_signed_by_the_token_and_scoped_by_port() {
        let a = WebAuth::new("token-one-0123456789", 7777, false);
        let c = cookie_of(&a);
        assert!(c.starts_with("herd_7777="));
        let h = headers(&[("cookie", &format!("other=1; {c}"))]);
        assert!(a.has_session(&h));
        assert_eq!(a.check(&Method::GET, &h), Ok(()));
        // Another token (or another daemon) does not accept it.
        let b = WebAuth::new("token-two-0123456789", 7777, false);
        assert!(!b.has_session(&h));
        assert_eq!(b.check(&Method::GET, &h), Err(Refusal::BadCookie));
        // A changed expiry breaks the signature.
        let (name, value) = c.split_once('=').unwrap();
        let forged = format!("{name}=9{value}");
        assert!(!a.has_session(&headers(&[("cookie", &forged)])));
        assert_eq!(
            a.check(&Method::GET, &HeaderMap::new()),
            Err(Refusal::Missing)
        );
        assert!(a.issue_cookie().contains("HttpOnly; SameSite=Strict"));
        assert!(!a.issue_cookie().contains("Secure"));
        assert!(WebAuth::new("x", 1, true)
            .issue_cookie()
            .ends_with("; Secure"));
    }

    #[test]
    fn writes_need_this_origin_and_the_csrf_header() {
        let a = WebAuth::new("token-one-0123456789", 7777, false);
        let c = cookie_of(&a);
        let host = ("host", "127.0.0.1:7777");
        let cookie = ("cookie", c.as_str());
        let ok = headers(&[
            cookie,
            host,
            ("origin", "http://127.0.0.1:7777"),
            (CSRF_HEADER, "1"),
        ]);
        assert_eq!(a.check(&Method::POST, &ok), Ok(()));
        let evil = headers(&[
            cookie,
            host,
            ("origin", "http://evil.example"),
            (CSRF_HEADER, "1"),
        ]);
        assert!(matches!(
            a.check(&Method::POST, &evil),
            Err(Refusal::CrossOrigin { .. })
        ));
        let no_origin = headers(&[cookie, host, (CSRF_HEADER, "1")]);
        assert!(matches!(
            a.check(&Method::DELETE, &no_origin),
            Err(Refusal::CrossOrigin { .. })
        ));
        let no_csrf = headers(&[cookie, host, ("origin", "http://127.0.0.1:7777")]);
        assert_eq!(a.check(&Method::POST, &no_csrf), Err(Refusal::NoCsrfHeader));
        // Another port of the same host is another origin.
        let port = headers(&[
            cookie,
            host,
            ("origin", "http://127.0.0.1:8080"),
            (CSRF_HEADER, "1"),
        ]);
        assert!(matches!(
            a.check(&Method::POST, &port),
            Err(Refusal::CrossOrigin { .. })
        ));
        // A WebSocket from elsewhere is refused too, though it is a GET.
        let ws = headers(&[
            cookie,
            host,
            ("upgrade", "websocket"),
            ("origin", "http://evil.example"),
        ]);
        assert!(matches!(
            a.check(&Method::GET, &ws),
            Err(Refusal::CrossOrigin { .. })
        ));
        let ws = headers(&[
            cookie,
            host,
            ("upgrade", "websocket"),
            ("origin", "https://127.0.0.1:7777"),
        ]);
        assert_eq!(a.check(&Method::GET, &ws), Ok(()));
    }
}
