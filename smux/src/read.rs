//! Recycled receive buffers for large PSH payloads.
//!
//! The driver reads a large payload into a buffer of its own and hands it to the
//! stream without copying; the reader frees it once the application has read it. With
//! a fresh allocation per frame the allocator gave those pages back to the kernel and
//! faulted them in again for the next frame: on loopback, most of the receive cost of
//! 64 busy streams was page faults in the kernel's copy into new buffers. So the
//! buffers come from, and go back to, a small per-session pool.
//!
//! Memory: buffers are `max_frame_size + 2 * HEADER_SIZE` bytes and used only for
//! payloads of at least half that ([`RecvPool::fits`]), so a pinned buffer holds at least
//! half its size in session tokens (E.4); the pool keeps at most [`POOL_MAX`] free
//! buffers, and the driver empties it once no buffer was taken for a second
//! ([`POOL_IDLE`]), so an idle session keeps none.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::frame::HEADER_SIZE;

/// Free buffers kept at most.
pub(crate) const POOL_MAX: usize = 32;

/// The pool is emptied once no buffer was taken for this long.
pub(crate) const POOL_IDLE: Duration = Duration::from_secs(1);

pub(crate) struct RecvPool {
    free: Mutex<Vec<Vec<u8>>>,
    /// Buffers in `free` (read without the lock).
    count: AtomicUsize,
    /// Size of every buffer.
    size: usize,
    /// A buffer was taken since the last idle check.
    used: AtomicBool,
    /// The session ended: returned buffers are freed.
    closed: AtomicBool,
}

impl RecvPool {
    pub(crate) fn new(max_frame_size: usize) -> Arc<Self> {
        Arc::new(Self {
            free: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            size: max_frame_size + 2 * HEADER_SIZE,
            used: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Is a read of `want` bytes worth a pooled buffer?
    pub(crate) fn fits(&self, want: usize) -> bool {
        want <= self.size && want >= self.size / 2
    }

    /// A buffer of [`size`](Self::size) initialized bytes.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.used.store(true, Ordering::Relaxed);
        let v = if self.count.load(Ordering::Relaxed) > 0 {
            let mut free = self.lock();
            let v = free.pop();
            self.count.store(free.len(), Ordering::Relaxed);
            v
        } else {
            None
        };
        v.unwrap_or_else(|| vec![0; self.size])
    }

    fn put(&self, buf: Vec<u8>) {
        if buf.len() != self.size || self.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut free = self.lock();
        if free.len() < POOL_MAX {
            free.push(buf);
            self.count.store(free.len(), Ordering::Relaxed);
        }
    }

    pub(crate) fn has_free(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Idle check: empties the pool unless a buffer was taken since the last check.
    /// Returns true if it still holds buffers.
    pub(crate) fn idle_tick(&self) -> bool {
        if !self.used.swap(false, Ordering::Relaxed) {
            self.clear();
        }
        self.has_free()
    }

    pub(crate) fn clear(&self) {
        let mut free = self.lock();
        free.clear();
        free.shrink_to_fit();
        self.count.store(0, Ordering::Relaxed);
    }

    /// The session ended.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.clear();
    }
}

/// Owner of a pooled buffer handed out as [`Bytes`]: goes back to the pool when the
/// last slice of it is dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<RecvPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.buf));
    }
}

/// A large PSH frame being read into a pooled buffer: `buf[..filled]` holds its header,
/// (part of) its payload and possibly the next frame's first bytes (at most `want`).
pub(crate) struct DirectRead {
    pub(crate) sid: u32,
    pub(crate) buf: Vec<u8>,
    pub(crate) filled: usize,
    /// Header, payload and the next header: what a read may fill up to.
    pub(crate) want: usize,
    /// Header and payload.
    pub(crate) frame_len: usize,
}

impl DirectRead {
    /// Starts with the `have` bytes already buffered (the frame's header and possibly
    /// the start of its payload, less than the whole frame).
    pub(crate) fn new(pool: &RecvPool, have: &[u8], sid: u32, payload_len: usize) -> Self {
        let mut buf = pool.take();
        let frame_len = HEADER_SIZE + payload_len;
        let want = (frame_len + HEADER_SIZE).min(buf.len());
        debug_assert!(have.len() < frame_len);
        if let Some(dst) = buf.get_mut(..have.len()) {
            dst.copy_from_slice(have);
        }
        Self {
            sid,
            buf,
            filled: have.len(),
            want,
            frame_len,
        }
    }

    pub(crate) fn complete(&self) -> bool {
        self.filled >= self.frame_len
    }

    /// Where the next read goes.
    pub(crate) fn unfilled(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.filled..self.want).unwrap_or_default()
    }

    /// The payload (a slice of the pooled buffer) and the bytes read beyond the frame.
    pub(crate) fn finish(self, pool: &Arc<RecvPool>) -> (Bytes, Vec<u8>) {
        debug_assert!(self.complete());
        let extra = self
            .buf
            .get(self.frame_len..self.filled)
            .unwrap_or_default()
            .to_vec();
        let whole = Bytes::from_owner(Pooled {
            buf: self.buf,
            pool: pool.clone(),
        });
        (whole.slice(HEADER_SIZE..self.frame_len), extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_idle_pool_empties() {
        let pool = RecvPool::new(1000);
        let hdr = [0u8; HEADER_SIZE];
        let mut d = DirectRead::new(&pool, &hdr, 3, 900);
        assert_eq!(d.unfilled().len(), 900 + HEADER_SIZE);
        d.unfilled().fill(5);
        d.filled = d.want;
        let (payload, extra) = d.finish(&pool);
        assert_eq!(payload.len(), 900);
        assert!(payload.iter().all(|&b| b == 5));
        assert_eq!(extra, vec![5; HEADER_SIZE]);
        assert!(!pool.has_free());
        drop(payload);
        assert!(pool.has_free());
        // Taken since the last tick: kept; then idle: emptied.
        assert!(pool.idle_tick());
        assert!(!pool.idle_tick());
        let _ = pool.take();
        pool.close();
        assert!(!pool.has_free());
    }
}
