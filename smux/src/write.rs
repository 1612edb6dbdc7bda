//! The transport's write half, shared by the driver and the streams.
//!
//! A stream writing while nothing else waits to be sent (no control frame, no other
//! stream's frames, nothing of its own queued) writes its frames straight from the
//! caller's buffer with one vectored write (header, payload, header, payload, …) from
//! its own task: no copy and no hand-off to the driver. Everything else (and that fast
//! path when the lock is busy) goes through the driver as queued whole frames.
//!
//! Wire order is kept by one rule: bytes in [`WriteSide::out`] always go first. They
//! are frames the driver gathered, control frames, or the tail of a frame a direct
//! write cut short (a frame is never interleaved with another).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;

/// Slices per vectored write (Linux allows 1024; a few dozen cover a 256 KiB write).
pub(crate) const MAX_IOVECS: usize = 64;

/// Wakes every task that found the transport not writable. The transport keeps a
/// single waker, so all writes poll it with this proxy instead of their own.
#[derive(Default)]
pub(crate) struct WakeList {
    state: Mutex<(u64, Vec<Waker>)>,
}

impl WakeList {
    fn generation(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Adds `w` unless a wake-up happened since `seen` (then wakes it at once: the
    /// readiness it waits for may already be there).
    fn register(&self, w: &Waker, seen: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
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
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.0 = s.0.wrapping_add(1);
            std::mem::take(&mut s.1)
        };
        list.into_iter().for_each(Waker::wake);
    }
}

fn closed() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

/// The write half of the transport and the bytes that must be written before any new
/// frame.
pub(crate) struct WriteSide {
    /// `None` once the driver ended: the transport is dropped with the driver, as
    /// the peer expects, even while handles to the session live on.
    io: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub(crate) vectored: bool,
    /// Bytes to write before anything else, in order.
    pub(crate) out: VecDeque<Bytes>,
    pub(crate) out_bytes: usize,
    /// Coalescing buffer for transports without vectored writes.
    flat: BytesMut,
    /// Something was written since the last successful flush.
    pub(crate) need_flush: bool,
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

    /// Drops the transport's write half (the driver has ended).
    pub(crate) fn close(&mut self) {
        self.io = None;
        self.out.clear();
        self.out_bytes = 0;
        self.need_flush = false;
    }

    /// Polls the transport through the proxy waker; registers `cx` if it is pending.
    fn poll_io<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(Pin<&mut (dyn AsyncWrite + Send)>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Err(closed()));
        };
        let seen = self.wake.generation();
        let mut pcx = Context::from_waker(&self.proxy);
        let r = f(io.as_mut(), &mut pcx);
        if r.is_pending() {
            self.wake.register(cx.waker(), seen);
        }
        r
    }

    /// Queues bytes that must go out before any later frame.
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

    /// Writes from `out` until it is empty or the transport is full. `Ready(Ok(true))`
    /// if something was written.
    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut progress = false;
        while !self.out.is_empty() {
            if !self.vectored && self.out.len() > 1 {
                self.flat.reserve(self.out_bytes);
                for b in self.out.drain(..) {
                    self.flat.extend_from_slice(&b);
                }
                let all = self.flat.split().freeze();
                self.out.push_back(all);
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut k = 0;
            for (slot, b) in slices.iter_mut().zip(self.out.iter()) {
                *slot = IoSlice::new(b);
                k += 1;
            }
            let (Some(io), proxy, wake) = (&mut self.io, &self.proxy, &self.wake) else {
                return Poll::Ready(Err(closed()));
            };
            let seen = wake.generation();
            let mut pcx = Context::from_waker(proxy);
            let res = io
                .as_mut()
                .poll_write_vectored(&mut pcx, slices.get(..k).unwrap_or_default());
            match res {
                Poll::Pending => {
                    wake.register(cx.waker(), seen);
                    return if progress {
                        Poll::Ready(Ok(true))
                    } else {
                        Poll::Pending
                    };
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero)));
                }
                Poll::Ready(Ok(n)) => {
                    progress = true;
                    self.need_flush = true;
                    self.consume_out(n);
                }
            }
        }
        Poll::Ready(Ok(progress))
    }

    /// Flushes the transport if something was written and `out` is empty.
    pub(crate) fn poll_flush_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.need_flush || !self.out.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let r = self.poll_io(cx, |io, cx| io.poll_flush(cx));
        if let Poll::Ready(Ok(())) = r {
            self.need_flush = false;
        }
        r
    }

    pub(crate) fn poll_shutdown_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_io(cx, |io, cx| io.poll_shutdown(cx))
    }

    /// Writes whatever of `out` fits, then the frames `headers[i]` + `payload` chunk
    /// `i` (the payload cut in `frame` bytes pieces) in the same write. Returns how many
    /// payload bytes were committed: every frame written completely, plus a frame
    /// written in part, whose tail is copied to `out` so that it goes next.
    /// `Ready(Ok(0))` means only bytes of `out` were written (or none fitted).
    pub(crate) fn poll_write_frames(
        &mut self,
        cx: &mut Context<'_>,
        headers: &[[u8; crate::frame::HEADER_SIZE]],
        payload: &[u8],
        frame: usize,
    ) -> Poll<io::Result<usize>> {
        let res = if self.vectored {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut k = 0;
            let room = MAX_IOVECS.saturating_sub(2 * headers.len());
            for b in self.out.iter().take(room) {
                if let Some(slot) = slices.get_mut(k) {
                    *slot = IoSlice::new(b);
                    k += 1;
                }
            }
            let out_in_write = k;
            for (h, p) in headers.iter().zip(payload.chunks(frame)) {
                if let Some(slot) = slices.get_mut(k) {
                    *slot = IoSlice::new(h);
                }
                if let Some(slot) = slices.get_mut(k + 1) {
                    *slot = IoSlice::new(p);
                }
                k += 2;
            }
            if out_in_write < self.out.len() {
                // Not all of `out` fits in this write: write only `out`.
                k = out_in_write;
            }
            let slices = slices.get(..k.min(MAX_IOVECS)).unwrap_or_default();
            let (Some(io), proxy, wake) = (&mut self.io, &self.proxy, &self.wake) else {
                return Poll::Ready(Err(closed()));
            };
            let seen = wake.generation();
            let mut pcx = Context::from_waker(proxy);
            let r = io.as_mut().poll_write_vectored(&mut pcx, slices);
            if r.is_pending() {
                wake.register(cx.waker(), seen);
            }
            if out_in_write < self.out.len() {
                return match r {
                    Poll::Ready(Ok(0)) => {
                        Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero)))
                    }
                    Poll::Ready(Ok(n)) => {
                        self.need_flush = true;
                        self.consume_out(n);
                        Poll::Ready(Ok(0))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                };
            }
            r
        } else {
            // Coalesce everything into one buffer: one copy, but still no hand-off.
            self.flat.clear();
            for b in &self.out {
                self.flat.extend_from_slice(b);
            }
            for (h, p) in headers.iter().zip(payload.chunks(frame)) {
                self.flat.extend_from_slice(h);
                self.flat.extend_from_slice(p);
            }
            let (Some(io), proxy, wake) = (&mut self.io, &self.proxy, &self.wake) else {
                return Poll::Ready(Err(closed()));
            };
            let seen = wake.generation();
            let mut pcx = Context::from_waker(proxy);
            let r = io.as_mut().poll_write(&mut pcx, &self.flat);
            match r {
                Poll::Pending => {
                    wake.register(cx.waker(), seen);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero)));
                }
                Poll::Ready(Ok(n)) => {
                    // Everything is committed: what was not written becomes `out`.
                    self.need_flush = true;
                    self.out.clear();
                    self.out_bytes = 0;
                    self.flat.advance(n.min(self.flat.len()));
                    let rest = self.flat.split().freeze();
                    self.push_out(rest);
                    return Poll::Ready(Ok(payload.len()));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        };
        match res {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(0)) => Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero))),
            Poll::Ready(Ok(n)) => {
                self.need_flush = true;
                let mut rem = self.consume_out(n);
                let mut committed = 0;
                for (h, p) in headers.iter().zip(payload.chunks(frame)) {
                    let flen = h.len() + p.len();
                    if rem >= flen {
                        rem -= flen;
                        committed += p.len();
                        continue;
                    }
                    if rem > 0 {
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
                    }
                    break;
                }
                Poll::Ready(Ok(committed))
            }
        }
    }
}
