//! The transport's write half, shared by the driver and the streams.
//!
//! A stream whose frames need not wait behind anything (see `Handle::poll_write_direct`
//! in `stream.rs` for the conditions, including v2 send credit) writes them from its own
//! task, header and payload slices straight from the caller's buffer in one vectored
//! write: no copy into a frame buffer and no hand-off to the driver. Everything else goes
//! through the driver as queued whole frames, which it gathers into [`WriteSide::out`].
//!
//! # Invariants
//!
//! - Bytes reach the transport only from `out` or from frames the same successful write
//!   commits. Everything in `out` was already counted as sent, and `out_bytes` is the
//!   sum of its entries' lengths.
//! - `out` always goes first: a direct write offers `out` in front of its frames, and
//!   offers no frame at all when not all of `out` fits in one write.
//! - A frame counts as committed only if at least one of its bytes was accepted. A frame
//!   the transport took in part has its tail pushed to `out`, which is then empty, so
//!   the tail goes before anything else; frames after it were not offered in vain: they
//!   are not committed and the caller still owns them.
//! - A write that returns `Pending`, an error or 0 leaves no residue: `out` is as it
//!   was and [`WriteSide::flat`], the coalescing scratch buffer, is empty again. The
//!   scratch is empty whenever the writer lock is released (the bug behind 149765f was
//!   a scratch left filled after `Pending` and sent again by the next write).
//!
//! The transport keeps one waker per direction, yet several tasks (the driver and any
//! stream) may find it full; so every write polls it with a proxy waker
//! ([`WakeList`]) that wakes all of them.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;

use crate::frame::HEADER_SIZE;

/// Slices per vectored write (Linux allows 1024; a few dozen cover a 256 KiB write).
pub(crate) const MAX_IOVECS: usize = 64;

/// Payload bytes a direct write coalesces at most on a transport without vectored
/// writes (bounds the scratch buffer).
pub(crate) const FLAT_MAX: usize = 64 * 1024;

/// Wakes every task that found the transport not writable.
#[derive(Default)]
pub(crate) struct WakeList {
    state: Mutex<(u64, Vec<Waker>)>,
}

impl WakeList {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Vec<Waker>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn generation(&self) -> u64 {
        self.lock().0
    }

    /// Adds `w` unless a wake-up happened since `seen` (then wakes it at once: the
    /// readiness it waits for may already be there).
    fn register(&self, w: &Waker, seen: u64) {
        let mut s = self.lock();
        if s.0 != seen {
            drop(s);
            w.wake_by_ref();
            return;
        }
        if !s.1.iter().any(|o| o.will_wake(w)) {
            s.1.push(w.clone());
        }
    }
}

impl Wake for WakeList {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let list = {
            let mut s = self.lock();
            s.0 = s.0.wrapping_add(1);
            std::mem::take(&mut s.1)
        };
        list.into_iter().for_each(Waker::wake);
    }
}

fn closed() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

fn write_zero() -> io::Error {
    io::Error::from(io::ErrorKind::WriteZero)
}

/// Frames to write straight from a caller's buffer: `headers[i]` goes with the `i`-th
/// `frame`-sized piece of `payload`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DirectFrames<'a> {
    pub(crate) headers: &'a [[u8; HEADER_SIZE]],
    pub(crate) payload: &'a [u8],
    pub(crate) frame: usize,
}

impl DirectFrames<'_> {
    fn iter(&self) -> impl Iterator<Item = (&[u8; HEADER_SIZE], &[u8])> {
        self.headers
            .iter()
            .zip(self.payload.chunks(self.frame.max(1)))
    }
}

/// The write half of the transport and the bytes that must be written before any new
/// frame.
pub(crate) struct WriteSide {
    /// `None` once the driver ended: the transport goes with the driver, as the peer
    /// expects, even while handles to the session live on.
    io: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    vectored: bool,
    /// Bytes to write before anything else, in order; all counted as sent.
    out: VecDeque<Bytes>,
    /// Sum of the lengths in `out`.
    out_bytes: usize,
    /// Coalescing scratch for transports without vectored writes; empty whenever the
    /// lock is released.
    flat: BytesMut,
    /// Something was written since the last successful flush.
    need_flush: bool,
    wake: Arc<WakeList>,
    proxy: Waker,
}

impl WriteSide {
    pub(crate) fn new(io: Pin<Box<dyn AsyncWrite + Send>>) -> Self {
        let vectored = io.is_write_vectored();
        let wake = Arc::new(WakeList::default());
        let proxy = Waker::from(wake.clone());
        Self {
            io: Some(io),
            vectored,
            out: VecDeque::new(),
            out_bytes: 0,
            flat: BytesMut::new(),
            need_flush: false,
            wake,
            proxy,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.io.is_none()
    }

    pub(crate) fn is_vectored(&self) -> bool {
        self.vectored
    }

    pub(crate) fn out_is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub(crate) fn out_bytes(&self) -> usize {
        self.out_bytes
    }

    pub(crate) fn out_len(&self) -> usize {
        self.out.len()
    }

    pub(crate) fn need_flush(&self) -> bool {
        self.need_flush
    }

    /// Drops the transport's write half (the driver has ended) and wakes every task
    /// waiting for it to drain.
    pub(crate) fn close(&mut self) {
        self.io = None;
        self.out.clear();
        self.out_bytes = 0;
        self.need_flush = false;
        self.wake.wake_by_ref();
    }

    /// Gives back memory a burst left behind.
    pub(crate) fn release_idle(&mut self) {
        if self.out.is_empty() && self.out.capacity() > 8 {
            self.out = VecDeque::new();
        }
        debug_assert!(self.flat.is_empty());
        if self.flat.capacity() > 0 {
            self.flat = BytesMut::new();
        }
    }

    /// Queues bytes (whole frames, counted as sent) to go out before any later frame.
    pub(crate) fn push_out(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.out_bytes += b.len();
            self.out.push_back(b);
        }
    }

    /// Drops `n` written bytes from the front of `out`; returns how many of `n` were
    /// not part of `out` (they belong to whatever followed it in the write).
    fn consume_out(&mut self, mut n: usize) -> usize {
        while n > 0 {
            let Some(front) = self.out.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                self.out_bytes -= front.len();
                self.out.pop_front();
            } else {
                front.advance(n);
                self.out_bytes -= n;
                n = 0;
            }
        }
        n
    }

    /// One write of `slices` (or of the first one, on a transport without vectored
    /// writes) through the proxy waker; registers `cx` if the transport is full.
    fn poll_io_write(
        io: &mut Option<Pin<Box<dyn AsyncWrite + Send>>>,
        wake: &WakeList,
        proxy: &Waker,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
        vectored: bool,
    ) -> Poll<io::Result<usize>> {
        let Some(io) = io.as_mut() else {
            return Poll::Ready(Err(closed()));
        };
        let seen = wake.generation();
        let mut pcx = Context::from_waker(proxy);
        let r = if vectored {
            io.as_mut().poll_write_vectored(&mut pcx, slices)
        } else {
            let first = slices.iter().find(|s| !s.is_empty());
            io.as_mut()
                .poll_write(&mut pcx, first.map(|s| &s[..]).unwrap_or_default())
        };
        if r.is_pending() {
            wake.register(cx.waker(), seen);
        }
        r
    }

    /// Writes from `out` until it is empty (`Ready(Ok)`) or the transport is full
    /// (`Pending`, `cx` registered). `progress` is set if anything was written.
    pub(crate) fn poll_write_out(
        &mut self,
        cx: &mut Context<'_>,
        progress: &mut bool,
    ) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            if !self.vectored && self.out.len() > 1 {
                // One copy into a single buffer; `split` leaves the scratch empty.
                self.flat.reserve(self.out_bytes);
                for b in self.out.drain(..) {
                    self.flat.extend_from_slice(&b);
                }
                self.out.push_back(self.flat.split().freeze());
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut k = 0;
            for (slot, b) in slices.iter_mut().zip(self.out.iter()) {
                *slot = IoSlice::new(b);
                k += 1;
            }
            let slices = slices.get(..k).unwrap_or_default();
            match Self::poll_io_write(
                &mut self.io,
                &self.wake,
                &self.proxy,
                cx,
                slices,
                self.vectored,
            ) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(write_zero())),
                Poll::Ready(Ok(n)) => {
                    *progress = true;
                    self.need_flush = true;
                    self.consume_out(n);
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Flushes the transport if something was written and `out` is empty.
    pub(crate) fn poll_flush_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.need_flush || !self.out.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Err(closed()));
        };
        let seen = self.wake.generation();
        let mut pcx = Context::from_waker(&self.proxy);
        let r = io.as_mut().poll_flush(&mut pcx);
        match r {
            Poll::Ready(Ok(())) => self.need_flush = false,
            Poll::Pending => self.wake.register(cx.waker(), seen),
            Poll::Ready(Err(_)) => {}
        }
        r
    }

    pub(crate) fn poll_shutdown_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let seen = self.wake.generation();
        let mut pcx = Context::from_waker(&self.proxy);
        let r = io.as_mut().poll_shutdown(&mut pcx);
        if r.is_pending() {
            self.wake.register(cx.waker(), seen);
        }
        r
    }

    /// One write of whatever of `out` fits, followed by `frames` in the same write.
    ///
    /// Returns how many payload bytes were committed: those of every frame of which at
    /// least one byte was accepted (the tail of a frame cut short is pushed to `out`).
    /// `Ready(Ok(0))` means only bytes of `out` were written (`out` did not fit in one
    /// write, or the transport took no more). `Pending`: nothing was written, `cx` is
    /// registered. On `Pending` and on errors nothing changed.
    pub(crate) fn poll_write_frames(
        &mut self,
        cx: &mut Context<'_>,
        frames: DirectFrames<'_>,
    ) -> Poll<io::Result<usize>> {
        if !self.vectored {
            return self.poll_write_frames_flat(cx, frames);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut k = 0;
        let room = MAX_IOVECS.saturating_sub(2 * frames.headers.len());
        for (slot, b) in slices.iter_mut().zip(self.out.iter().take(room)) {
            *slot = IoSlice::new(b);
            k += 1;
        }
        let only_out = k < self.out.len();
        if !only_out {
            for (h, p) in frames.iter() {
                if k + 2 > MAX_IOVECS {
                    break;
                }
                if let [a, b, ..] = slices.get_mut(k..).unwrap_or_default() {
                    *a = IoSlice::new(h);
                    *b = IoSlice::new(p);
                    k += 2;
                }
            }
        }
        let slices = slices.get(..k).unwrap_or_default();
        let r = Self::poll_io_write(&mut self.io, &self.wake, &self.proxy, cx, slices, true);
        match r {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(0)) => Poll::Ready(Err(write_zero())),
            Poll::Ready(Ok(n)) => {
                self.need_flush = true;
                let rem = self.consume_out(n);
                if only_out {
                    debug_assert_eq!(rem, 0);
                    return Poll::Ready(Ok(0));
                }
                Poll::Ready(Ok(self.commit_frames(frames, rem)))
            }
        }
    }

    /// After a write that took `rem` bytes of `frames` (after all of `out`): pushes the
    /// tail of a frame cut short to `out` and returns the committed payload bytes.
    fn commit_frames(&mut self, frames: DirectFrames<'_>, mut rem: usize) -> usize {
        debug_assert!(rem == 0 || self.out.is_empty());
        let mut committed = 0;
        for (h, p) in frames.iter() {
            if rem == 0 {
                break;
            }
            let flen = h.len() + p.len();
            if rem >= flen {
                rem -= flen;
                committed += p.len();
                continue;
            }
            // Cut inside this frame: its tail must follow at once.
            let mut tail = BytesMut::with_capacity(flen - rem);
            if rem < h.len() {
                tail.extend_from_slice(h.get(rem..).unwrap_or_default());
                tail.extend_from_slice(p);
            } else {
                tail.extend_from_slice(p.get(rem - h.len()..).unwrap_or_default());
            }
            self.push_out(tail.freeze());
            committed += p.len();
            break;
        }
        committed
    }

    /// [`poll_write_frames`](Self::poll_write_frames) on a transport without vectored
    /// writes: `out` is written on its own first; once it is empty, the frames are
    /// coalesced in the scratch buffer (one copy, still no hand-off to the driver), which
    /// is emptied again before returning whatever the outcome.
    fn poll_write_frames_flat(
        &mut self,
        cx: &mut Context<'_>,
        frames: DirectFrames<'_>,
    ) -> Poll<io::Result<usize>> {
        if !self.out.is_empty() {
            let mut progress = false;
            return match self.poll_write_out(cx, &mut progress) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending if !progress => Poll::Pending,
                _ => Poll::Ready(Ok(0)),
            };
        }
        debug_assert!(self.flat.is_empty());
        let mut flat = std::mem::take(&mut self.flat);
        flat.clear();
        for (h, p) in frames.iter() {
            flat.extend_from_slice(h);
            flat.extend_from_slice(p);
        }
        let r = Self::poll_io_write(
            &mut self.io,
            &self.wake,
            &self.proxy,
            cx,
            &[IoSlice::new(&flat)],
            false,
        );
        // The scratch is empty again on every path out of here.
        flat.clear();
        self.flat = flat;
        match r {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(0)) => Poll::Ready(Err(write_zero())),
            Poll::Ready(Ok(n)) => {
                self.need_flush = true;
                Poll::Ready(Ok(self.commit_frames(frames, n)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque as Script;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// What the scripted transport does on its next write poll.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// Take at most this many bytes.
        Take(usize),
        Pending,
        Fail,
    }

    /// A transport that follows a script and records every byte it accepts.
    struct Scripted {
        script: Arc<Mutex<Script<Step>>>,
        wire: Arc<Mutex<Vec<u8>>>,
        vectored: bool,
        polls: Arc<AtomicUsize>,
    }

    impl AsyncWrite for Scripted {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            let step = self.script.lock().unwrap().pop_front();
            let bufs: &[IoSlice<'_>] = if self.vectored {
                bufs
            } else {
                let first = bufs.iter().position(|b| !b.is_empty()).unwrap_or(0);
                bufs.get(first..(first + 1).min(bufs.len()))
                    .unwrap_or_default()
            };
            match step.unwrap_or(Step::Take(usize::MAX)) {
                Step::Pending => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Step::Fail => Poll::Ready(Err(io::Error::other("scripted"))),
                Step::Take(max) => {
                    let mut wire = self.wire.lock().unwrap();
                    let mut n = 0;
                    for b in bufs {
                        let k = b.len().min(max - n);
                        wire.extend_from_slice(&b[..k]);
                        n += k;
                        if n == max {
                            break;
                        }
                    }
                    Poll::Ready(Ok(n))
                }
            }
        }
        fn is_write_vectored(&self) -> bool {
            self.vectored
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    struct Fixture {
        w: WriteSide,
        script: Arc<Mutex<Script<Step>>>,
        wire: Arc<Mutex<Vec<u8>>>,
    }

    fn fixture(vectored: bool) -> Fixture {
        let script = Arc::new(Mutex::new(Script::new()));
        let wire = Arc::new(Mutex::new(Vec::new()));
        let io = Scripted {
            script: script.clone(),
            wire: wire.clone(),
            vectored,
            polls: Arc::new(AtomicUsize::new(0)),
        };
        Fixture {
            w: WriteSide::new(Box::pin(io)),
            script,
            wire,
        }
    }

    impl Fixture {
        fn script(&self, steps: &[Step]) {
            self.script.lock().unwrap().extend(steps.iter().copied());
        }
        fn wire(&self) -> Vec<u8> {
            self.wire.lock().unwrap().clone()
        }
        fn write_frames(&mut self, f: DirectFrames<'_>) -> Poll<io::Result<usize>> {
            let mut cx = Context::from_waker(Waker::noop());
            let r = self.w.poll_write_frames(&mut cx, f);
            assert!(self.w.flat.is_empty(), "scratch left filled");
            assert_eq!(
                self.w.out_bytes,
                self.w.out.iter().map(Bytes::len).sum::<usize>()
            );
            r
        }
        fn drain(&mut self) {
            let mut cx = Context::from_waker(Waker::noop());
            let mut p = false;
            assert!(matches!(
                self.w.poll_write_out(&mut cx, &mut p),
                Poll::Ready(Ok(()))
            ));
        }
    }

    /// Two frames: headers `H0`/`H1` (8 bytes each) and payloads of 5 and 3 bytes.
    fn two_frames(payload: &[u8]) -> ([[u8; HEADER_SIZE]; 2], usize) {
        let _ = payload;
        ([[0xA0; HEADER_SIZE], [0xA1; HEADER_SIZE]], 5)
    }

    fn expected(
        out: &[u8],
        headers: &[[u8; HEADER_SIZE]],
        payload: &[u8],
        frame: usize,
    ) -> Vec<u8> {
        let mut v = out.to_vec();
        for (h, p) in headers.iter().zip(payload.chunks(frame)) {
            v.extend_from_slice(h);
            v.extend_from_slice(p);
        }
        v
    }

    #[test]
    fn every_cut_sends_out_first_and_commits_exactly() {
        let payload = b"abcdeXYZ";
        let (headers, frame) = two_frames(payload);
        let out = b"ctl-frame";
        let total = out.len() + 2 * HEADER_SIZE + payload.len();
        for vectored in [true, false] {
            for cut in 1..=total {
                let mut f = fixture(vectored);
                f.w.push_out(Bytes::from_static(out));
                let frames = DirectFrames {
                    headers: &headers,
                    payload,
                    frame,
                };
                f.script(&[Step::Take(cut)]);
                let mut committed = 0;
                // Writes until the frames are committed (a flat transport writes `out`
                // on its own first).
                for _ in 0..3 {
                    match f.write_frames(frames) {
                        Poll::Ready(Ok(0)) => continue,
                        Poll::Ready(Ok(c)) => {
                            committed = c;
                            break;
                        }
                        other => panic!("{other:?}"),
                    }
                }
                f.drain();
                let wire = f.wire();
                // Committed frames, complete, after `out`: nothing else, nothing twice.
                let nframes = if committed == 0 {
                    0
                } else if committed <= frame {
                    1
                } else {
                    2
                };
                let want = expected(out, &headers[..nframes], &payload[..committed], frame);
                assert_eq!(wire, want, "vectored {vectored} cut {cut}");
                assert!(committed > 0, "vectored {vectored} cut {cut}");
            }
        }
    }

    #[test]
    fn pending_and_errors_leave_no_residue() {
        let payload = [7u8; 100];
        let headers = [[1u8; HEADER_SIZE]; 4];
        for vectored in [true, false] {
            let mut f = fixture(vectored);
            let frames = DirectFrames {
                headers: &headers,
                payload: &payload,
                frame: 25,
            };
            f.script(&[Step::Pending]);
            assert!(f.write_frames(frames).is_pending());
            assert!(f.w.out.is_empty() && f.wire().is_empty());
            f.script(&[Step::Fail]);
            assert!(matches!(f.write_frames(frames), Poll::Ready(Err(_))));
            assert!(f.w.out.is_empty() && f.wire().is_empty());
            f.script(&[Step::Take(0)]);
            assert!(matches!(f.write_frames(frames), Poll::Ready(Err(_))));
            assert!(f.w.out.is_empty() && f.wire().is_empty());
            // The refused frames are not sent later by a write of other bytes.
            f.w.push_out(Bytes::from_static(b"next"));
            f.drain();
            assert_eq!(f.wire(), b"next", "vectored {vectored}");
        }
    }

    #[test]
    fn a_cut_tail_goes_first_then_later_frames() {
        let payload = [9u8; 60];
        let headers = [[2u8; HEADER_SIZE]; 3];
        for vectored in [true, false] {
            let mut f = fixture(vectored);
            let frames = DirectFrames {
                headers: &headers,
                payload: &payload,
                frame: 20,
            };
            // Takes the first frame and 3 bytes of the second's header.
            f.script(&[Step::Take(28 + 3)]);
            assert!(matches!(f.write_frames(frames), Poll::Ready(Ok(40))));
            assert_eq!(f.w.out_bytes, 25);
            // The third frame, written next, follows the tail.
            let rest = DirectFrames {
                headers: &headers[2..],
                payload: &payload[40..],
                frame: 20,
            };
            let mut got = 0;
            for _ in 0..3 {
                if let Poll::Ready(Ok(c)) = f.write_frames(rest) {
                    got += c;
                    if c > 0 {
                        break;
                    }
                }
            }
            assert_eq!(got, 20);
            f.drain();
            assert_eq!(f.wire(), expected(&[], &headers, &payload, 20));
        }
    }

    #[test]
    fn out_that_does_not_fit_goes_alone() {
        let mut f = fixture(true);
        for _ in 0..MAX_IOVECS {
            f.w.push_out(Bytes::from_static(b"o"));
        }
        let headers = [[3u8; HEADER_SIZE]];
        let frames = DirectFrames {
            headers: &headers,
            payload: b"pp",
            frame: 2,
        };
        assert!(matches!(f.write_frames(frames), Poll::Ready(Ok(0))));
        assert!(matches!(f.write_frames(frames), Poll::Ready(Ok(2))));
        let mut want = vec![b'o'; MAX_IOVECS];
        want.extend_from_slice(&[3u8; HEADER_SIZE]);
        want.extend_from_slice(b"pp");
        assert_eq!(f.wire(), want);
    }
}
