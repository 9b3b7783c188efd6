//! `GET /v1/sessions` is made of each session's kept JSON: it must say
//! exactly what `GET /v1/sessions/{id}` says, after every kind of change,
//! with `last_line` and the filters.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// The list at `path`, each entry checked against the session's own
/// answer; returns the list.
async fn list_matches_each_session(d: &Daemon, path: &str) -> Vec<Value> {
    let (st, list) = d.get(path).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let list = list.as_array().expect("an array").clone();
    for entry in &list {
        let id = entry["id"].as_str().expect("id");
        let mut own = d.session(id).await;
        if let Some(line) = entry.get("last_line") {
            own["last_line"] = line.clone();
        }
        assert_eq!(
            entry, &own,
            "the list's entry for {id} differs from the session's"
        );
    }
    list
}

fn ids(list: &[Value]) -> Vec<&str> {
    list.iter().filter_map(|s| s["id"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_says_what_each_session_says_after_every_change() {
    // No sample lands during the test: its figures would race the checks.
    let d = Daemon::start("[metrics]\nsample_interval = \"600s\"\n").await;
    let a = d.create(json!({"command": ["cat"], "name": "a"})).await;
    let b = d
        .create(json!({"command": ["cat"], "name": "b", "task_id": "t-1", "project_id": "p-1"}))
        .await;
    for id in [&a, &b] {
        d.wait_session(id, WAIT, |v| v["state"] == "ready").await;
    }
    let first = list_matches_each_session(&d, "/v1/sessions").await;
    assert_eq!(ids(&first), [a.as_str(), b.as_str()]);
    // Asked again, unchanged: the same answer.
    assert_eq!(list_matches_each_session(&d, "/v1/sessions").await, first);

    // Input and its echo move the counters.
    let (st, v) = d
        .post(
            &format!("/v1/sessions/{a}/input"),
            json!({"text": "hello\r"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    d.wait_screen(&a, "hello", WAIT).await;
    d.wait_session(&a, WAIT, |v| v["state"] == "ready").await;
    let list = list_matches_each_session(&d, "/v1/sessions").await;
    assert_eq!(list[0]["metrics"]["bytes_in"], 6, "{}", list[0]);

    // A resize and a patch change the snapshot itself.
    let (st, v) = d
        .post(
            &format!("/v1/sessions/{b}/resize"),
            json!({"cols": 90, "rows": 20}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = d
        .req(
            Method::PATCH,
            &format!("/v1/sessions/{b}"),
            Some(json!({"name": "bee"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let list = list_matches_each_session(&d, "/v1/sessions").await;
    assert_eq!(
        (list[1]["cols"].clone(), list[1]["name"].clone()),
        (json!(90), json!("bee"))
    );

    // With each screen's last line, and the filters.
    let list = list_matches_each_session(&d, "/v1/sessions?last_line=true").await;
    assert_eq!(list[0]["last_line"], "hello", "{}", list[0]);
    let list = list_matches_each_session(&d, "/v1/sessions?task=t-1").await;
    assert_eq!(ids(&list), [b.as_str()]);
    let list = list_matches_each_session(&d, "/v1/sessions?project=p-1&state=ready").await;
    assert_eq!(ids(&list), [b.as_str()]);

    // A stopped session leaves the default list, and shows as stopped in `all`.
    let (st, v) = d
        .req(
            Method::DELETE,
            &format!("/v1/sessions/{a}?force=true"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    d.wait_session(&a, WAIT, |v| v["state"] == "stopped").await;
    let list = list_matches_each_session(&d, "/v1/sessions").await;
    assert_eq!(ids(&list), [b.as_str()]);
    let list = list_matches_each_session(&d, "/v1/sessions?all=true").await;
    assert_eq!(ids(&list), [a.as_str(), b.as_str()]);
    assert_eq!(list[0]["state"], "stopped");
}
