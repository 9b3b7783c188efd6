//! The master side of a PTY, non-blocking in the runtime's reactor.
//!
//! One descriptor (a duplicate of the master, `O_NONBLOCK`) is registered
//! once with tokio; a reader task and a writer task share it, so a child
//! that does not read its input never stalls the reading of its output, and
//! no thread is spent per child.

use crate::credits::{CreditToken, Credits};
use crate::pty::PtyEvent;
use bytes::Bytes;
use portable_pty::MasterPty;
use ractor::DerivedActorRef;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, oneshot};

/// Size of one read from the terminal.
const READ_CHUNK: usize = 64 * 1024;

/// The master, registered with the reactor for reading and writing.
pub(crate) type Master = Arc<AsyncFd<OwnedFd>>;

/// What the waiter needs to know of the reader to tell draining from stuck.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Bytes read so far.
    pub bytes: AtomicU64,
    /// The reader waits for the session to take earlier chunks.
    pub waiting: AtomicBool,
}

/// Our own non-blocking descriptor of the master, in the reactor.
pub(crate) fn register(master: &(dyn MasterPty + Send)) -> io::Result<Master> {
    let fd = master
        .as_raw_fd()
        .ok_or_else(|| io::Error::other("pty master has no descriptor"))?;
    // SAFETY: duplicating a descriptor we own; the copy is close-on-exec.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(dup) };
    // The flag belongs to the open file, shared with portable-pty's copy,
    // which herd uses only for ioctls (resize, foreground group).
    // SAFETY: fcntl on a descriptor we own, integer arguments only.
    let flags = unsafe { libc::fcntl(dup, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(dup, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an OwnedFd keeps its descriptor open and unchanged for as long
    // as the AsyncFd owns it.
    let fd =
        unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE | Interest::WRITABLE) }?;
    Ok(Arc::new(fd))
}

/// How a batch of reads ended.
enum Read {
    /// `n` bytes are in the buffer; more may come.
    More(usize),
    /// `n` bytes are in the buffer, and the terminal is closed (EOF, EIO:
    /// every process holding it has gone).
    Last(usize),
}

/// Waits for output, then takes all that is ready up to the buffer's size:
/// the tty hands out a few KiB per read, and a fast child should cost one
/// message per 64 KiB, not per 4 KiB.
async fn read_batch(master: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> Read {
    let mut n = 0;
    loop {
        let mut guard = match master.readable().await {
            Ok(g) => g,
            Err(_) => return Read::Last(n),
        };
        loop {
            // SAFETY: reading into the unfilled part of a buffer we own.
            let r = guard.try_io(|fd| {
                let rest = &mut buf[n..];
                let r = unsafe { libc::read(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
                if r < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(r as usize)
                }
            });
            match r {
                Ok(Ok(0)) => return Read::Last(n),
                Ok(Ok(m)) => {
                    n += m;
                    if n == buf.len() {
                        return Read::More(n);
                    }
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(_)) => return Read::Last(n),
                // Nothing more ready: readiness was cleared.
                Err(_would_block) if n > 0 => return Read::More(n),
                Err(_would_block) => break,
            }
        }
    }
}

/// Reads the child's output until the terminal closes, under the byte
/// budget, sending each batch to the session. Drops `drained` when done.
pub(crate) async fn read_loop(
    master: Master,
    session: DerivedActorRef<PtyEvent>,
    generation: u64,
    credits: Arc<Credits>,
    drained: oneshot::Sender<()>,
    progress: Arc<Progress>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let (n, last) = match read_batch(&master, &mut buf).await {
            Read::More(n) => (n, false),
            Read::Last(n) => (n, true),
        };
        if n > 0 {
            progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
            progress.waiting.store(true, Ordering::Relaxed);
            let credit = credits.acquire(n).await;
            progress.waiting.store(false, Ordering::Relaxed);
            let Some(credit) = credit else {
                break;
            };
            let msg = PtyEvent::Output {
                generation,
                data: Bytes::copy_from_slice(&buf[..n]),
                credit: CreditToken::new(credit),
            };
            if session.send_message(msg).is_err() {
                break;
            }
        }
        if last {
            break;
        }
    }
    let _ = drained.send(());
}

/// Writes queued input to the child, waiting (without blocking anything
/// else) while its terminal's input buffer is full.
pub(crate) async fn write_loop(master: Master, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(data) = rx.recv().await {
        let mut off = 0;
        while off < data.len() {
            let mut guard = match master.writable().await {
                Ok(g) => g,
                Err(e) => {
                    tracing::debug!("pty write failed: {e}");
                    return;
                }
            };
            let rest = &data[off..];
            // SAFETY: writing from a live buffer of the given length.
            let r = guard.try_io(|fd| {
                let r = unsafe { libc::write(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
                if r < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(r as usize)
                }
            });
            match r {
                Ok(Ok(m)) => off += m,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => {
                    tracing::debug!("pty write failed: {e}");
                    return;
                }
                Err(_would_block) => {}
            }
        }
    }
}
