//! The bounded output log of a session, addressed by absolute byte offsets.

use bytes::Bytes;
use std::collections::VecDeque;

/// A chunk smaller than this is copied into the open tail instead of being
/// kept as it came: a session that writes a byte at a time must not hold one
/// shared buffer (and its bookkeeping) per byte.
const SMALL: usize = 1024;

/// The open tail becomes a shared chunk of its own at this size.
const TAIL_MAX: usize = 4096;

/// The last `capacity` bytes a session wrote, with offsets that count every
/// byte since the session was created, so a reader can resume where it left off.
///
/// Large chunks are kept as the buffers the reader handed over (shared with
/// the recorder and the viewers, not copied); small ones are gathered in an
/// open tail.
#[derive(Debug)]
pub(crate) struct OutputLog {
    /// Whole chunks, oldest first; they come before `tail`.
    chunks: VecDeque<Bytes>,
    /// Small chunks gathered since the last whole chunk.
    tail: Vec<u8>,
    /// Bytes held in `chunks` and `tail`.
    len: usize,
    capacity: usize,
    /// Absolute offset of the oldest byte held.
    start: u64,
}

/// A read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSlice {
    /// Absolute offset of the first byte returned.
    pub start: u64,
    /// Absolute offset just past the last byte returned: pass it as `since` next time.
    pub end: u64,
    /// True when bytes the reader asked for were already dropped from the buffer.
    pub truncated: bool,
    /// The bytes.
    pub data: Vec<u8>,
}

impl OutputLog {
    /// An empty log keeping at most `capacity` bytes (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            tail: Vec::new(),
            len: 0,
            capacity: capacity.max(1),
            start: 0,
        }
    }

    /// Appends output, dropping the oldest bytes beyond the capacity.
    pub(crate) fn push(&mut self, data: &Bytes) {
        if data.len() > self.capacity {
            let skip = data.len() - self.capacity;
            self.start += self.len as u64 + skip as u64;
            self.chunks.clear();
            self.tail = Vec::new();
            self.chunks.push_back(data.slice(skip..));
            self.len = self.capacity;
            return;
        }
        if data.len() < SMALL {
            self.tail.extend_from_slice(data);
            if self.tail.len() >= TAIL_MAX {
                self.close_tail();
            }
        } else if !data.is_empty() {
            self.close_tail();
            self.chunks.push_back(data.clone());
        }
        self.len += data.len();
        self.trim();
    }

    /// Moves the open tail into the chunks.
    fn close_tail(&mut self) {
        if !self.tail.is_empty() {
            let tail = std::mem::take(&mut self.tail);
            self.chunks.push_back(Bytes::from(tail));
        }
    }

    /// Drops the oldest bytes beyond the capacity.
    fn trim(&mut self) {
        let mut over = self.len.saturating_sub(self.capacity);
        self.len -= over;
        self.start += over as u64;
        while over > 0 {
            match self.chunks.front_mut() {
                Some(front) if front.len() <= over => {
                    over -= front.len();
                    self.chunks.pop_front();
                }
                Some(front) => {
                    *front = front.slice(over..);
                    over = 0;
                }
                None => {
                    self.tail.drain(..over);
                    over = 0;
                }
            }
        }
    }

    /// Drops every byte held and frees the memory; offsets go on from the end.
    pub(crate) fn release(&mut self) {
        self.start = self.end();
        self.chunks = VecDeque::new();
        self.tail = Vec::new();
        self.len = 0;
    }

    /// Absolute offset just past the newest byte.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.len as u64
    }

    /// Absolute offset of the oldest byte still held.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// Bytes from `since` (clamped to what is held) up to at most `limit` bytes.
    pub(crate) fn read(&self, since: u64, limit: usize) -> OutputSlice {
        let truncated = since < self.start;
        let from = since.clamp(self.start, self.end());
        let mut skip = (from - self.start) as usize;
        let take = (self.len - skip).min(limit);
        let mut data = Vec::with_capacity(take);
        let segments = self.chunks.iter().map(|c| &c[..]).chain([&self.tail[..]]);
        for seg in segments {
            if data.len() == take {
                break;
            }
            if skip >= seg.len() {
                skip -= seg.len();
                continue;
            }
            let n = (seg.len() - skip).min(take - data.len());
            data.extend_from_slice(&seg[skip..skip + n]);
            skip = 0;
        }
        OutputSlice {
            start: from,
            end: from + take as u64,
            truncated,
            data,
        }
    }

    /// The last `n` bytes held (or fewer).
    #[cfg(test)]
    fn tail(&self, n: usize) -> OutputSlice {
        let since = self.end().saturating_sub(n as u64).max(self.start);
        self.read(since, n)
    }
}

#[cfg(test)]
mod tests {
    use super::OutputLog;
    use bytes::Bytes;

    fn push(log: &mut OutputLog, data: &[u8]) {
        log.push(&Bytes::copy_from_slice(data));
    }

    #[test]
    fn keeps_the_newest_bytes_with_absolute_offsets() {
        let mut log = OutputLog::new(8);
        push(&mut log, b"hello");
        push(&mut log, b" world");
        assert_eq!(log.start(), 3);
        assert_eq!(log.end(), 11);
        let r = log.read(0, usize::MAX);
        assert!(r.truncated);
        assert_eq!(r.data, b"lo world");
        assert_eq!((r.start, r.end), (3, 11));
        let r = log.read(5, 3);
        assert_eq!(r.data, b" wo");
        assert!(!r.truncated);
        assert_eq!(log.read(11, 10).data, b"");
        assert_eq!(log.read(99, 10).end, 11);
        assert_eq!(log.tail(3).data, b"rld");
    }

    #[test]
    fn a_chunk_larger_than_capacity_keeps_its_tail() {
        let mut log = OutputLog::new(4);
        push(&mut log, b"ab");
        push(&mut log, b"0123456789");
        assert_eq!(log.read(0, 100).data, b"6789");
        assert_eq!(log.end(), 12);
        assert_eq!(log.start(), 8);
    }

    #[test]
    fn wrapped_buffer_reads_across_both_halves() {
        let mut log = OutputLog::new(6);
        for chunk in [&b"abcd"[..], b"ef", b"gh", b"ij"] {
            push(&mut log, chunk);
        }
        assert_eq!(log.read(0, 100).data, b"efghij");
        assert_eq!(log.read(5, 3).data, b"fgh");
    }

    #[test]
    fn large_chunks_are_shared_small_ones_gathered_and_reads_match_a_plain_copy() {
        let cap = 10_000;
        let mut log = OutputLog::new(cap);
        let mut all = Vec::new();
        let mut x = 7u32;
        for i in 0..400 {
            // A mix of one-byte echoes, small lines and large batches.
            let n = match i % 7 {
                0 => 5_000,
                1 | 2 => 1,
                3 => 1_500,
                _ => 40,
            };
            let chunk: Vec<u8> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (x >> 16) as u8
                })
                .collect();
            let shared = Bytes::from(chunk.clone());
            log.push(&shared);
            all.extend_from_slice(&chunk);
            if n >= super::SMALL {
                // Kept as it came: the same buffer, not a copy.
                let back = log.chunks.back().unwrap();
                assert!(back.len() < n || back.as_ptr() == shared.as_ptr());
            }
            assert_eq!(log.end(), all.len() as u64);
            let held = (all.len()).min(cap);
            assert_eq!(log.start(), (all.len() - held) as u64);
            assert_eq!(log.read(0, usize::MAX).data, &all[all.len() - held..]);
            let mid = log.start() + held as u64 / 3;
            let r = log.read(mid, 777);
            let at = mid as usize;
            assert_eq!(r.data, &all[at..(at + 777).min(all.len())]);
            // The bookkeeping stays bounded: no entry per tiny chunk.
            assert!(
                log.chunks.len() <= cap / super::SMALL + 2,
                "{}",
                log.chunks.len()
            );
        }
        log.release();
        assert_eq!(log.read(0, 10).data, b"");
        assert_eq!(log.end(), all.len() as u64);
    }
}
