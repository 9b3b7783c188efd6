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

/// Every restart and limit override is checked at create and at patch: out
/// of bounds, or in the wrong relation to the defaults, it is refused with
/// the field and the value, and the session is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_are_bounded_at_create_and_patch() {
    use herd_actors::{LimitOverrides, RestartOverrides, SessionPatch};
    use std::time::Duration;
    let herd = Herd::start(fast_defaults()).await;
    let huge = Duration::from_secs(u64::MAX / 4);
    let restart = |f: fn(&mut RestartOverrides)| {
        let mut r = RestartOverrides::default();
        f(&mut r);
        r
    };
    let limits = |f: fn(&mut LimitOverrides)| {
        let mut l = LimitOverrides::default();
        f(&mut l);
        l
    };
    let restarts = [
        (
            restart(|r| r.backoff_initial = Some(Duration::ZERO)),
            "restart.backoff_initial",
        ),
        (
            restart(|r| r.backoff_initial = Some(Duration::from_secs(u64::MAX / 4))),
            "restart.backoff_initial",
        ),
        (
            restart(|r| r.backoff_max = Some(Duration::from_millis(1))),
            "restart.backoff_max",
        ),
        (
            restart(|r| r.restart_window = Some(Duration::ZERO)),
            "restart.restart_window",
        ),
        (
            restart(|r| r.max_restarts = Some(1_000_000)),
            "restart.max_restarts",
        ),
        (
            restart(|r| r.backoff_reset_after = Some(Duration::from_secs(10 * 86_400))),
            "restart.backoff_reset_after",
        ),
        // In bounds alone, but below the default backoff_initial (20ms).
        (
            restart(|r| {
                r.backoff_initial = Some(Duration::from_secs(5));
                r.backoff_max = Some(Duration::from_secs(1));
            }),
            "restart.backoff_max",
        ),
    ];
    let limit_cases = [
        (
            limits(|l| l.quiet_after = Some(Duration::ZERO)),
            "limits.quiet_after",
        ),
        (
            limits(|l| l.idle_timeout = Some(Duration::from_millis(5))),
            "limits.idle_timeout",
        ),
        (
            limits(|l| l.max_duration = Some(Duration::from_secs(u64::MAX / 4))),
            "limits.max_duration",
        ),
        (
            limits(|l| l.stop_grace = Some(Duration::from_secs(86_400))),
            "limits.stop_grace",
        ),
        (
            limits(|l| l.max_memory = Some(herd_actors::ByteSize(10))),
            "limits.max_memory",
        ),
    ];
    assert!(huge > Duration::from_secs(365 * 86_400));

    for (r, field) in restarts.iter().cloned() {
        let mut s = sh("true");
        s.restart = r;
        assert_eq!(field_of(herd.create(s).await), field);
    }
    for (l, field) in limit_cases.iter().cloned() {
        let mut s = sh("true");
        s.limits = l;
        assert_eq!(field_of(herd.create(s).await), field);
    }
    assert!(
        herd.list(&all()).is_empty(),
        "no refused create left a session"
    );

    let id = herd.create(sh("sleep 1000")).await.unwrap().id;
    let before = snapshot(&herd, id);
    for (r, field) in restarts {
        let patch = SessionPatch {
            restart: Some(r),
            ..Default::default()
        };
        assert_eq!(field_of(herd.patch(id, patch).await), field);
    }
    for (l, field) in limit_cases {
        let patch = SessionPatch {
            limits: Some(l),
            ..Default::default()
        };
        assert_eq!(field_of(herd.patch(id, patch).await), field);
    }
    let after = snapshot(&herd, id);
    assert_eq!(
        after.restart, before.restart,
        "a refused patch changes nothing"
    );
    assert_eq!(after.limits, before.limits);
    assert_eq!(herd.get(id).unwrap().spec().restart, Default::default());
    herd.finish().await;
}
