//! The bounded output log of a session, addressed by absolute byte offsets.

use std::collections::VecDeque;

/// The last `capacity` bytes a session wrote, with offsets that count every
/// byte since the session was created, so a reader can resume where it left off.
#[derive(Debug)]
pub(crate) struct OutputLog {
    buf: VecDeque<u8>,
    capacity: usize,
    /// Absolute offset of `buf[0]`.
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
            buf: VecDeque::new(),
            capacity: capacity.max(1),
            start: 0,
        }
    }

    /// Appends output, dropping the oldest bytes beyond the capacity.
    pub(crate) fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.capacity {
            let skip = data.len() - self.capacity;
            self.start += self.buf.len() as u64 + skip as u64;
            self.buf.clear();
            &data[skip..]
        } else {
            data
        };
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.capacity);
        if overflow > 0 {
            self.buf.drain(..overflow);
            self.start += overflow as u64;
        }
        self.buf.extend(data);
    }

    /// Drops every byte held and frees the memory; offsets go on from the end.
    pub(crate) fn release(&mut self) {
        self.start = self.end();
        self.buf = VecDeque::new();
    }

    /// Absolute offset just past the newest byte.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// Absolute offset of the oldest byte still held.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// Bytes from `since` (clamped to what is held) up to at most `limit` bytes.
    pub(crate) fn read(&self, since: u64, limit: usize) -> OutputSlice {
        let truncated = since < self.start;
        let from = since.clamp(self.start, self.end());
        let skip = (from - self.start) as usize;
        let take = (self.buf.len() - skip).min(limit);
        let (a, b) = self.buf.as_slices();
        let mut data = Vec::with_capacity(take);
        if skip < a.len() {
            let n = take.min(a.len() - skip);
            data.extend_from_slice(&a[skip..skip + n]);
            data.extend_from_slice(&b[..take - n]);
        } else {
            let s = skip - a.len();
            data.extend_from_slice(&b[s..s + take]);
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

    #[test]
    fn keeps_the_newest_bytes_with_absolute_offsets() {
        let mut log = OutputLog::new(8);
        log.push(b"hello");
        log.push(b" world");
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
        log.push(b"ab");
        log.push(b"0123456789");
        assert_eq!(log.read(0, 100).data, b"6789");
        assert_eq!(log.end(), 12);
        assert_eq!(log.start(), 8);
    }

    #[test]
    fn wrapped_buffer_reads_across_both_halves() {
        let mut log = OutputLog::new(6);
        for chunk in [&b"abcd"[..], b"ef", b"gh", b"ij"] {
            log.push(chunk);
        }
        assert_eq!(log.read(0, 100).data, b"efghij");
        assert_eq!(log.read(5, 3).data, b"fgh");
    }
}
