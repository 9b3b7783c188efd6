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
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, oneshot};

/// Size of one read from the terminal.
const READ_CHUNK: usize = 64 * 1024;

/// A batch at least this large becomes the chunk itself (its buffer trimmed
/// in place, no copy); a smaller one is copied out, so that a prompt of a few
/// bytes does not pin a 64 KiB buffer in the output log.
const HAND_OVER: usize = 16 * 1024;

/// The master, registered with the reactor for reading and writing.
pub(crate) type Master = Arc<AsyncFd<MasterFd>>;

/// portable-pty's master (for its ioctls: resize, foreground group) and its
/// descriptor, which the reactor watches: one descriptor per session, not a
/// duplicate (at 4,000 sessions the daemon's descriptors are counted). It is
/// closed when the last task using it lets go, after the reactor did.
pub(crate) struct MasterFd {
    pty: Mutex<Box<dyn MasterPty + Send>>,
    fd: RawFd,
}

impl MasterFd {
    /// portable-pty's side of the master.
    pub(crate) fn pty(&self) -> MutexGuard<'_, Box<dyn MasterPty + Send>> {
        crate::handle::lock(&self.pty)
    }
}

impl AsRawFd for MasterFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

/// What the waiter needs to know of the reader to tell draining from stuck.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Bytes read so far.
    pub bytes: AtomicU64,
    /// The reader waits for the session to take earlier chunks.
    pub waiting: AtomicBool,
}

/// The master made non-blocking and registered with the reactor.
pub(crate) fn register(master: Box<dyn MasterPty + Send>) -> io::Result<Master> {
    let fd = master
        .as_raw_fd()
        .ok_or_else(|| io::Error::other("pty master has no descriptor"))?;
    // portable-pty uses the descriptor only for ioctls, which do not care.
    // SAFETY: fcntl on a descriptor the master owns, integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let master = MasterFd {
        pty: Mutex::new(master),
        fd,
    };
    // SAFETY: the descriptor stays open and unchanged as long as the
    // AsyncFd owns the MasterFd, whose portable-pty master owns it.
    let fd = unsafe {
        AsyncFd::register_with_interest(master, Interest::READABLE | Interest::WRITABLE)
    }?;
    Ok(Arc::new(fd))
}

/// How a batch of reads ended.
enum Read {
    /// The buffer holds what was read; more may come.
    More,
    /// The buffer holds what was read, and the terminal is closed (EOF, EIO:
    /// every process holding it has gone).
    Last,
}

/// Waits for output, then takes all that is ready up to [`READ_CHUNK`]
/// bytes, appended to `buf`: the tty hands out a few KiB per read, and a
/// fast child should cost one message per 64 KiB, not per 4 KiB. The buffer
/// is allocated only once output is ready, so an idle session holds none.
async fn read_batch(master: &AsyncFd<MasterFd>, buf: &mut Vec<u8>) -> Read {
    loop {
        let mut guard = match master.readable().await {
            Ok(g) => g,
            Err(_) => return Read::Last,
        };
        if buf.capacity() < READ_CHUNK {
            buf.reserve_exact(READ_CHUNK - buf.len());
        }
        loop {
            let r = guard.try_io(|fd| {
                let want = READ_CHUNK - buf.len();
                let rest = &mut buf.spare_capacity_mut()[..want];
                // SAFETY: reading into the spare capacity of a buffer we own,
                // no further than its length; the kernel initialises what it
                // reports as read.
                let r = unsafe { libc::read(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
                if r < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(r as usize)
                }
            });
            match r {
                Ok(Ok(0)) => return Read::Last,
                Ok(Ok(m)) => {
                    // SAFETY: the read initialised `m` more bytes, within capacity.
                    unsafe { buf.set_len(buf.len() + m) };
                    if buf.len() == READ_CHUNK {
                        return Read::More;
                    }
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(_)) => return Read::Last,
                // Nothing more ready: readiness was cleared.
                Err(_would_block) if !buf.is_empty() => return Read::More,
                Err(_would_block) => break,
            }
        }
    }
}

/// The batch in `buf` as one shared buffer, leaving `buf` empty: a large
/// batch is handed over as it is, a small one copied (see [`HAND_OVER`]).
fn take_chunk(buf: &mut Vec<u8>) -> Bytes {
    if buf.len() >= HAND_OVER {
        let mut full = std::mem::take(buf);
        // Shrinking gives the unused tail back without moving the bytes.
        full.shrink_to_fit();
        Bytes::from(full)
    } else {
        let chunk = Bytes::copy_from_slice(buf);
        // Freed: an idle session keeps no read buffer.
        *buf = Vec::new();
        chunk
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
    let mut buf = Vec::new();
    loop {
        let last = matches!(read_batch(&master, &mut buf).await, Read::Last);
        let n = buf.len();
        if n > 0 {
            let data = take_chunk(&mut buf);
            progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
            progress.waiting.store(true, Ordering::Relaxed);
            let credit = credits.acquire(n).await;
            progress.waiting.store(false, Ordering::Relaxed);
            let Some(credit) = credit else {
                break;
            };
            let msg = PtyEvent::Output {
                generation,
                data,
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
