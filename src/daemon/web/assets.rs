//! The dashboard's files, built from `web/` by `npm run build` and embedded
//! here, so a daemon built without node serves them and loads nothing from
//! elsewhere at run time. CI rebuilds them from the lockfile and fails when
//! they differ from the committed `web/dist`.

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// One embedded file.
pub struct Asset {
    /// Its name under `/assets/`, or the page's.
    pub name: &'static str,
    /// Its media type.
    pub mime: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

/// The dashboard page.
pub const INDEX: Asset = Asset {
    name: "index.html",
    mime: "text/html; charset=utf-8",
    bytes: include_bytes!("../../../web/dist/index.html"),
};

/// The login page; `{{message}}` and `{{class}}` are filled in.
pub const LOGIN: &str = include_str!("../../../web/dist/login.html");

/// Files under `/assets/`.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        mime: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../web/dist/app.js"),
    },
    Asset {
        name: "app.css",
        mime: "text/css; charset=utf-8",
        bytes: include_bytes!("../../../web/dist/app.css"),
    },
    Asset {
        name: "player.js",
        mime: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../web/dist/player.js"),
    },
    Asset {
        name: "favicon.svg",
        mime: "image/svg+xml",
        bytes: include_bytes!("../../../web/dist/favicon.svg"),
    },
    Asset {
        name: "player.css",
        mime: "text/css; charset=utf-8",
        bytes: include_bytes!("../../../web/dist/player.css"),
    },
];

/// What the page may load and run: its own scripts, styles and connections
/// only. No inline script; `wasm-unsafe-eval` lets the recording player
/// compile its terminal emulator (WebAssembly), which runs no JavaScript
/// eval. Inline styles are allowed because xterm.js and the player size
/// their cells with `<style>` elements they generate; no markup is ever
/// built from data (the page creates text nodes only).
pub const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; \
    connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The headers every page and asset carries.
pub fn security_headers(h: &mut HeaderMap, tls: bool) {
    let set = |h: &mut HeaderMap, k: HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // Not "no-referrer": browsers then send `Origin: null` with the page's
    // own forms (login, logout), which the origin check must refuse.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    if tls {
        set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
}

/// A strong validator of a file's bytes, computed once per file.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .chain(std::iter::once(&INDEX))
            .map(|a| {
                let d = Sha256::digest(a.bytes);
                let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
                (a.name, format!("\"{hex}\""))
            })
            .collect()
    });
    tags.iter()
        .find(|(n, _)| *n == asset.name)
        .map_or("\"0\"", |(_, t)| t.as_str())
}

/// Serves a file: revalidated on every load (its name does not change when
/// its content does), 304 when the browser's copy is current.
pub fn serve(asset: &Asset, request: &HeaderMap, tls: bool) -> Response {
    let tag = etag(asset);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.bytes.into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    security_headers(h, tls);
    resp
}

/// The asset named `name`, if embedded.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}
