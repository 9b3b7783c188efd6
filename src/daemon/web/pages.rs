//! The dashboard's routes: the page, its assets, logging in and out, and
//! `POST /v1/login`, which mints the one-time link that `herd open` prints.

use super::assets;
use crate::daemon::api::auth::AuthBy;
use crate::daemon::api::error::{ApiError, ApiResult, ErrorBody};
use crate::daemon::api::AppState;
use axum::extract::{Path, Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The dashboard's routes (pages, not API operations: they are not in the
/// OpenAPI document, which is why they are registered with `.route`).
#[allow(clippy::disallowed_methods)]
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{file}", get(asset))
        .route("/login", get(login_page).post(login_form))
        .route("/logout", post(logout))
}

/// `GET /`: the dashboard for a logged-in browser, else the login page.
async fn index(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if !app.web.has_session(&headers) {
        return redirect("/login");
    }
    assets::serve(&assets::INDEX, &headers, app.web.secure())
}

/// `GET /assets/{file}`: the embedded bundle. Served without login: it is
/// the same public code for everyone and holds no data.
async fn asset(
    State(app): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    match assets::find(&file) {
        Some(a) => assets::serve(a, &headers, app.web.secure()),
        None => ApiError::not_found(format!("no asset {file:?}")).into_response(),
    }
}

/// Query of `GET /login`.
#[derive(Debug, Deserialize)]
struct LoginQuery {
    /// A one-time ticket from `POST /v1/login`.
    ticket: Option<String>,
    /// Set by the page when the API answered 401.
    expired: Option<String>,
}

/// `GET /login?ticket=...`: redeems a ticket for a session cookie and sends
/// the browser to `/` (the ticket leaves the address bar and the history);
/// without a ticket, the form that takes the token.
async fn login_page(State(app): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    match q.ticket {
        Some(t) if app.web.redeem_ticket(&t) => logged_in(&app),
        Some(_) => login_html(
            &app,
            StatusCode::UNAUTHORIZED,
            "This login link was already used or has expired. Run herd open for a new one.",
            "bad",
        ),
        None if q.expired.is_some() => login_html(
            &app,
            StatusCode::OK,
            "Your dashboard session ended. Log in again.",
            "bad",
        ),
        None => login_html(&app, StatusCode::OK, "", ""),
    }
}

/// Body of `POST /login`.
#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

/// `POST /login`: the fallback form, with the API token itself.
async fn login_form(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    // A login forged from another site would log the browser into the
    // attacker's daemon: the form must come from this origin.
    if let Err(e) = super::auth::same_origin(&headers) {
        return login_html(&app, StatusCode::FORBIDDEN, &e.to_string(), "bad");
    }
    if bool::from(form.token.trim().as_bytes().ct_eq(app.token.as_bytes())) {
        logged_in(&app)
    } else {
        login_html(
            &app,
            StatusCode::UNAUTHORIZED,
            "That is not this daemon's token.",
            "bad",
        )
    }
}

/// `POST /logout`: forgets the browser's session.
async fn logout(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = super::auth::same_origin(&headers) {
        return ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: e.to_string(),
        }
        .into_response();
    }
    let mut resp = login_html(&app, StatusCode::OK, "Logged out.", "good");
    if let Ok(v) = HeaderValue::from_str(&app.web.clear_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// A new session cookie, and off to the dashboard.
fn logged_in(app: &AppState) -> Response {
    let mut resp = redirect("/");
    if let Ok(v) = HeaderValue::from_str(&app.web.issue_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn redirect(to: &'static str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static(to));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The login page with one of a few fixed messages (never request data).
fn login_html(app: &AppState, status: StatusCode, message: &str, class: &str) -> Response {
    let page = assets::LOGIN
        .replace("{{message}}", &escape(message))
        .replace("{{class}}", class);
    let mut resp = (status, page).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    assets::security_headers(h, app.web.secure());
    resp
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Answer of `POST /v1/login`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginLink {
    /// Open this in a browser, within a minute, once.
    #[schema(example = "http://127.0.0.1:7777/login?ticket=3f9c...")]
    pub url: String,
    /// Seconds the link stays valid.
    pub expires_in: u64,
}

/// `POST /v1/login`: a one-time link that logs a browser into the dashboard.
#[utoipa::path(
    post,
    path = "/v1/login",
    tag = "daemon",
    summary = "One-time dashboard login link (bearer token only)",
    description = "Mints a ticket, usable once within 60 seconds: opening the link sets an \
        HttpOnly, SameSite=Strict session cookie and redirects to the dashboard at `/`, without \
        the ticket in the address. The link's base is `[server] public_url` when set, else the \
        address the request was sent to. A browser's cookie cannot mint links: this takes the \
        bearer token.",
    responses(
        (status = 200, description = "The link", body = LoginLink),
        (status = 403, description = "Authenticated by a browser cookie, not the token", body = ErrorBody),
    )
)]
pub async fn login_link(
    State(app): State<AppState>,
    Extension(by): Extension<AuthBy>,
    headers: HeaderMap,
) -> ApiResult<Json<LoginLink>> {
    if by != AuthBy::Bearer {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: "login links are minted with the API token, not from a browser session".into(),
        });
    }
    let base = match &app.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| !h.is_empty() && !h.contains(['/', '?', '#', '@', ' ']))
                .ok_or_else(|| ApiError::invalid("Host header", "missing or not a host[:port]"))?;
            // A TLS daemon answers plain HTTP to loopback peers only: a link
            // to a loopback host stays http, any other gets https.
            let scheme = if app.web.secure() && !is_loopback_host(host) {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}")
        }
    };
    let ticket = app.web.mint_ticket();
    Ok(Json(LoginLink {
        url: format!("{base}/login?ticket={ticket}"),
        expires_in: super::auth::TICKET_TTL.as_secs(),
    }))
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:7777",
            "127.0.0.1:1",
            "127.3.2.1",
            "[::1]:7777",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "herd.example:7777",
            "10.0.0.2:7777",
            "[2001:db8::1]:1",
            "localhost.evil",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
