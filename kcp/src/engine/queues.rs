//! The application side of the queues: `send` cuts data into `snd_queue`; received segments
//! go through `rcv_buf` (out of order) into `rcv_queue` (in order), which `recv` drains.

use super::{ASK_TELL, Kcp, RcvSeg, SndSeg, TxState, diff};
use crate::KcpError;

/// Largest number of fragments of one message: `frg` is a byte (docs/wire-format.md#kcp-send).
const MAX_FRAGMENTS: usize = 255;
/// Payload buffers kept for reuse. Enough to absorb a burst without going back to the
/// allocator; dropped entirely whenever the engine becomes idle so idle sessions hold nothing.
const POOL_MAX: usize = 256;

impl Kcp {
    /// Queues application data (docs/wire-format.md#kcp-send). Returns the number of bytes accepted, which
    /// is all of `data`. An empty `data` is a no-op returning `Ok(0)` (kcp-go returns -1).
    ///
    /// Message mode keeps `data` as one message of up to 255 fragments; stream mode first tops
    /// up the last queued segment and has no size limit. The send queue is bounded only by what
    /// the application queues: check [`wait_snd`](Kcp::wait_snd) against the windows, as the
    /// kcp-go session does before writing.
    ///
    /// A full flush becomes due at once (kcp-go's `Write` flushes right away), unless
    /// [`set_write_delay`](Kcp::set_write_delay) is on.
    ///
    /// # Errors
    /// [`KcpError::MessageTooLarge`] in message mode if more than 255 fragments would be needed.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, KcpError> {
        if data.is_empty() {
            return Ok(0);
        }
        let total = data.len();
        let mss = self.mss;
        let mut rest = data;
        if self.stream {
            if let Some(tail) = self.snd_queue.back_mut()
                && tail.data.len() < mss
            {
                let extend = (mss - tail.data.len()).min(rest.len());
                tail.data.extend_from_slice(&rest[..extend]);
                rest = &rest[extend..];
            }
            if rest.is_empty() {
                self.queued();
                return Ok(total);
            }
        }
        let count = rest.len().div_ceil(mss).max(1);
        if !self.stream && count > MAX_FRAGMENTS {
            return Err(KcpError::MessageTooLarge {
                len: total,
                fragments: count,
            });
        }
        for (i, chunk) in rest.chunks(mss).enumerate() {
            let mut buf = self.take_buffer();
            buf.clear();
            buf.reserve(mss);
            buf.extend_from_slice(chunk);
            let frg = if self.stream {
                0
            } else {
                (count - i - 1) as u8
            };
            self.snd_queue.push_back(SndSeg {
                sn: 0,
                ts: 0,
                frg,
                rto: 0,
                xmit: 0,
                resendts: 0,
                fastack: 0,
                acked: false,
                data: buf,
                tx: TxState::default(),
            });
        }
        self.queued();
        Ok(total)
    }

    /// New data is queued: flush now like kcp-go's `Write`, or at the next periodic flush with
    /// write-delay on.
    pub(super) fn queued(&mut self) {
        if self.write_delay {
            self.arm();
        } else {
            self.pending_full = true;
        }
    }

    /// Size of the next message (message mode) or of the unread rest of the next segment
    /// (stream mode); `None` if nothing is ready (kcp-go `PeekSize` returning -1).
    pub fn peek_size(&self) -> Option<usize> {
        let head = self.rcv_queue.front()?;
        if self.stream {
            return Some(head.data.len() - self.rcv_head_off);
        }
        if head.frg == 0 {
            return Some(head.data.len());
        }
        if self.rcv_queue.len() < usize::from(head.frg) + 1 {
            return None;
        }
        let mut len = 0;
        for seg in &self.rcv_queue {
            len += seg.data.len();
            if seg.frg == 0 {
                break;
            }
        }
        Some(len)
    }

    /// Takes received data out (docs/wire-format.md#kcp-recv). `Ok(0)` means nothing is ready (or, in message
    /// mode, that a peer sent an empty message: check [`peek_size`](Kcp::peek_size) to tell).
    ///
    /// Message mode returns exactly one whole message. Stream mode fills `buf` from as many
    /// queued segments as fit, consuming the last one partially if needed (kcp-go hands out one
    /// segment per call; the bytes are the same).
    ///
    /// If the receive queue was full before this call and is not any more, a WINS goes out on the
    /// next flush (kcp-go's `fast_recover`), so a peer stalled on a zero window resumes at once.
    ///
    /// # Errors
    /// [`KcpError::BufferTooSmall`] in message mode when the next message does not fit; nothing
    /// is consumed.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, KcpError> {
        if self.rcv_queue.is_empty() {
            return Ok(0);
        }
        let fast_recover = self.rcv_queue.len() >= self.rcv_wnd as usize;
        let n = if self.stream {
            let mut n = 0;
            while let Some(seg) = self.rcv_queue.front() {
                let avail = &seg.data[self.rcv_head_off..];
                let k = avail.len().min(buf.len() - n);
                buf[n..n + k].copy_from_slice(&avail[..k]);
                n += k;
                self.rcv_head_off += k;
                if self.rcv_head_off < seg.data.len() {
                    break;
                }
                self.rcv_head_off = 0;
                if let Some(seg) = self.rcv_queue.pop_front() {
                    self.recycle(seg.data);
                }
                if n == buf.len() {
                    break;
                }
            }
            n
        } else {
            let Some(size) = self.peek_size() else {
                return Ok(0);
            };
            if size > buf.len() {
                return Err(KcpError::BufferTooSmall { needed: size });
            }
            let mut n = 0;
            while let Some(seg) = self.rcv_queue.pop_front() {
                buf[n..n + seg.data.len()].copy_from_slice(&seg.data);
                n += seg.data.len();
                let last = seg.frg == 0;
                self.recycle(seg.data);
                if last {
                    break;
                }
            }
            n
        };
        self.move_ready();
        if fast_recover && self.rcv_queue.len() < self.rcv_wnd as usize {
            self.probe |= ASK_TELL;
        }
        self.arm();
        Ok(n)
    }

    /// Inserts an in-window PUSH into `rcv_buf` (sorted, no duplicates), then moves the ready
    /// prefix to `rcv_queue`. Returns true for a repeat.
    pub(super) fn parse_data(&mut self, sn: u32, frg: u8, payload: &[u8]) -> bool {
        if diff(sn, self.rcv_nxt.wrapping_add(self.rcv_wnd)) >= 0 || diff(sn, self.rcv_nxt) < 0 {
            return true;
        }
        let mut insert_idx = 0;
        let mut repeat = false;
        for (i, seg) in self.rcv_buf.iter().enumerate().rev() {
            if seg.sn == sn {
                repeat = true;
                break;
            }
            if diff(sn, seg.sn) > 0 {
                insert_idx = i + 1;
                break;
            }
        }
        if !repeat {
            let mut buf = self.take_buffer();
            buf.clear();
            buf.extend_from_slice(payload);
            self.rcv_buf
                .insert(insert_idx, RcvSeg { sn, frg, data: buf });
        }
        self.move_ready();
        repeat
    }

    /// Moves in-order segments from `rcv_buf` to `rcv_queue` while the queue has room.
    fn move_ready(&mut self) {
        while let Some(seg) = self.rcv_buf.front() {
            if seg.sn == self.rcv_nxt && self.rcv_queue.len() < self.rcv_wnd as usize {
                self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                if let Some(seg) = self.rcv_buf.pop_front() {
                    self.rcv_queue.push_back(seg);
                }
            } else {
                break;
            }
        }
    }

    /// An empty segment buffer: this engine's spare, else this thread's (see `spare`), else a new one.
    fn take_buffer(&mut self) -> Vec<u8> {
        self.pool
            .pop()
            .or_else(super::spare::take_segment)
            .unwrap_or_default()
    }

    pub(super) fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < POOL_MAX && buf.capacity() > 0 {
            self.pool.push(buf);
        }
    }

    pub(super) fn wnd_unused(&self) -> u16 {
        let q = self.rcv_queue.len();
        let w = self.rcv_wnd as usize;
        if q < w {
            (w - q).min(usize::from(u16::MAX)) as u16
        } else {
            0
        }
    }
}
