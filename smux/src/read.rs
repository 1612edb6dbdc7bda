//! The driver's read buffer: the transport is read in large chunks, many frames per
//! read, and large payload pieces are handed to streams as slices of the chunk (no
//! copy). A chunk that has been shared is replaced by a fresh one for the next read;
//! it goes back to a small per-session pool once every slice of it has been read, so
//! a busy session recycles the same few buffers instead of making the allocator map
//! and fault in new memory for every chunk.
//!
//! Memory stays bounded: a chunk is only pinned by pieces of at least
//! [`ZERO_COPY_MIN`] bytes, each of which holds as many session tokens (E.4), so pinned
//! chunks amount to at most `READ_CHUNK / ZERO_COPY_MIN` times the token bucket, and the
//! pool keeps no more chunks than the bucket can pin. A session that stops receiving
//! bulk data drops its pool and goes back to a small chunk at the next keepalive tick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Chunk size while the peer sends bulk data.
pub(crate) const READ_CHUNK: usize = 256 * 1024;
/// Chunk size of a session that receives little (most of them): a few frames.
const SMALL_CHUNK: usize = 16 * 1024;
/// Payload pieces at least this large are handed out as slices of the chunk; smaller
/// ones are copied so that they cannot pin a chunk.
pub(crate) const ZERO_COPY_MIN: usize = READ_CHUNK / 8;

/// Recycled bulk chunks of one session.
pub(crate) struct ChunkPool {
    free: Mutex<Vec<Vec<u8>>>,
    /// Most chunks kept.
    max: usize,
    /// A chunk was taken since the last idle check.
    used: AtomicBool,
}

impl ChunkPool {
    fn take(&self) -> Vec<u8> {
        self.used.store(true, Ordering::Relaxed);
        let v = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        v.unwrap_or_else(|| vec![0; READ_CHUNK])
    }

    fn put(&self, buf: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < self.max {
            free.push(buf);
        }
    }
}

/// Owner of a shared chunk: gives the buffer back to the pool when the last slice of
/// it is dropped.
struct PooledChunk {
    buf: Vec<u8>,
    pool: Arc<ChunkPool>,
}

impl AsRef<[u8]> for PooledChunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledChunk {
    fn drop(&mut self) {
        if self.buf.len() == READ_CHUNK {
            self.pool.put(std::mem::take(&mut self.buf));
        }
    }
}

/// The chunk being read into and parsed: `buf[start..filled]` is unparsed input.
pub(crate) struct Chunks {
    /// Always initialized to its full length (reads go into `buf[filled..]`).
    buf: Vec<u8>,
    /// The chunk once a slice of it was handed out; then no more reads go into it.
    frozen: Option<Bytes>,
    start: usize,
    filled: usize,
    /// The peer is sending bulk data: use (pooled) large chunks.
    big: bool,
    pool: Arc<ChunkPool>,
}

impl Chunks {
    /// `max_receive_buffer` bounds what the pool keeps.
    pub(crate) fn new(max_receive_buffer: usize) -> Self {
        let max = (max_receive_buffer / ZERO_COPY_MIN).clamp(2, 64);
        Self {
            buf: Vec::new(),
            frozen: None,
            start: 0,
            filled: 0,
            big: false,
            pool: Arc::new(ChunkPool {
                free: Mutex::new(Vec::new()),
                max,
                used: AtomicBool::new(false),
            }),
        }
    }

    fn whole(&self) -> &[u8] {
        match &self.frozen {
            Some(b) => b,
            None => &self.buf,
        }
    }

    /// Unparsed input.
    pub(crate) fn data(&self) -> &[u8] {
        self.whole()
            .get(self.start..self.filled)
            .unwrap_or_default()
    }

    pub(crate) fn len(&self) -> usize {
        self.filled - self.start
    }

    /// True if the unparsed input will have to move before the next read, so a payload
    /// cut at its end is better delivered now, in pieces: when the chunk is shared, or
    /// when `more` further bytes would not fit in it.
    pub(crate) fn must_deliver_partial(&self, more: usize) -> bool {
        let cap = self.whole().len();
        let spare = cap - self.filled;
        self.frozen.is_some() || more > spare.saturating_sub(cap / 8)
    }

    /// Discards `n` bytes of input.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.filled);
    }

    /// Takes the first `n` bytes of input: a slice of the chunk if `zero_copy`, else a
    /// copy.
    pub(crate) fn take_piece(&mut self, n: usize, zero_copy: bool) -> Bytes {
        let n = n.min(self.len());
        let range = self.start..self.start + n;
        self.start += n;
        if !zero_copy {
            return Bytes::copy_from_slice(self.whole().get(range).unwrap_or_default());
        }
        let pool = &self.pool;
        let buf = &mut self.buf;
        let frozen = self.frozen.get_or_insert_with(|| {
            Bytes::from_owner(PooledChunk {
                buf: std::mem::take(buf),
                pool: pool.clone(),
            })
        });
        frozen.slice(range)
    }

    fn new_buf(&self) -> Vec<u8> {
        if self.big {
            self.pool.take()
        } else {
            vec![0; SMALL_CHUNK]
        }
    }

    /// Makes room for the next read and returns where it goes.
    pub(crate) fn unfilled(&mut self) -> &mut [u8] {
        let want = if self.big { READ_CHUNK } else { SMALL_CHUNK };
        let cap = self.whole().len();
        let spare = cap - self.filled;
        if self.frozen.is_some() || cap < want || spare < cap / 8 {
            if self.frozen.is_none() && cap >= want {
                // Move the (small) unparsed tail to the front of this chunk.
                self.buf.copy_within(self.start..self.filled, 0);
            } else {
                let mut nb = self.new_buf();
                let tail = self.data();
                if let Some(dst) = nb.get_mut(..tail.len()) {
                    dst.copy_from_slice(tail);
                } else {
                    // Only possible with a small new chunk and a large tail.
                    nb = tail.to_vec();
                    nb.resize(tail.len() + SMALL_CHUNK, 0);
                }
                // Dropping the frozen chunk here returns it to the pool if no stream
                // holds a slice of it.
                self.frozen = None;
                self.buf = nb;
            }
            self.filled -= self.start;
            self.start = 0;
        } else if self.start == self.filled {
            self.start = 0;
            self.filled = 0;
        }
        self.buf.get_mut(self.filled..).unwrap_or_default()
    }

    /// Records `n` bytes read into [`unfilled`](Self::unfilled) (of `offered`).
    pub(crate) fn advance(&mut self, n: usize, offered: usize) {
        self.filled = (self.filled + n).min(self.buf.len());
        if n == offered && n > 0 {
            // The transport had more than we offered: the peer sends bulk data.
            self.big = true;
        }
    }

    /// Keepalive tick: a session that took no bulk chunk since the last tick drops its
    /// pool and goes back to small chunks.
    pub(crate) fn idle_tick(&mut self) {
        if self.pool.used.swap(false, Ordering::Relaxed) {
            return;
        }
        self.pool
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.big = false;
        if self.frozen.is_none() && self.start == self.filled && self.buf.len() > SMALL_CHUNK {
            self.buf = Vec::new();
            self.start = 0;
            self.filled = 0;
        }
    }
}
