//! Stream handles: [`Stream`] and its owned halves.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::Error;
use crate::frame::{Cmd, HEADER_SIZE, Header};
use crate::shared::{Shared, set_waker};
use crate::write::{DirectFrames, FLAT_MAX};

/// Frames per direct write (two slices each, within the vectored-write limit).
const DIRECT_FRAMES: usize = 16;

/// One reference to a stream's shared state; the last one to go closes the stream.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    id: u32,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let wake = self.shared.lock().release_stream(self.id);
        if wake {
            self.shared.driver.wake();
        }
    }
}

impl Handle {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let config = &self.shared.config;
        let mut g = self.shared.lock();
        let inner = &mut *g;
        let Some(st) = inner.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(inner
                .error
                .clone()
                .unwrap_or(Error::SessionClosed)
                .into_io()));
        };
        if st.rx.len > 0 {
            let mut n = 0;
            while buf.remaining() > 0 {
                let Some(front) = st.rx.queue.front_mut() else {
                    break;
                };
                let k = front.len().min(buf.remaining());
                buf.put_slice(front.get(..k).unwrap_or_default());
                front.advance(k);
                if front.is_empty() {
                    st.rx.queue.pop_front();
                }
                n += k;
            }
            st.rx.len -= n;
            let mut wake = inner.return_tokens(n);
            let before = inner.shaper.control.len();
            inner.after_read(self.id, n, config);
            wake |= inner.shaper.control.len() != before;
            drop(g);
            if wake {
                self.shared.driver.wake();
            }
            return Poll::Ready(Ok(()));
        }
        if st.rx.fin {
            return Poll::Ready(Ok(()));
        }
        set_waker(&mut st.rx.waker, cx.waker());
        if let Some(e) = &inner.error {
            st.rx.waker = None;
            return Poll::Ready(Err(e.clone().into_io()));
        }
        Poll::Pending
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Some(r) = self.poll_write_direct(cx, data) {
            return r;
        }
        self.poll_write_queued(cx, data)
    }

    /// The fast path (see `write.rs`): when nothing must go before them, write the
    /// frames straight from `data` from this task. `None` when it does not apply (the
    /// caller queues the frames for the driver instead).
    ///
    /// It applies when the session is healthy, this stream has nothing queued and no
    /// FIN, no stream the shaper would serve first is waiting (E.6 order: the heap's
    /// head has sent more than this stream), and in v2 no stream waits for send
    /// credit, the peer's window is open and the session credit is plentiful
    /// ([`SendCredit::allows_direct`](crate::flow::SendCredit::allows_direct), stricter
    /// than what `Conn::gather` checks frame by frame). Queued control frames go first, in the same
    /// write. The bytes are counted as committed and sent *before* the write (a UPD
    /// for them may arrive before this task gets the lock back, and a UPD beyond what
    /// we count as sent is a protocol violation); what the transport did not take is
    /// taken back afterwards. The credit is adjusted with `on_sent` and
    /// `credit.adjust` as in `gather`, so its invariant holds at every lock release.
    fn poll_write_direct(
        &self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Option<Poll<io::Result<usize>>> {
        let shared = &*self.shared;
        let config = &shared.config;
        let mut w = shared.lock_writer();
        if w.is_closed() {
            return None;
        }
        let max_frame = config.max_frame_size;
        let (ver, v2, n) = {
            let mut g = shared.lock();
            if g.error.is_some() || g.closing || !g.shaper.waiting.is_empty() {
                return None;
            }
            let v2 = g.is_v2();
            let ver = g.ver();
            let inner = &mut *g;
            let st = inner.streams.get_mut(&self.id)?;
            if st.tx.fin_queued
                || st.tx.error.is_some()
                || st.tx.in_heap
                || !st.tx.pending.is_empty()
            {
                return None;
            }
            if let Some(top) = inner.shaper.heap.peek()
                && (top.prio.wrapping_sub(st.tx.prio) as i32) <= 0
            {
                return None;
            }
            let limit = if w.is_vectored() {
                DIRECT_FRAMES * max_frame
            } else {
                FLAT_MAX.max(max_frame)
            };
            let mut n = data
                .len()
                .min(limit)
                .min(config.max_stream_send_buffer.max(1));
            if v2 {
                let writable = st.tx.flow.writable();
                if writable <= 0 {
                    return None;
                }
                n = n.min(writable as usize);
                if !inner.credit.allows_direct(n as u32) {
                    return None;
                }
                st.tx.flow.commit(n as u32);
                let before = st.tx.flow.inflight();
                st.tx.flow.on_sent(n as u32);
                inner.credit.adjust(before, st.tx.flow.inflight());
            }
            if !inner.shaper.control.is_empty() {
                w.push_out(inner.shaper.control.split().freeze());
            }
            (ver, v2, n)
        };
        let payload = data.get(..n).unwrap_or_default();
        let mut headers = [[0u8; HEADER_SIZE]; DIRECT_FRAMES];
        let mut k = 0;
        for (h, part) in headers.iter_mut().zip(payload.chunks(max_frame)) {
            // part.len() <= max_frame_size <= 65535 (validated config).
            *h = Header::new(ver, Cmd::Psh, part.len() as u16, self.id).encode();
            k += 1;
        }
        let frames = DirectFrames {
            headers: headers.get(..k).unwrap_or_default(),
            payload,
            frame: max_frame,
        };
        let mut res = Poll::Pending;
        // A first write may only drain bytes queued before ours; then try once more.
        for _ in 0..2 {
            res = w.poll_write_frames(cx, frames);
            if !matches!(res, Poll::Ready(Ok(0))) {
                break;
            }
        }
        let committed = match res {
            Poll::Ready(Ok(c)) => c,
            _ => 0,
        };
        let mut wake_driver = !w.out_is_empty();
        if committed > 0 && !wake_driver {
            match w.poll_flush_io(cx) {
                Poll::Ready(Ok(())) => {}
                // The driver finishes the flush (or meets the error).
                _ => wake_driver = true,
            }
        }
        {
            let mut g = shared.lock();
            let inner = &mut *g;
            if let Some(st) = inner.streams.get_mut(&self.id) {
                if v2 {
                    let unsent = (n - committed) as u32;
                    let before = st.tx.flow.inflight();
                    st.tx.flow.unsend(unsent);
                    inner.credit.adjust(before, st.tx.flow.inflight());
                    st.tx.prio = st.tx.prio.wrapping_add(committed as u32);
                } else {
                    st.tx.prio = st
                        .tx
                        .prio
                        .wrapping_add(committed.div_ceil(max_frame) as u32);
                }
            }
            inner.check_credit();
        }
        drop(w);
        if let Poll::Ready(Err(e)) = res {
            return Some(Poll::Ready(Err(shared.fail_io(e))));
        }
        if wake_driver {
            shared.driver.wake();
        }
        match res {
            Poll::Ready(Ok(0)) => {
                // Only bytes queued before ours went out (the transport takes little at
                // a time): queue the frames for the driver instead.
                None
            }
            Poll::Ready(Ok(c)) => Some(Poll::Ready(Ok(c))),
            // The transport is full: the proxy waker wakes this task when it drains.
            _ => Some(Poll::Pending),
        }
    }

    /// Copies whole frames into the stream's queue for the driver.
    fn poll_write_queued(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let config = &self.shared.config;
        let mut g = self.shared.lock();
        if let Some(e) = &g.error {
            return Poll::Ready(Err(e.clone().into_io()));
        }
        if g.closing {
            return Poll::Ready(Err(Error::SessionClosed.into_io()));
        }
        let v2 = g.is_v2();
        let ver = g.ver();
        let Some(st) = g.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(Error::SessionClosed.into_io()));
        };
        if st.tx.fin_queued {
            return Poll::Ready(Err(Error::StreamClosed.into_io()));
        }
        if let Some(e) = &st.tx.error {
            return Poll::Ready(Err(e.clone().into_io()));
        }
        let mut allowed = config
            .max_stream_send_buffer
            .saturating_sub(st.tx.pending.payload()) as i64;
        if v2 {
            // Go fails such a write with io.EOF once the peer's FIN arrived, because a
            // Go peer cannot read after sending FIN. A Rust peer can (shutdown is a
            // half-close) and keeps sending UPD, so we keep waiting for the window.
            allowed = allowed.min(st.tx.flow.writable());
        }
        if allowed <= 0 {
            set_waker(&mut st.tx.waker, cx.waker());
            return Poll::Pending;
        }
        let n = data.len().min(allowed as usize);
        let max_frame = config.max_frame_size;
        let nframes = n.div_ceil(max_frame);
        let mut chunk = BytesMut::with_capacity(n + nframes * HEADER_SIZE);
        for part in data.get(..n).unwrap_or_default().chunks(max_frame) {
            // part.len() <= max_frame_size <= 65535 (validated config).
            let len = part.len() as u16;
            chunk.put_slice(&Header::new(ver, Cmd::Psh, len, self.id).encode());
            chunk.put_slice(part);
        }
        st.tx.pending.push(chunk.freeze(), n);
        if v2 {
            st.tx.flow.commit(n as u32);
        }
        let was_scheduled = st.tx.in_heap;
        g.schedule(self.id);
        drop(g);
        if !was_scheduled {
            self.shared.driver.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut g = self.shared.lock();
        let inner = &mut *g;
        let Some(st) = inner.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        if st.tx.pending.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &inner.error {
            return Poll::Ready(Err(e.clone().into_io()));
        }
        set_waker(&mut st.tx.waker, cx.waker());
        Poll::Pending
    }

    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut g = self.shared.lock();
            if g.error.is_none() && g.streams.get(&self.id).is_some_and(|s| !s.tx.fin_queued) {
                g.queue_fin(self.id);
                drop(g);
                self.shared.driver.wake();
            }
        }
        self.poll_flush(cx)
    }

    fn start_shutdown(&self) {
        let mut g = self.shared.lock();
        if g.error.is_none() && g.streams.get(&self.id).is_some_and(|s| !s.tx.fin_queued) {
            g.queue_fin(self.id);
            drop(g);
            self.shared.driver.wake();
        }
    }

    fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let g = self.shared.lock();
        (g.local_addr, g.peer_addr)
    }
}

/// A multiplexed stream: `AsyncRead + AsyncWrite` like a `TcpStream`.
///
/// - Writes commit whole frames: `poll_write` either returns `Ready(Ok(n))` after
///   queueing exactly `n` bytes (which will be sent unless the session dies), or
///   `Pending` having queued nothing. A write cancelled or cut short by a timeout
///   therefore never loses or duplicates data: the returned counts are exact.
/// - `poll_flush` waits until every committed frame has been handed to the transport.
/// - `poll_shutdown` sends FIN after the data already written (reads stay possible; smux
///   has no half-close, so Go peers usually close their side too, E.7).
/// - Reads return EOF after the peer's FIN once the buffered data is drained. Writing
///   after the peer's FIN stays allowed (a Rust peer may have only shut down its write
///   side). A Go peer cannot read after its FIN, so in v2 such a write blocks once the
///   window is used up (Go returns EOF there instead): close the stream when the peer
///   is done, as kcptun does.
/// - Dropping the stream sends FIN if it was not sent and returns unread bytes to the
///   session's receive buffer.
///
/// In v1 there is no per-stream flow control: data nobody reads fills the session's
/// receive buffer and then stalls *every* stream of the session (smux v1 design). In v2
/// the peer may send at most our advertised window per stream (we announce it with a
/// UPD right after the SYN; until that arrives a sender assumes Go's 256 KiB), and we
/// keep reading the transport for any data within those windows, so one unread stream
/// never stalls the others.
#[derive(Debug)]
pub struct Stream {
    h: Handle,
}

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, id: u32) -> Self {
        Self {
            h: Handle { shared, id },
        }
    }

    /// The stream id (odd if opened by the client, even if opened by the server).
    pub fn id(&self) -> u32 {
        self.h.id
    }

    /// Local address of the session's transport, if known (see
    /// [`Session::with_addrs`](crate::Session::with_addrs)).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.h.addrs().0
    }

    /// Peer address of the session's transport, if known.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.h.addrs().1
    }

    /// Splits into owned halves usable from different tasks. Dropping the write half
    /// sends FIN (like tokio's `OwnedWriteHalf`); the stream closes when both are gone.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let h = Arc::new(self.h);
        (OwnedReadHalf { h: h.clone() }, OwnedWriteHalf { h })
    }

    /// Borrowed halves (tokio's generic [`tokio::io::split`] works as well).
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (ReadHalf { h: &self.h }, WriteHalf { h: &self.h })
    }

    /// Queues `data` for the driver, bypassing the direct path (tests of the shaper).
    #[cfg(test)]
    pub(crate) fn write_queued(&self, data: &[u8]) -> usize {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.h.poll_write_queued(&mut cx, data) {
            Poll::Ready(Ok(n)) => n,
            other => panic!("queued write did not complete: {other:?}"),
        }
    }

    #[cfg(test)]
    pub(crate) fn advertised_window(&self) -> u32 {
        let g = self.h.shared.lock();
        g.streams.get(&self.h.id).map_or(0, |s| s.rx.flow.window())
    }
}

impl AsyncRead for Stream {
    /// # Cancel safety
    /// Data is removed from the stream only when `Ready` is returned.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.h.poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.h.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.h.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.h.poll_shutdown(cx)
    }
}

/// Owned read half of a [`Stream`] (see [`Stream::into_split`]).
#[derive(Debug)]
pub struct OwnedReadHalf {
    h: Arc<Handle>,
}

/// Owned write half of a [`Stream`]; dropping it sends FIN.
#[derive(Debug)]
pub struct OwnedWriteHalf {
    h: Arc<Handle>,
}

impl OwnedReadHalf {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.h.id
    }
}

impl OwnedWriteHalf {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.h.id
    }
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        self.h.start_shutdown();
    }
}

impl AsyncRead for OwnedReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.h.poll_read(cx, buf)
    }
}

impl AsyncWrite for OwnedWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.h.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.h.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.h.poll_shutdown(cx)
    }
}

/// Borrowed read half of a [`Stream`] (see [`Stream::split`]).
#[derive(Debug)]
pub struct ReadHalf<'a> {
    h: &'a Handle,
}

/// Borrowed write half of a [`Stream`] (see [`Stream::split`]).
#[derive(Debug)]
pub struct WriteHalf<'a> {
    h: &'a Handle,
}

impl AsyncRead for ReadHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.h.poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteHalf<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.h.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.h.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.h.poll_shutdown(cx)
    }
}
