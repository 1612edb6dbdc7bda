//! State shared between the driver task and the user handles.
//!
//! One mutex guards everything: the driver takes it once per batch of parsed frames and
//! once per batch of frames it gathers for writing, stream handles take it once per
//! read/write call, so it is held for short, bounded stretches (a copy of at most one
//! user buffer). Wakers are collected under the lock and woken after it is released.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;

use crate::config::Config;
use crate::error::Error;
use crate::frame::{self, Cmd, HEADER_SIZE};

/// Window Go assumes for the peer until the first UPD arrives (E.5 `initialPeerWindow`).
pub(crate) const INITIAL_PEER_WINDOW: u32 = 262_144;

/// Starting advertised window when auto-tuning (capped by `max_stream_buffer`).
pub(crate) const AUTOTUNE_INITIAL_WINDOW: u32 = 65_536;

/// Smallest window the fair-share cap ever advertises.
pub(crate) const MIN_WINDOW: u32 = 4096;

pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
    /// Wakes the driver: new frames to send, tokens returned, backlog freed, close.
    pub(crate) driver: AtomicWaker,
    pub(crate) config: Config,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock can only come from a bug in this crate; the
        // state is still structurally valid, so keep going rather than poisoning
        // every handle.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Entry of the write shaper: a stream with frames waiting, keyed by how much it has
/// sent (E.6 `prio`), compared wrap-aware like Go's `_itimediff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendEntry {
    pub(crate) prio: u32,
    pub(crate) seq: u64,
    pub(crate) sid: u32,
}

impl Ord for SendEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap pops the greatest: "greater" means "goes first".
        let d = other.prio.wrapping_sub(self.prio) as i32;
        match d.cmp(&0) {
            Ordering::Greater => Ordering::Greater,
            Ordering::Less => Ordering::Less,
            Ordering::Equal => other.seq.cmp(&self.seq),
        }
    }
}

impl PartialOrd for SendEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

pub(crate) struct StreamState {
    /// Received payloads not yet read.
    pub(crate) recv: VecDeque<Bytes>,
    pub(crate) recv_len: usize,
    pub(crate) read_waker: Option<Waker>,
    /// A writer waiting for send space / window, or a flush/shutdown waiting for the
    /// pending frames to be handed to the transport.
    pub(crate) write_waker: Option<Waker>,
    pub(crate) fin_received: bool,
    pub(crate) fin_queued: bool,
    /// Live handles (the stream, or its two halves; 1 while in the accept queue).
    pub(crate) handles: usize,
    /// Every handle is gone: the stream only waits for its last frames to be written.
    pub(crate) dropped: bool,
    /// Encoded frames (header + payload) committed by writes, not yet taken by the
    /// driver. Whole frames only, so the driver can split them off without copying.
    pub(crate) pending: FrameQueue,
    /// Payload bytes in `pending`.
    pub(crate) pending_bytes: usize,
    pub(crate) in_heap: bool,
    /// Shaper priority: frames sent (v1) or bytes sent (v2).
    pub(crate) prio: u32,
    /// v2 sender: bytes accepted from the application (>= `sent`).
    pub(crate) committed: u32,
    /// v2 sender: bytes taken by the driver for the transport (Go's `numWritten`).
    pub(crate) sent: u32,
    pub(crate) peer_consumed: u32,
    pub(crate) peer_window: u32,
    /// v2 receiver (Go's `numRead`, `incr`).
    pub(crate) num_read: u32,
    pub(crate) incr: u32,
    /// v2 receiver: window we advertise (auto-tuned or `max_stream_buffer`).
    pub(crate) window: u32,
    /// v2 receiver: total payload bytes received (wrapping).
    pub(crate) recv_total: u32,
    /// v2 receiver: the peer may send up to this many bytes in total (wrapping) given
    /// the last UPD we sent (or Go's initial 256 KiB guess before any).
    pub(crate) peer_limit: u32,
    /// Write-side error specific to this stream (ErrConsumed).
    pub(crate) error: Option<Error>,
}

impl StreamState {
    pub(crate) fn new(window: u32) -> Self {
        Self {
            recv: VecDeque::new(),
            recv_len: 0,
            read_waker: None,
            write_waker: None,
            fin_received: false,
            fin_queued: false,
            handles: 1,
            dropped: false,
            pending: FrameQueue::default(),
            pending_bytes: 0,
            in_heap: false,
            prio: 0,
            committed: 0,
            sent: 0,
            peer_consumed: 0,
            peer_window: INITIAL_PEER_WINDOW,
            num_read: 0,
            incr: 0,
            window,
            recv_total: 0,
            peer_limit: INITIAL_PEER_WINDOW,
            error: None,
        }
    }
}

pub(crate) struct Inner {
    /// Wire version byte; `None` on an auto-detecting server until the first frame.
    pub(crate) version: Option<u8>,
    pub(crate) streams: HashMap<u32, StreamState>,
    pub(crate) accept_queue: VecDeque<u32>,
    pub(crate) accept_waker: Option<Waker>,
    /// `open_stream` calls waiting for version detection.
    pub(crate) open_wakers: Vec<Waker>,
    /// Session token bucket (E.4).
    pub(crate) bucket: i64,
    pub(crate) next_id: u32,
    pub(crate) go_away: bool,
    /// Control frames (SYN, NOP, UPD) waiting; they go before any data (prio 0).
    pub(crate) control: BytesMut,
    pub(crate) heap: BinaryHeap<SendEntry>,
    pub(crate) heap_seq: u64,
    /// Set once the session is dead; every call then fails with it.
    pub(crate) error: Option<Error>,
    /// `close()` was called or every handle is gone: flush, then shut down.
    pub(crate) closing: bool,
    /// The driver has finished.
    pub(crate) closed: bool,
    pub(crate) close_wakers: Vec<Waker>,
    pub(crate) session_handles: usize,
    /// A frame arrived since the last keepalive-timeout check (Go's `dataReady`).
    pub(crate) data_ready: bool,
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) peer_addr: Option<SocketAddr>,
    /// Streams in the map that still have a handle (or wait in the accept queue).
    pub(crate) live: usize,
}

impl Inner {
    pub(crate) fn new(version: Option<u8>, client: bool, bucket: usize) -> Self {
        Self {
            version,
            streams: HashMap::new(),
            accept_queue: VecDeque::new(),
            accept_waker: None,
            open_wakers: Vec::new(),
            bucket: bucket as i64,
            next_id: if client { 1 } else { 0 },
            go_away: false,
            control: BytesMut::new(),
            heap: BinaryHeap::new(),
            heap_seq: 0,
            error: None,
            closing: false,
            closed: false,
            close_wakers: Vec::new(),
            session_handles: 1,
            data_ready: false,
            local_addr: None,
            peer_addr: None,
            live: 0,
        }
    }

    pub(crate) fn ver(&self) -> u8 {
        self.version.unwrap_or(1)
    }

    pub(crate) fn is_v2(&self) -> bool {
        self.version == Some(2)
    }

    /// Queues a payload-less control frame.
    pub(crate) fn queue_control(&mut self, cmd: Cmd, sid: u32) {
        let v = self.ver();
        frame::encode_control(v, cmd, sid, &mut self.control);
    }

    /// Marks a stream as having frames to send.
    pub(crate) fn schedule(&mut self, sid: u32) {
        let Some(st) = self.streams.get_mut(&sid) else {
            return;
        };
        if st.in_heap || st.pending.is_empty() {
            return;
        }
        st.in_heap = true;
        let prio = st.prio;
        self.heap_seq += 1;
        self.heap.push(SendEntry {
            prio,
            seq: self.heap_seq,
            sid,
        });
    }

    /// Appends a FIN to the stream's own pending frames, so it follows the stream's data.
    pub(crate) fn queue_fin(&mut self, sid: u32) {
        let v = self.ver();
        if let Some(st) = self.streams.get_mut(&sid) {
            if st.fin_queued {
                return;
            }
            st.fin_queued = true;
            st.pending.push(Bytes::copy_from_slice(
                &frame::Header::new(v, Cmd::Fin, 0, sid).encode(),
            ));
        }
        self.schedule(sid);
    }

    /// Returns tokens to the bucket; true if reading was paused and may resume.
    pub(crate) fn return_tokens(&mut self, n: usize) -> bool {
        let before = self.bucket;
        self.bucket += n as i64;
        before <= 0 && self.bucket > 0
    }

    /// v2 receiver bookkeeping after the application consumed `n` bytes (E.5), plus
    /// window auto-tuning. Queues a UPD when Go would.
    pub(crate) fn after_read(&mut self, sid: u32, n: usize, config: &Config) {
        if !self.is_v2() || n == 0 {
            return;
        }
        let v = self.ver();
        let Some(st) = self.streams.get_mut(&sid) else {
            return;
        };
        let n32 = n as u32;
        st.num_read = st.num_read.wrapping_add(n32);
        st.incr = st.incr.wrapping_add(n32);
        // Go's threshold is MaxStreamBuffer/2, i.e. half the window it advertises; ours
        // is half the window we last advertised (which the fair-share cap may have made
        // smaller than `window`), or the sender could stall waiting for a UPD.
        let advertised = st
            .peer_limit
            .wrapping_sub(st.num_read.wrapping_sub(st.incr));
        let mut send = st.incr >= advertised / 2 || st.num_read == n32;
        // Auto-tune: the reader has drained everything and the sender used the whole
        // window we offered, so the window (not the reader, not the link) is what limits
        // this stream. Grow it, up to max_stream_buffer, and tell the sender at once.
        if config.stream_window_autotune
            && st.recv_len == 0
            && st.window < config.max_stream_buffer as u32
            && st.recv_total.wrapping_sub(st.peer_limit) as i32 >= 0
            && st.num_read != n32
        {
            st.window = st
                .window
                .saturating_mul(2)
                .min(config.max_stream_buffer as u32);
            send = true;
        }
        if send {
            st.incr = 0;
            let (consumed, own) = (st.num_read, st.window);
            let window = self.effective_window(own, config.max_receive_buffer);
            if let Some(st) = self.streams.get_mut(&sid) {
                st.peer_limit = consumed.wrapping_add(window);
            }
            frame::encode_upd(v, sid, consumed, window, &mut self.control);
        }
    }

    /// v2: tells the peer our window for a new stream at once (`UPD(0, window)`), so a
    /// sender does not assume Go's initial 256 KiB for a stream nobody reads yet. Go
    /// peers simply take it as an ordinary window update.
    pub(crate) fn announce_window(&mut self, sid: u32, max_receive_buffer: usize) {
        if !self.is_v2() {
            return;
        }
        let v = self.ver();
        let Some(own) = self.streams.get(&sid).map(|s| s.window) else {
            return;
        };
        let window = self.effective_window(own, max_receive_buffer);
        if let Some(st) = self.streams.get_mut(&sid) {
            st.peer_limit = window;
        }
        frame::encode_upd(v, sid, 0, window, &mut self.control);
    }

    /// Removes a stream whose handles are gone once its frames are all out.
    pub(crate) fn reap(&mut self, sid: u32) {
        if let Some(st) = self.streams.get(&sid)
            && st.dropped
            && st.pending.is_empty()
            && !st.in_heap
        {
            self.streams.remove(&sid);
        }
    }

    /// Last handle of a stream went away: FIN (if not sent yet), give the unread bytes
    /// back to the bucket (Go's `streamClosed`/`recycleTokens`) and forget the stream
    /// once its last frames are written. Returns true if the driver should be woken.
    pub(crate) fn release_stream(&mut self, sid: u32) -> bool {
        let alive = self.error.is_none();
        let Some(st) = self.streams.get_mut(&sid) else {
            return false;
        };
        st.handles = st.handles.saturating_sub(1);
        if st.handles > 0 {
            return false;
        }
        st.dropped = true;
        self.live = self.live.saturating_sub(1);
        let unread = st.recv_len;
        st.recv.clear();
        st.recv_len = 0;
        st.read_waker = None;
        st.write_waker = None;
        if alive {
            self.queue_fin(sid);
        }
        let mut wake = self.return_tokens(unread);
        self.reap(sid);
        if self.session_handles == 0 && self.live_streams() == 0 {
            self.closing = true;
        }
        wake |= alive;
        wake
    }

    pub(crate) fn live_streams(&self) -> usize {
        self.live
    }

    /// Registers a new stream (opened or received).
    pub(crate) fn insert_stream(&mut self, sid: u32, window: u32) {
        self.streams.insert(sid, StreamState::new(window));
        self.live += 1;
    }

    /// The window to advertise for a stream: its own (auto-tuned or configured) window,
    /// capped so that the windows of all live streams together stay within half the
    /// receive buffer. Otherwise peers filling every window could exhaust the bucket,
    /// which stops us reading the transport, and with it the UPD frames queued behind
    /// the data: an application that echoes streams would then deadlock (as Go can).
    pub(crate) fn effective_window(&self, own: u32, max_receive_buffer: usize) -> u32 {
        let share = max_receive_buffer / (2 * self.live.max(1));
        own.min(share.max(MIN_WINDOW as usize) as u32)
    }

    /// Marks the session dead with `err` (first error wins) and collects every waker.
    pub(crate) fn fail(&mut self, err: Error, wakers: &mut Vec<Waker>) {
        if self.error.is_none() {
            self.error = Some(err);
        }
        self.closing = true;
        self.control.clear();
        self.heap.clear();
        for st in self.streams.values_mut() {
            st.pending.clear();
            st.pending_bytes = 0;
            st.in_heap = false;
            wakers.extend(st.read_waker.take());
            wakers.extend(st.write_waker.take());
        }
        self.streams.retain(|_, s| !s.dropped);
        // Streams the application never accepted cannot be used any more.
        for sid in std::mem::take(&mut self.accept_queue) {
            self.streams.remove(&sid);
        }
        self.live = self.streams.len();
        wakers.extend(self.accept_waker.take());
        wakers.append(&mut self.open_wakers);
    }

    /// Takes the wake-up list of `close()` callers.
    pub(crate) fn finish(&mut self, wakers: &mut Vec<Waker>) {
        self.closed = true;
        wakers.append(&mut self.close_wakers);
    }
}

/// Encoded frames waiting to be written, as the chunks the writes produced (each chunk
/// holds whole frames). Frames are split off without copying, and a write never has to
/// move frames already queued (a single growing buffer would be copied whenever the
/// writer reserves room while the driver still holds frames split off it).
#[derive(Debug, Default)]
pub(crate) struct FrameQueue {
    chunks: VecDeque<Bytes>,
}

impl FrameQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.chunks.push_back(chunk);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
    }

    /// Splits off the first frame (header and payload).
    pub(crate) fn pop_frame(&mut self) -> Option<Bytes> {
        let front = self.chunks.front_mut()?;
        let flen = match front.get(2..4) {
            Some(&[a, b]) => HEADER_SIZE + usize::from(u16::from_le_bytes([a, b])),
            _ => front.len(),
        };
        let frame = if flen >= front.len() {
            self.chunks.pop_front()?
        } else {
            front.split_to(flen)
        };
        Some(frame)
    }
}

/// Stores `w` in `slot` unless it already holds a waker for the same task.
pub(crate) fn set_waker(slot: &mut Option<Waker>, w: &Waker) {
    match slot {
        Some(old) if old.will_wake(w) => {}
        _ => *slot = Some(w.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaper_order_is_wrap_aware() {
        let mut h = BinaryHeap::new();
        h.push(SendEntry {
            prio: 10,
            seq: 1,
            sid: 1,
        });
        h.push(SendEntry {
            prio: u32::MAX - 5,
            seq: 2,
            sid: 2,
        });
        h.push(SendEntry {
            prio: 3,
            seq: 3,
            sid: 3,
        });
        h.push(SendEntry {
            prio: 3,
            seq: 4,
            sid: 4,
        });
        let order: Vec<u32> = std::iter::from_fn(|| h.pop().map(|e| e.sid)).collect();
        // u32::MAX-5 is "before" 3 and 10 once wrapping is taken into account.
        assert_eq!(order, vec![2, 3, 4, 1]);
    }
}
