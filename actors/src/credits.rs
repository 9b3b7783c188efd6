//! Backpressure between a blocking reader thread and an actor's unbounded mailbox.
//!
//! The reader takes credits (bytes) before it sends a chunk; the chunk carries
//! a [`Credit`] that gives them back when it is dropped, i.e. once the actor
//! has handled it (or discarded it with its mailbox). A flooding child thus
//! blocks in `write` once `capacity` bytes are in flight, and memory stays bounded.

use std::sync::{Arc, Condvar, Mutex};

#[derive(Debug, Default)]
struct Inner {
    in_flight: usize,
    closed: bool,
    /// Readers blocked in `acquire`: only then is a release worth a wake-up.
    waiting: usize,
}

/// A byte budget shared by one reader and its consumer.
#[derive(Debug)]
pub(crate) struct Credits {
    capacity: usize,
    inner: Mutex<Inner>,
    freed: Condvar,
}

impl Credits {
    /// A budget of `capacity` bytes in flight.
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            inner: Mutex::default(),
            freed: Condvar::new(),
        })
    }

    /// Blocks until `n` bytes fit (a chunk larger than the budget waits for an
    /// empty pipe). Returns `None` once the budget is closed.
    pub(crate) fn acquire(self: &Arc<Self>, n: usize) -> Option<Credit> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if g.closed {
                return None;
            }
            if g.in_flight == 0 || g.in_flight + n <= self.capacity {
                g.in_flight += n;
                return Some(Credit {
                    credits: Arc::clone(self),
                    n,
                });
            }
            g.waiting += 1;
            g = self.freed.wait(g).unwrap_or_else(|e| e.into_inner());
            g.waiting -= 1;
        }
    }

    /// Wakes and refuses every waiter from now on.
    pub(crate) fn close(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.closed = true;
        self.freed.notify_all();
    }

    fn release(&self, n: usize) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.in_flight = g.in_flight.saturating_sub(n);
        if g.waiting > 0 {
            self.freed.notify_all();
        }
    }
}

/// Bytes in flight; returned to the budget on drop.
#[derive(Debug)]
pub(crate) struct Credit {
    credits: Arc<Credits>,
    n: usize,
}

impl Drop for Credit {
    fn drop(&mut self) {
        self.credits.release(self.n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn blocks_until_released_and_close_wakes() {
        let c = Credits::new(10);
        let a = c.acquire(8).unwrap();
        let c2 = Arc::clone(&c);
        let t = std::thread::spawn(move || c2.acquire(5).map(|_| ()));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!t.is_finished(), "must wait while the budget is full");
        drop(a);
        assert_eq!(t.join().unwrap(), Some(()));
        let _b = c.acquire(10).unwrap();
        let c3 = Arc::clone(&c);
        let t = std::thread::spawn(move || c3.acquire(1).is_none());
        c.close();
        assert!(t.join().unwrap());
    }
}

/// A chunk's share of an output budget, carried with the chunk wherever it
/// goes (the session, the recorder) and released when the last holder drops it.
#[derive(Debug)]
pub struct CreditToken(#[allow(dead_code)] Credit);

impl CreditToken {
    /// Wraps a credit taken by a reader.
    pub(crate) fn new(credit: Credit) -> Self {
        Self(credit)
    }
}
