//! A transport's write buffer: the chunks `write()` could not send at once, in order, plus how
//! much of the first one has gone out. Pure Rust (no Python objects): the stream transport
//! stores its chunks here and flushes them with one `sendmsg` of many `iovec`s.
//!
//! Invariants: no chunk is empty; `offset < chunks[0].len()` whenever there is a chunk;
//! `len` is the number of bytes still to send.

use std::collections::VecDeque;

/// At most this many chunks go into one `sendmsg` (Linux's IOV_MAX is 1024; more buys nothing
/// once the socket buffer is full).
pub const MAX_IOVECS: usize = 64;

pub struct WriteBuffer<C> {
    chunks: VecDeque<C>,
    offset: usize,
    len: usize,
}

impl<C> Default for WriteBuffer<C> {
    fn default() -> Self {
        Self {
            chunks: VecDeque::new(),
            offset: 0,
            len: 0,
        }
    }
}

impl<C: AsRef<[u8]>> WriteBuffer<C> {
    /// Bytes still to send.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append a chunk (empty ones are dropped).
    pub fn push(&mut self, chunk: C) {
        let n = chunk.as_ref().len();
        if n > 0 {
            self.len += n;
            self.chunks.push_back(chunk);
        }
    }

    /// Drop everything; returns the chunks so the caller can release them where it chooses.
    pub fn clear(&mut self) -> VecDeque<C> {
        self.offset = 0;
        self.len = 0;
        std::mem::take(&mut self.chunks)
    }

    /// Fill `out` with the unsent bytes, in order, as `iovec`s; returns how many were filled.
    pub fn iovecs(&self, out: &mut [libc::iovec]) -> usize {
        let mut n = 0;
        for (i, chunk) in self.chunks.iter().take(out.len()).enumerate() {
            let bytes = chunk.as_ref();
            let start = if i == 0 { self.offset } else { 0 };
            out[i] = libc::iovec {
                iov_base: bytes[start..].as_ptr() as *mut libc::c_void,
                iov_len: bytes.len() - start,
            };
            n += 1;
        }
        n
    }

    /// The first unsent bytes (for a single `send`).
    pub fn front(&self) -> Option<&[u8]> {
        self.chunks.front().map(|c| &c.as_ref()[self.offset..])
    }

    /// Mark `n` bytes as sent; returns the chunks that are now fully sent.
    pub fn consume(&mut self, mut n: usize) -> Vec<C> {
        assert!(n <= self.len, "consumed more than buffered");
        self.len -= n;
        let mut done = Vec::new();
        while n > 0 {
            let first = self.chunks.front().expect("len counts the chunks").as_ref().len() - self.offset;
            if n >= first {
                n -= first;
                self.offset = 0;
                done.push(self.chunks.pop_front().expect("checked"));
            } else {
                self.offset += n;
                n = 0;
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsent(buf: &WriteBuffer<Vec<u8>>) -> Vec<u8> {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOVECS];
        let n = buf.iovecs(&mut iov);
        let mut out = Vec::new();
        for v in &iov[..n] {
            // SAFETY: the iovecs point into chunks `buf` owns, alive for this call.
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) });
        }
        out
    }

    #[test]
    fn keeps_order_across_partial_sends() {
        let mut buf = WriteBuffer::default();
        buf.push(b"hello ".to_vec());
        buf.push(Vec::new());
        buf.push(b"big ".to_vec());
        buf.push(b"world".to_vec());
        assert_eq!(buf.len(), 15);
        assert_eq!(unsent(&buf), b"hello big world");
        assert!(buf.consume(3).is_empty());
        assert_eq!(buf.front(), Some(&b"lo "[..]));
        assert_eq!(unsent(&buf), b"lo big world");
        assert_eq!(buf.consume(7).len(), 2);
        assert_eq!(unsent(&buf), b"world");
        assert_eq!(buf.len(), 5);
        assert_eq!(buf.consume(5).len(), 1);
        assert!(buf.is_empty() && buf.front().is_none());
    }

    #[test]
    fn iovecs_are_capped() {
        let mut buf = WriteBuffer::default();
        for i in 0..(MAX_IOVECS + 10) {
            buf.push(vec![i as u8; 3]);
        }
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOVECS];
        assert_eq!(buf.iovecs(&mut iov), MAX_IOVECS);
        assert_eq!(buf.clear().len(), MAX_IOVECS + 10);
        assert!(buf.is_empty());
    }

    #[test]
    #[should_panic(expected = "consumed more than buffered")]
    fn overconsume_is_a_bug() {
        let mut buf = WriteBuffer::default();
        buf.push(vec![1u8]);
        buf.consume(2);
    }
}
