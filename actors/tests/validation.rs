//! Rejected requests: a bad spec gets `HerdError::Invalid` naming the field,
//! and a rejected request changes nothing in the session table.

mod common;

use common::*;
use herd_actors::{HerdError, SessionSpec, SessionState};

fn field_of(r: Result<herd_actors::SessionInfo, HerdError>) -> String {
    match r {
        Err(HerdError::Invalid { field, message }) => {
            assert!(!message.is_empty());
            field
        }
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_name_the_field_and_change_nothing() {
    let herd = Herd::start(fast_defaults()).await;
    let good = herd.create(sh("sleep 1000")).await.unwrap();
    let before = herd.list(&all());
    assert_eq!(before.len(), 1);

    let mut cases: Vec<(SessionSpec, &str)> = vec![
        (SessionSpec::new(Vec::<String>::new()), "command"),
        (SessionSpec::new([""]), "command"),
        (SessionSpec::new(["herd-no-such-program-xyz"]), "command"),
        (SessionSpec::new(["/no/such/dir/prog"]), "command"),
    ];
    let mut s = sh("true");
    s.cwd = Some("/no/such/dir/anywhere".into());
    cases.push((s, "cwd"));
    let mut s = sh("true");
    s.cwd = Some("relative/dir".into());
    cases.push((s, "cwd"));
    let mut s = sh("true");
    s.cols = 0;
    cases.push((s, "cols"));
    let mut s = sh("true");
    s.rows = 0;
    cases.push((s, "rows"));
    let mut s = sh("true");
    s.cols = 5000;
    cases.push((s, "cols"));
    let mut s = sh("true");
    s.env.insert("A=B".into(), "x".into());
    cases.push((s, "env"));
    let mut s = sh("true");
    s.task_id = Some(String::new());
    cases.push((s, "task_id"));

    for (spec, field) in cases {
        let shown = format!("{:?}", spec.command);
        let got = field_of(herd.create(spec).await);
        assert_eq!(got, field, "spec running {shown}");
    }
    // An id that exists already is refused too.
    let dup = herd.create_with_id(sh("true"), Some(good.id)).await;
    assert_eq!(field_of(dup), "id");

    let after = herd.list(&all());
    assert_eq!(after.len(), before.len());
    assert_eq!(after[0].id, good.id);
    assert_eq!(after[0].generation, 0);
    assert_eq!(after[0].command, ["sh", "-c", "sleep 1000"]);
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_on_missing_or_final_sessions_are_refused() {
    let herd = Herd::start(fast_defaults()).await;
    let missing = uuid::Uuid::new_v4();
    assert!(matches!(
        herd.input(missing, "x".into()).await,
        Err(HerdError::NotFound(_))
    ));
    assert!(matches!(
        herd.stop(missing, false).await,
        Err(HerdError::NotFound(_))
    ));

    let live = herd.create(sh("sleep 1000")).await.unwrap();
    wait_running(&herd, live.id, 0).await;
    assert!(matches!(
        herd.remove(live.id).await,
        Err(HerdError::Conflict { .. })
    ));

    let mut spec = sh("exit 0");
    spec.restart.policy = Some(herd_actors::RestartPolicy::Never);
    let done = herd.create(spec).await.unwrap();
    wait_final(&herd, done.id).await;
    for r in [
        herd.input(done.id, "x".into()).await,
        herd.stop(done.id, false).await,
        herd.suspend(done.id).await,
        herd.restart(done.id).await,
    ] {
        match r {
            Err(HerdError::Conflict { state, .. }) => assert_eq!(state, SessionState::Stopped),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    herd.remove(done.id).await.unwrap();
    assert!(herd.get(done.id).is_none());
    assert_eq!(herd.list(&all()).len(), 1);
    herd.finish().await;
}
