//! Containment: every process a session started dies with it, however it
//! detached. A grandchild that double-forks and calls `setsid` is in neither
//! the child's process group nor its /proc tree; it still carries the
//! session's marker, and the sweep at the end of each generation kills it.

mod common;

use common::*;
use herd_actors::process::{self, Pid};
use herd_actors::{RestartPolicy, SessionState};
use std::path::Path;

/// A child that starts an escaping grandchild (double fork + setsid) which
/// writes its pid and its own child's pid to `<dir>/esc.<generation>`.
fn escaper(dir: &Path) -> String {
    format!(
        "(setsid sh -c 'sleep 600 & echo $$ $! > {d}/esc.tmp.$HERD_GENERATION; \
         mv {d}/esc.tmp.$HERD_GENERATION {d}/esc.$HERD_GENERATION; wait' &); exec sleep 600",
        d = dir.display()
    )
}

/// The escaped pids of `generation`, once written.
async fn escaped(dir: &Path, generation: u64) -> Vec<Proc> {
    let file = dir.join(format!("esc.{generation}"));
    wait_until(WAIT, "the escaper to write its pids", || file.exists()).await;
    let text = std::fs::read_to_string(&file).unwrap();
    text.split_whitespace()
        .map(|p| Proc::of(p.parse::<Pid>().unwrap()).expect("escaped process exists"))
        .collect()
}

fn assert_escaped(leader: Pid, procs: &[Proc]) {
    let tree = process::tree(leader);
    for p in procs {
        assert!(p.alive(), "{p:?} runs");
        assert!(!tree.contains(&p.pid), "{p:?} left the tree");
        assert_ne!(proc_sid(p.pid), Some(leader), "{p:?} left the session");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_grandchild_dies_when_its_session_stops() {
    let dir = tempfile::tempdir().unwrap();
    let herd = Herd::start(fast_defaults()).await;
    let id = herd.create(sh(&escaper(dir.path()))).await.unwrap().id;
    let info = wait_running(&herd, id, 0).await;
    let procs = escaped(dir.path(), 0).await;
    assert_escaped(info.pid.unwrap(), &procs);
    herd.stop(id, false).await.unwrap();
    wait_final(&herd, id).await;
    wait_until(WAIT, "the escaped processes to be killed", || {
        procs.iter().all(|p| !p.alive())
    })
    .await;
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_kills_the_detached_processes_of_the_old_generation_only() {
    let dir = tempfile::tempdir().unwrap();
    let herd = Herd::start(fast_defaults()).await;
    let spec = sh_with(&escaper(dir.path()), RestartPolicy::Always);
    let id = herd.create(spec).await.unwrap().id;
    let first = wait_running(&herd, id, 0).await;
    let old = escaped(dir.path(), 0).await;
    assert_escaped(first.pid.unwrap(), &old);
    herd.restart(id).await.unwrap();
    let second = wait_running(&herd, id, 1).await;
    let new = escaped(dir.path(), 1).await;
    wait_until(
        WAIT,
        "generation 0's escaped processes to be killed",
        || old.iter().all(|p| !p.alive()),
    )
    .await;
    assert_escaped(second.pid.unwrap(), &new);
    assert!(!snapshot(&herd, id).state.is_final());
    herd.stop(id, true).await.unwrap();
    let end = wait_final(&herd, id).await;
    assert_eq!(end.state, SessionState::Stopped);
    wait_until(
        WAIT,
        "generation 1's escaped processes to be killed",
        || new.iter().all(|p| !p.alive()),
    )
    .await;
    herd.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_stopped_together_lose_every_detached_process() {
    // Their sweeps are served together (one /proc walk for all the
    // generations that ended meanwhile): none may be missed.
    const N: usize = 12;
    let dirs: Vec<_> = (0..N).map(|_| tempfile::tempdir().unwrap()).collect();
    let herd = Herd::start(fast_defaults()).await;
    let mut ids = vec![];
    for d in &dirs {
        ids.push(herd.create(sh(&escaper(d.path()))).await.unwrap().id);
    }
    let mut procs = vec![];
    for (id, d) in ids.iter().zip(&dirs) {
        let info = wait_running(&herd, *id, 0).await;
        let p = escaped(d.path(), 0).await;
        assert_escaped(info.pid.unwrap(), &p);
        procs.extend(p);
    }
    for id in &ids {
        herd.stop(*id, false).await.unwrap();
    }
    for id in &ids {
        wait_final(&herd, *id).await;
    }
    wait_until(WAIT, "every escaped process to be killed", || {
        procs.iter().all(|p| !p.alive())
    })
    .await;
    herd.finish().await;
}
