//! The HTTP server loop: a cap on connections, timeouts, and a clear answer
//! when the daemon runs short of file descriptors.
//!
//! - Up to `max_connections` connections are served normally. Past that, up
//!   to half as many more get a short leash (one request, a 2 s header
//!   timeout). Past that, the oldest connection that has not yet sent a
//!   whole request head is dropped to make room, so a flood of slow clients
//!   can never keep a quick one (a health check) from its answer; only when
//!   every connection is busy with a request is a newcomer refused (503).
//! - Headers must arrive within `header_timeout`; it also closes keep-alive
//!   connections idle that long (hyper starts the timer as soon as it waits
//!   for the next request). Request bodies have `body_timeout` (see the router).
//! - When `accept` fails for want of descriptors, a reserved descriptor is
//!   freed to accept the waiting connection and answer it 503, instead of
//!   leaving every client hanging in the backlog.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Header timeout of a connection over the cap.
const LEASH: Duration = Duration::from_secs(2);
/// How long shutdown waits for open connections to finish.
const DRAIN: Duration = Duration::from_secs(10);

/// Connection limits of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served normally at once.
    pub max_connections: usize,
    /// Time to send a request's head, and the most a keep-alive connection idles.
    pub header_timeout: Duration,
}

/// Raises this process's open-file limit to its hard limit: a daemon with
/// many sessions and clients needs descriptors. Returns the new soft limit.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// A descriptor kept in reserve for the moment all others are used.
struct Reserve(Option<std::fs::File>);

impl Reserve {
    fn open() -> Self {
        Self(std::fs::File::open("/dev/null").ok())
    }
    fn release(&mut self) {
        self.0 = None;
    }
    fn restore(&mut self) {
        if self.0.is_none() {
            self.0 = std::fs::File::open("/dev/null").ok();
        }
    }
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// A connection being served: whether it sent a whole request head yet.
struct Slot {
    started: std::time::Instant,
    served: Arc<AtomicBool>,
    abort: tokio::task::AbortHandle,
}

/// The open connections, to find a slow one to drop.
type Slots = Arc<Mutex<HashMap<u64, Slot>>>;

/// Drops the oldest connection that has not sent a whole request head;
/// false if every connection is serving a request.
fn evict_slowest(slots: &Slots) -> bool {
    let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
    let victim = slots
        .iter()
        .filter(|(_, s)| !s.served.load(Ordering::Acquire))
        .min_by_key(|(_, s)| s.started)
        .map(|(id, _)| *id);
    match victim.and_then(|id| slots.remove(&id)) {
        Some(slot) => {
            slot.abort.abort();
            true
        }
        None => false,
    }
}

/// The API service, marking its connection served at its first request.
#[derive(Clone)]
struct Marked<S> {
    inner: S,
    served: Arc<AtomicBool>,
}

impl<S, R> hyper::service::Service<R> for Marked<S>
where
    S: hyper::service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: R) -> Self::Future {
        self.served.store(true, Ordering::Release);
        self.inner.call(req)
    }
}

/// Answers a connection that cannot be served with a 503 and closes it.
/// With `drain`, reads what the client sent before closing (closing with
/// unread bytes resets the connection, and the client may lose the answer);
/// without, closes at once (when out of descriptors, every moment counts).
async fn refuse(mut stream: TcpStream, code: &str, message: &str, drain: bool) {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        if drain {
            let mut sink = [0u8; 4096];
            use tokio::io::AsyncReadExt;
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    })
    .await;
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open
/// connections finish (up to 10 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let normal = Arc::new(Semaphore::new(limits.max_connections));
    let extra = limits.max_connections.div_ceil(2).max(1);
    let leashed = Arc::new(Semaphore::new(extra));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut reserve = Reserve::open();
    let slots: Slots = Arc::default();
    let mut next_id: u64 = 0;
    let mut warned_fds: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) if out_of_descriptors(&e) => {
                if warned_fds.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    warned_fds = Some(std::time::Instant::now());
                    tracing::error!("out of file descriptors: answering new connections 503 until some are free");
                }
                reserve.release();
                if let Ok(Ok((s, _))) =
                    tokio::time::timeout(Duration::from_millis(100), listener.accept()).await
                {
                    refuse(
                        s,
                        "out_of_descriptors",
                        "the daemon is out of file descriptors; try again shortly",
                        false,
                    )
                    .await;
                }
                reserve.restore();
                // Give sessions a moment to free some before the next try.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(e) => {
                tracing::debug!("accept failed: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (permit, leash) = match normal.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match leashed.clone().try_acquire_owned() {
                Ok(p) => (p, true),
                Err(_) => {
                    // Make room by dropping the slowest client, if one is only
                    // trickling its head; its permit returns as its task ends.
                    let freed = if evict_slowest(&slots) {
                        // The victim held a normal or a leashed slot.
                        let either = async {
                            tokio::select! {
                                p = normal.clone().acquire_owned() => p.ok().map(|p| (p, false)),
                                p = leashed.clone().acquire_owned() => p.ok().map(|p| (p, true)),
                            }
                        };
                        tokio::time::timeout(Duration::from_millis(200), either)
                            .await
                            .ok()
                            .flatten()
                    } else {
                        None
                    };
                    match freed {
                        Some(p) => p,
                        None => {
                            tokio::spawn(refuse(
                                stream,
                                "too_many_connections",
                                "the daemon serves its maximum of connections (server.max_connections); try again shortly",
                                true,
                            ));
                            continue;
                        }
                    }
                }
            },
        };
        let app = app.clone();
        let mut stop = stop_rx.clone();
        let served = Arc::new(AtomicBool::new(false));
        let marked = served.clone();
        next_id += 1;
        let id = next_id;
        let registry = slots.clone();
        let (listed, is_listed) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Listed in `slots` first, so its removal below cannot come before.
            let _ = is_listed.await;
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .max_buf_size(MAX_HEAD)
                .header_read_timeout(if leash { LEASH } else { limits.header_timeout })
                .keep_alive(!leash);
            let svc = Marked {
                inner: TowerToHyperService::new(app),
                served: marked,
            };
            let conn = b
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn).await;
                }
            }
            registry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            drop(permit);
        });
        slots.lock().unwrap_or_else(|e| e.into_inner()).insert(
            id,
            Slot {
                started: std::time::Instant::now(),
                served,
                abort: task.abort_handle(),
            },
        );
        let _ = listed.send(());
    }
    let _ = stop_tx.send(true);
    let all = limits.max_connections as u32;
    let _ = tokio::time::timeout(DRAIN, normal.acquire_many(all)).await;
}
