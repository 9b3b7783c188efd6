//! Helpers of the dashboard tests: login links, redeemed without a browser.
#![allow(dead_code)] // each test file uses some of them

use crate::common::Daemon;
use reqwest::header::SET_COOKIE;
use reqwest::StatusCode;
use serde_json::json;

/// A client that follows no redirects: the tests look at each answer.
pub fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn login_url(d: &Daemon) -> String {
    let (st, v) = d.post("/v1/login", json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["expires_in"], 60);
    v["url"].as_str().unwrap().to_string()
}

/// Redeems a link; returns the `name=value` of the cookie it set.
pub async fn redeem(url: &str) -> (StatusCode, Option<String>, Option<String>) {
    let r = raw_client().get(url).send().await.unwrap();
    let cookie = r
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_string());
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status(), cookie, location)
}

pub fn host(d: &Daemon) -> String {
    d.url.trim_start_matches("http://").to_string()
}
