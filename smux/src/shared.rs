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

use tokio::time::Instant;

use crate::config::Config;
use crate::error::Error;
use crate::flow::{self, ConsumedTooMuch, MIN_WINDOW, RecvFlow, SendCredit, SendFlow, Update};
use crate::frame::{self, Cmd, HEADER_SIZE};
use crate::write::WriteSide;

pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
    /// The transport's write half (see `write.rs`). Lock order: `writer` before
    /// `inner`, never the other way round. Held for one non-blocking write at most.
    pub(crate) writer: Mutex<WriteSide>,
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

    /// The write half (held only for one non-blocking write, so waiting is short).
    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, WriteSide> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A transport write failed outside the driver: the session is dead. Returns the
    /// error to give the caller.
    pub(crate) fn fail_io(&self, e: std::io::Error) -> std::io::Error {
        let err = Error::from(e);
        let mut wakers = Vec::new();
        self.lock().fail(err.clone(), &mut wakers);
        wakers.into_iter().for_each(Waker::wake);
        self.driver.wake();
        err.into_io()
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

/// The write shaper: control frames first, then streams by least sent (E.6).
///
/// Invariant: a stream is in `heap` at most once (its `TxState::in_heap` says so).
#[derive(Default)]
pub(crate) struct Shaper {
    /// Control frames (SYN, NOP, UPD) waiting; they go before any data (prio 0).
    pub(crate) control: BytesMut,
    pub(crate) heap: BinaryHeap<SendEntry>,
    /// v2: streams whose next frame waits for send credit, in the order they ran out.
    pub(crate) waiting: VecDeque<u32>,
    seq: u64,
}

impl Shaper {
    pub(crate) fn push(&mut self, prio: u32, sid: u32) {
        self.seq += 1;
        self.heap.push(SendEntry {
            prio,
            seq: self.seq,
            sid,
        });
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.control.is_empty() && self.heap.is_empty() && self.waiting.is_empty()
    }
}

/// Receive side of a stream.
pub(crate) struct RxState {
    /// Received payloads not yet read.
    pub(crate) queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    pub(crate) len: usize,
    pub(crate) waker: Option<Waker>,
    /// The peer's FIN arrived.
    pub(crate) fin: bool,
    /// v2 window bookkeeping.
    pub(crate) flow: RecvFlow,
}

/// Send side of a stream.
pub(crate) struct TxState {
    /// Encoded frames committed by writes, not yet taken by the driver.
    pub(crate) pending: FrameQueue,
    /// A writer waiting for send space / window, or a flush/shutdown waiting for the
    /// pending frames to be handed to the transport.
    pub(crate) waker: Option<Waker>,
    pub(crate) fin_queued: bool,
    /// Scheduled: in the shaper's heap or waiting for credit.
    pub(crate) in_heap: bool,
    /// Shaper priority: frames sent (v1) or bytes sent (v2).
    pub(crate) prio: u32,
    /// v2 window bookkeeping.
    pub(crate) flow: SendFlow,
    /// Write-side error specific to this stream (ErrConsumed).
    pub(crate) error: Option<Error>,
}

pub(crate) struct StreamState {
    pub(crate) rx: RxState,
    pub(crate) tx: TxState,
    /// Live handles (the stream, or its two halves; 1 while in the accept queue).
    pub(crate) handles: usize,
    /// Every handle is gone: the stream only waits for its last frames to be written
    /// (and, in v2, for the peer to release what it holds of ours).
    pub(crate) dropped: bool,
}

impl StreamState {
    pub(crate) fn new(window: u32) -> Self {
        Self {
            rx: RxState {
                queue: VecDeque::new(),
                len: 0,
                waker: None,
                fin: false,
                flow: RecvFlow::new(window),
            },
            tx: TxState {
                pending: FrameQueue::default(),
                waker: None,
                fin_queued: false,
                in_heap: false,
                prio: 0,
                flow: SendFlow::default(),
                error: None,
            },
            handles: 1,
            dropped: false,
        }
    }
}

/// Streams the peer opened that the application has not accepted yet.
#[derive(Default)]
pub(crate) struct AcceptQueue {
    pub(crate) queue: VecDeque<u32>,
    pub(crate) waker: Option<Waker>,
}

pub(crate) struct Inner {
    /// Wire version byte; `None` on an auto-detecting server until the first frame.
    pub(crate) version: Option<u8>,
    pub(crate) streams: HashMap<u32, StreamState>,
    /// Streams in the map that still have a handle (or wait in the accept queue).
    live: usize,
    pub(crate) accept: AcceptQueue,
    /// `open_stream` calls waiting for version detection.
    pub(crate) open_wakers: Vec<Waker>,
    /// Session token bucket (E.4): receive buffer left. Bytes received and not read
    /// are taken from it; may go negative in v2 (see [`flow`]).
    pub(crate) bucket: i64,
    /// v2: bytes sent on all streams and not reported consumed (see [`flow`]).
    pub(crate) credit: SendCredit,
    /// When a report (UPD or FIN) last released send credit.
    pub(crate) last_release: Instant,
    /// The time of the frame being handled (set by the driver).
    now: Instant,
    pub(crate) next_id: u32,
    pub(crate) go_away: bool,
    pub(crate) shaper: Shaper,
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
}

impl Inner {
    pub(crate) fn new(version: Option<u8>, client: bool, config: &Config) -> Self {
        Self {
            version,
            streams: HashMap::new(),
            live: 0,
            accept: AcceptQueue::default(),
            open_wakers: Vec::new(),
            bucket: config.max_receive_buffer as i64,
            credit: SendCredit::new(config.peer_receive_buffer),
            last_release: Instant::now(),
            now: Instant::now(),
            next_id: if client { 1 } else { 0 },
            go_away: false,
            shaper: Shaper::default(),
            error: None,
            closing: false,
            closed: false,
            close_wakers: Vec::new(),
            session_handles: 1,
            data_ready: false,
            local_addr: None,
            peer_addr: None,
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
        frame::encode_control(v, cmd, sid, &mut self.shaper.control);
    }

    fn queue_upd(&mut self, sid: u32, u: Update) {
        let v = self.ver();
        frame::encode_upd(v, sid, u.consumed, u.window, &mut self.shaper.control);
    }

    /// Marks a stream as having frames to send.
    pub(crate) fn schedule(&mut self, sid: u32) {
        let Some(st) = self.streams.get_mut(&sid) else {
            return;
        };
        if st.tx.in_heap || st.tx.pending.is_empty() {
            return;
        }
        st.tx.in_heap = true;
        let prio = st.tx.prio;
        self.shaper.push(prio, sid);
    }

    /// Queues a FIN after the stream's pending data, or with the control frames when
    /// nothing is pending (it must not wait behind other streams' data for send credit:
    /// the peer may need it to finish and release that credit).
    pub(crate) fn queue_fin(&mut self, sid: u32) {
        let v = self.ver();
        let Some(st) = self.streams.get_mut(&sid) else {
            return;
        };
        if st.tx.fin_queued {
            return;
        }
        st.tx.fin_queued = true;
        if st.tx.pending.is_empty() {
            self.queue_control(Cmd::Fin, sid);
            return;
        }
        st.tx.pending.push(
            Bytes::copy_from_slice(&frame::Header::new(v, Cmd::Fin, 0, sid).encode()),
            0,
        );
        self.schedule(sid);
    }

    /// Returns tokens to the bucket; true if reading was paused and may resume.
    pub(crate) fn return_tokens(&mut self, n: usize) -> bool {
        let before = self.bucket;
        self.bucket += n as i64;
        before <= 0 && self.bucket > 0
    }

    /// v2: the window to advertise for a stream whose own window is `own`.
    fn effective(&self, config: &Config) -> impl Fn(u32) -> u32 + use<> {
        let share = (config.max_receive_buffer / self.live.max(1)).max(MIN_WINDOW as usize);
        let share = share.min(u32::MAX as usize) as u32;
        move |own| own.min(share)
    }

    /// v2 receiver bookkeeping after the application consumed `n` bytes (E.5), plus
    /// window auto-tuning. Queues a UPD when Go would (or the window grew).
    pub(crate) fn after_read(&mut self, sid: u32, n: usize, config: &Config) {
        if !self.is_v2() || n == 0 {
            return;
        }
        let eff = self.effective(config);
        let autotune = config.stream_window_autotune.then(|| autotune_max(config));
        let Some(st) = self.streams.get_mut(&sid) else {
            return;
        };
        if let Some(u) = st.rx.flow.on_read(n as u32, st.rx.len, autotune, eff) {
            self.queue_upd(sid, u);
        }
    }

    /// v2: tells the peer our window for a new stream at once (`UPD(0, window)`), so a
    /// sender does not assume Go's initial 256 KiB for a stream nobody reads yet. Go
    /// peers simply take it as an ordinary window update.
    pub(crate) fn announce_window(&mut self, sid: u32, config: &Config) {
        if !self.is_v2() {
            return;
        }
        let eff = self.effective(config);
        let Some(st) = self.streams.get_mut(&sid) else {
            return;
        };
        let u = st.rx.flow.announce(eff);
        self.queue_upd(sid, u);
    }

    /// Removes a stream whose handles are gone once its frames are all out and (v2) the
    /// peer no longer holds bytes of it that count against the send credit.
    pub(crate) fn reap(&mut self, sid: u32) {
        if let Some(st) = self.streams.get(&sid)
            && st.dropped
            && st.tx.pending.is_empty()
            && !st.tx.in_heap
            && st.tx.flow.inflight() == 0
        {
            self.streams.remove(&sid);
        }
    }

    /// Changes a stream's send flow and keeps the session credit in step.
    pub(crate) fn update_flow<R>(
        &mut self,
        sid: u32,
        f: impl FnOnce(&mut SendFlow) -> R,
    ) -> Option<R> {
        let st = self.streams.get_mut(&sid)?;
        let before = st.tx.flow.inflight();
        let r = f(&mut st.tx.flow);
        let after = st.tx.flow.inflight();
        if after < before {
            self.last_release = self.now;
        }
        self.credit.adjust(before, after);
        Some(r)
    }

    /// A UPD arrived for `sid`; returns the writer to wake.
    pub(crate) fn on_update(
        &mut self,
        sid: u32,
        consumed: u32,
        window: u32,
        now: Instant,
    ) -> Option<Waker> {
        self.now = now;
        let res = self.update_flow(sid, |f| f.on_update(consumed, window))?;
        let st = self.streams.get_mut(&sid)?;
        if let Err(ConsumedTooMuch) = res {
            st.tx.error = Some(Error::Consumed);
        }
        let w = st.tx.waker.take();
        self.reap(sid);
        w
    }

    /// The peer's FIN arrived for `sid`; collects the wakers to wake.
    pub(crate) fn on_fin(&mut self, sid: u32, now: Instant, wakers: &mut Vec<Waker>) {
        self.now = now;
        if self.update_flow(sid, SendFlow::on_peer_fin).is_none() {
            return;
        }
        let Some(st) = self.streams.get_mut(&sid) else {
            return;
        };
        if !st.dropped {
            st.rx.fin = true;
            wakers.extend(st.rx.waker.take());
            wakers.extend(st.tx.waker.take());
        }
        self.reap(sid);
    }

    /// Credit held only on paper once no report released any for [`flow::QUIET`] (see
    /// [`flow`]): the bytes the peer may have read without reporting them.
    pub(crate) fn unreported(&self, now: Instant) -> u64 {
        if now.saturating_duration_since(self.last_release) < flow::QUIET {
            return 0;
        }
        self.streams
            .values()
            .map(|s| u64::from(s.tx.flow.unreported()))
            .sum()
    }

    /// Checks the credit invariant (debug builds; it walks every stream).
    pub(crate) fn check_credit(&self) {
        if cfg!(debug_assertions) {
            let sum: u64 = self
                .streams
                .values()
                .map(|s| u64::from(s.tx.flow.inflight()))
                .sum();
            debug_assert_eq!(sum, self.credit.total());
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
        let unread = st.rx.len;
        st.rx.queue.clear();
        st.rx.len = 0;
        st.rx.waker = None;
        st.tx.waker = None;
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

    /// Marks the session dead with `err` (first error wins) and collects every waker.
    pub(crate) fn fail(&mut self, err: Error, wakers: &mut Vec<Waker>) {
        if self.error.is_none() {
            self.error = Some(err);
        }
        self.closing = true;
        self.shaper.control.clear();
        self.shaper.heap.clear();
        self.shaper.waiting.clear();
        for st in self.streams.values_mut() {
            st.tx.pending.clear();
            st.tx.in_heap = false;
            wakers.extend(st.rx.waker.take());
            wakers.extend(st.tx.waker.take());
        }
        self.streams.retain(|_, s| !s.dropped);
        // Streams the application never accepted cannot be used any more.
        for sid in std::mem::take(&mut self.accept.queue) {
            self.streams.remove(&sid);
        }
        self.live = self.streams.len();
        wakers.extend(self.accept.waker.take());
        wakers.append(&mut self.open_wakers);
    }

    /// Takes the wake-up list of `close()` callers.
    pub(crate) fn finish(&mut self, wakers: &mut Vec<Waker>) {
        self.closed = true;
        wakers.append(&mut self.close_wakers);
    }
}

/// The largest window auto-tuning grows a stream to: the whole receive buffer (the
/// fair-share cap divides it between live streams), and never below the configured
/// `max_stream_buffer`.
pub(crate) fn autotune_max(config: &Config) -> u32 {
    config
        .max_receive_buffer
        .max(config.max_stream_buffer)
        .min(i32::MAX as usize) as u32
}

/// Encoded frames waiting to be written, as the chunks the writes produced (each chunk
/// holds whole frames). Frames are split off without copying, and a write never has to
/// move frames already queued (a single growing buffer would be copied whenever the
/// writer reserves room while the driver still holds frames split off it).
///
/// Invariant: `payload` is the number of PSH payload bytes in `chunks`.
#[derive(Debug, Default)]
pub(crate) struct FrameQueue {
    chunks: VecDeque<Bytes>,
    payload: usize,
}

impl FrameQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Payload bytes waiting.
    pub(crate) fn payload(&self) -> usize {
        self.payload
    }

    /// Queues a chunk of whole frames carrying `payload` PSH payload bytes.
    pub(crate) fn push(&mut self, chunk: Bytes, payload: usize) {
        if !chunk.is_empty() {
            self.chunks.push_back(chunk);
            self.payload += payload;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.payload = 0;
    }

    /// Length of the first frame and its payload (PSH), without taking it.
    pub(crate) fn peek(&self) -> Option<(usize, usize)> {
        let front = self.chunks.front()?;
        let (cmd, len) = match front.get(1..4) {
            Some(&[c, a, b]) => (c, usize::from(u16::from_le_bytes([a, b]))),
            _ => return Some((front.len(), 0)),
        };
        if cmd == Cmd::Psh as u8 {
            Some((HEADER_SIZE + len, len))
        } else {
            Some((HEADER_SIZE, 0))
        }
    }

    /// Splits off the first frame (header and payload) and returns it with its payload
    /// length.
    pub(crate) fn pop_frame(&mut self) -> Option<(Bytes, usize)> {
        let (flen, payload) = self.peek()?;
        let front = self.chunks.front_mut()?;
        let frame = if flen >= front.len() {
            self.chunks.pop_front()?
        } else {
            front.split_to(flen)
        };
        debug_assert!(self.payload >= payload);
        self.payload -= payload;
        Some((frame, payload))
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
