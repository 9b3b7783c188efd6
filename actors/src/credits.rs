//! Backpressure between a PTY reader task and an actor's unbounded mailbox.
//!
//! The reader takes credits (bytes) before it sends a chunk; the chunk carries
//! a [`Credit`] that gives them back when it is dropped, i.e. once the actor
//! has handled it (or discarded it with its mailbox). A flooding child thus
//! blocks in `write` once `capacity` bytes are in flight (the reader stops
//! reading while it waits), and memory stays bounded.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A byte budget shared by one reader and its consumer.
#[derive(Debug)]
pub(crate) struct Credits {
    capacity: usize,
    // A semaphore of bytes: waiting for one costs no thread.
    bytes: Arc<Semaphore>,
}

impl Credits {
    /// A budget of `capacity` bytes in flight.
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            capacity,
            bytes: Arc::new(Semaphore::new(capacity)),
        })
    }

    /// Waits until `n` bytes fit (a chunk larger than the budget waits for an
    /// empty pipe). Returns `None` once the budget is closed.
    pub(crate) async fn acquire(&self, n: usize) -> Option<Credit> {
        let n = u32::try_from(n.clamp(1, self.capacity)).unwrap_or(u32::MAX);
        Arc::clone(&self.bytes)
            .acquire_many_owned(n)
            .await
            .ok()
            .map(Credit)
    }

    /// Wakes and refuses every waiter from now on.
    pub(crate) fn close(&self) {
        self.bytes.close();
    }
}

/// Bytes in flight; returned to the budget on drop.
#[derive(Debug)]
pub(crate) struct Credit(#[allow(dead_code)] OwnedSemaphorePermit);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_until_released_and_close_wakes() {
        let c = Credits::new(10);
        let a = c.acquire(8).await.unwrap();
        let c2 = Arc::clone(&c);
        let mut t = tokio::spawn(async move { c2.acquire(5).await.map(|_| ()) });
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), &mut t)
                .await
                .is_err(),
            "must wait while the budget is full"
        );
        drop(a);
        assert_eq!(t.await.unwrap(), Some(()));
        // Larger than the budget: waits for an empty budget, then passes.
        let _b = c.acquire(100).await.unwrap();
        let c3 = Arc::clone(&c);
        let t = tokio::spawn(async move { c3.acquire(1).await.is_none() });
        c.close();
        assert!(t.await.unwrap());
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
