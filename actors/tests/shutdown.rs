//! A runtime that shuts down under live sessions (a daemon's end, or a
//! program embedding the registry) still kills and reaps every child: none
//! is left running, none is left a zombie. Its own test binary: it drops a
//! whole runtime.

mod common;

use common::*;
use herd_actors::process::Pid;
use herd_actors::Registry;
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn a_runtime_dropped_under_live_sessions_kills_and_reaps_every_child() {
    const N: usize = 8;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pids: Vec<Pid> = rt.block_on(async {
        let reg = Registry::start(fast_defaults()).await.unwrap();
        let mut ids = vec![];
        for _ in 0..N {
            // Deaf to the polite signals, with a job of its own in the group.
            let spec = sh("trap '' TERM HUP INT; sleep 600 & exec sleep 600");
            ids.push(reg.create(spec).await.unwrap().id);
        }
        let mut pids = vec![];
        for id in ids {
            pids.push(wait_running(&reg, id, 0).await.pid.unwrap());
        }
        // No orderly shutdown: the runtime goes away under them.
        drop(reg);
        pids
    });
    let t = Instant::now();
    drop(rt);
    eprintln!("runtime dropped in {:?}", t.elapsed());
    // A child that is still ours shows in /proc until it is reaped (a
    // zombie included); gone means killed and reaped.
    let deadline = Instant::now() + WAIT;
    let left = loop {
        let left: Vec<Pid> = pids
            .iter()
            .copied()
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let states: Vec<_> = left.iter().map(|p| (*p, proc_state(*p))).collect();
    for p in &left {
        // SAFETY: cleanup of our own children by pid and group.
        unsafe {
            libc::kill(-p, libc::SIGKILL);
            libc::kill(*p, libc::SIGKILL);
            libc::waitpid(*p, std::ptr::null_mut(), 0);
        }
    }
    assert!(
        left.is_empty(),
        "children left running or unreaped (pid, state): {states:?}"
    );
}
