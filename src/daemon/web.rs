//! The web dashboard, served by the daemon on its own port: the page and its
//! assets (built from `web/` and embedded in the binary), the browser's
//! login, and TLS for browsers on other devices.
//!
//! - [`assets`]: the embedded bundle (`web/dist`) and its security headers;
//! - [`auth`]: one-time login tickets, signed session cookies, the origin check;
//! - [`pages`]: `/`, `/assets/*`, `/login`, `/logout` and `POST /v1/login`;
//! - [`tls`]: the rustls listener (TLS to anyone, plain HTTP to loopback only).

pub mod assets;
pub mod auth;
pub mod pages;
pub mod tls;

pub use auth::WebAuth;
pub use pages::routes;
