//! A session's kept JSON (what lists are made of) is always what serde_json
//! makes of its snapshot now: after input and output, a resize, a patch, a
//! stop, and across sessions listed together.

mod common;

use common::*;
use herd_actors::{ListFilter, Registry, SessionPatch, SessionSpec, SessionState};
use std::time::Duration;
use uuid::Uuid;

/// The kept JSON of a session, checked against a fresh serialisation.
fn kept_is_fresh(reg: &Registry, id: Uuid) -> serde_json::Value {
    let h = reg.get(id).expect("session");
    let kept = h.info_json().expect("serialises");
    let fresh = serde_json::to_vec(&h.info()).expect("serialises");
    assert_eq!(
        String::from_utf8_lossy(&kept),
        String::from_utf8_lossy(&fresh),
        "kept JSON of {id} is stale"
    );
    // Asked again without a change: the same bytes.
    assert_eq!(h.info_json().expect("serialises"), kept);
    serde_json::from_slice(&kept).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kept_json_follows_every_change_of_the_snapshot() {
    let mut defaults = fast_defaults();
    // No sample lands during the test: its figures would race the checks.
    defaults.metrics.sample_interval = Duration::from_secs(600);
    let herd = Herd::start(defaults).await;
    let a = herd.create(SessionSpec::new(["cat"])).await.unwrap();
    let b = herd.create(SessionSpec::new(["cat"])).await.unwrap();
    wait_until(WAIT, "both sessions to be ready", || {
        [a.id, b.id]
            .iter()
            .all(|id| snapshot(&herd, *id).state == SessionState::Ready)
    })
    .await;
    let before = kept_is_fresh(&herd, a.id);
    kept_is_fresh(&herd, b.id);

    // Input and its echo change only the counters, outside the snapshot.
    herd.input(a.id, "hello\r".into()).await.unwrap();
    wait_output(&herd, a.id, "hello").await;
    wait_until(WAIT, "the session to settle", || {
        snapshot(&herd, a.id).state == SessionState::Ready
    })
    .await;
    let after = kept_is_fresh(&herd, a.id);
    assert_eq!(after["metrics"]["bytes_in"], 6, "{after}");
    assert_ne!(
        after["metrics"]["bytes_out"],
        before["metrics"]["bytes_out"]
    );

    herd.resize(b.id, 100, 30).await.unwrap();
    let v = kept_is_fresh(&herd, b.id);
    assert_eq!(
        (v["cols"].clone(), v["rows"].clone()),
        (100.into(), 30.into())
    );

    let patch = SessionPatch {
        name: Some("renamed".into()),
        task_id: Some("t-1".into()),
        ..Default::default()
    };
    herd.patch(b.id, patch).await.unwrap();
    let v = kept_is_fresh(&herd, b.id);
    assert_eq!(v["name"], "renamed");
    assert_eq!(v["task_id"], "t-1");

    herd.stop(a.id, true).await.unwrap();
    wait_final(&herd, a.id).await;
    let v = kept_is_fresh(&herd, a.id);
    assert_eq!(v["state"], "stopped", "{v}");

    // The handles a list is made of: filtered and in order as `list`.
    let filter = ListFilter {
        all: true,
        ..Default::default()
    };
    let ids: Vec<Uuid> = herd.list_handles(&filter).iter().map(|h| h.id()).collect();
    let listed: Vec<Uuid> = herd.list(&filter).iter().map(|i| i.id).collect();
    assert_eq!(ids, listed);
    assert_eq!(ids, vec![a.id, b.id]);
    let live: Vec<Uuid> = herd
        .list_handles(&ListFilter::default())
        .iter()
        .map(|h| h.id())
        .collect();
    assert_eq!(live, vec![b.id]);
    herd.finish().await;
}
