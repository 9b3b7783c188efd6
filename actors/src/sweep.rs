//! The sweep at the end of a generation, batched.
//!
//! When a child exits, its tree is killed and every process still carrying
//! the generation's marker is found by walking `/proc` and killed
//! ([`process::kill_marked`]). One walk per ended generation is fine for a
//! few; when thousands end at once (a daemon shutdown at 4,000 sessions) it
//! is quadratic: every walk reads every process's environment. Here one
//! thread serves all sweeps: each walk covers every generation that ended
//! meanwhile.

use crate::process::{self, Pid};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, OnceLock};
use tokio::sync::oneshot;

/// One ended generation to sweep.
struct Request {
    /// The child: its tree is killed.
    root: Pid,
    /// The marker every process of the generation carries (`KEY`, `VALUE`).
    marks: Vec<(String, String)>,
    /// How many marked processes were killed.
    done: oneshot::Sender<usize>,
}

/// The sweeper thread's queue (started on first use, lives with the process).
static QUEUE: OnceLock<Option<Mutex<Sender<Request>>>> = OnceLock::new();

/// Kills the tree of `root` and every process marked with all of `marks`;
/// returns how many marked processes were killed.
pub(crate) async fn sweep(root: Pid, marks: Vec<(String, String)>) -> usize {
    let (done, rx) = oneshot::channel();
    let req = Request { root, marks, done };
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        match std::thread::Builder::new()
            .name("herd-sweeper".into())
            .spawn(move || run(rx))
        {
            Ok(_) => Some(Mutex::new(tx)),
            Err(e) => {
                tracing::warn!("no sweeper thread ({e}): sweeps run one by one");
                None
            }
        }
    });
    let sent = match queue {
        Some(q) => q.lock().unwrap_or_else(|e| e.into_inner()).send(req),
        None => Err(mpsc::SendError(req)),
    };
    let req = match sent {
        Ok(()) => return rx.await.unwrap_or(0),
        Err(mpsc::SendError(req)) => req,
    };
    // No sweeper: this one alone, off the reactor's threads.
    tokio::task::spawn_blocking(move || serve(vec![req]))
        .await
        .unwrap_or(());
    rx.await.unwrap_or(0)
}

fn run(rx: Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        serve(batch);
    }
}

/// Sweeps a batch: the trees first, then rounds of one `/proc` walk for all
/// markers until none is found (a process may fork while a round runs).
fn serve(batch: Vec<Request>) {
    for r in &batch {
        process::signal_tree(r.root, libc::SIGKILL);
    }
    let marks: Vec<Vec<(&str, &str)>> = batch
        .iter()
        .map(|r| {
            r.marks
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .collect();
    let killed = process::kill_marked_many(&marks);
    for (r, n) in batch.into_iter().zip(killed) {
        let _ = r.done.send(n);
    }
}
