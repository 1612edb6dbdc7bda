//! One KCP conversation without IO: the engine, its crypt in both directions, its FEC encoder and decoder,
//! the datagrams waiting to be sent, the application-side rules (stream or message mode, write delay, dead
//! link) and its counters as plain integers.
//!
//! The driver feeds it received datagrams ([`Connection::handle_datagram`], then
//! [`Connection::finish_input`] once per batch), wakes it when [`Connection::poll_timeout`] says
//! ([`Connection::handle_timeout`]), and sends what [`Connection::transmits`] holds. Reads and writes from the
//! application go through it too, so every rule of the session lives here and can be tested in virtual time.
//!
//! Nothing here allocates per packet once the queues have grown to the session's usual burst.

use rkcp_crypt::SessionSealer;
use rkcp_engine::{Freshness, Kcp, KcpError};
use rkcp_fec::{Classified, FecDecoder};

use crate::config::KcpConfig;
use crate::error::{CloseReason, ConfigError, SessionError};
use crate::proto::afec::FecSender;
use crate::proto::packet::{DropReason, emit};
use crate::proto::time::Timestamp;
use crate::snmp::SnmpSnapshot;
use crate::udp::TxQueue;

/// FEC header bytes on data packets (seqid, type, size).
const FEC_HEADER: usize = rkcp_fec::HEADER_SIZE_PLUS2;

/// KCP's data command, byte 4 of a segment header.
const CMD_PUSH: u8 = rkcp_engine::Command::Push as u8;

/// Datagrams kept queued while the socket cannot take them; beyond this the queue is dropped, as a full link
/// would (KCP retransmits).
pub(crate) const MAX_PENDING_TX: usize = 8192;

/// One conversation's state machine.
pub(crate) struct Connection {
    pub(crate) kcp: Kcp,
    // Boxed: inline they are ~6 KB, most of an idle session's memory even with FEC off (10,000 sessions).
    /// The encoder, with its adaptive policy if any ([`crate::AdaptiveFec`]).
    fec_enc: Option<Box<FecSender>>,
    fec_dec: Option<Box<FecDecoder>>,
    /// Boxed: inline the AEAD sealer is 48 bytes of every idle session.
    crypt: Option<Box<SessionSealer>>,
    /// Cipher header in front (0 without a cipher; 20 for kcp-go ciphers).
    crypt_head: usize,
    /// Cipher trailer (authenticated kinds only).
    crypt_tail: usize,
    /// Sealed datagrams waiting for the socket.
    tx: TxQueue,
    /// Data datagrams fed to the engine since its last flush: about how many ACKs it holds.
    unacked: usize,
    stream: bool,
    write_delay: bool,
    /// With write delay: the flush after a write waits until this time.
    delay_until: Option<Timestamp>,
    dead_link: u32,
    closed: Option<CloseReason>,
    /// Rest of a message that did not fit the caller's buffer (message mode read as a byte stream).
    leftover: Vec<u8>,
    leftover_pos: usize,
    /// This connection's kcp-go counters (engine counters are added by [`Connection::counters`]).
    counters: SnmpSnapshot,
    /// Lifecycle bounds (ms): idle timeout (`None`: off) and the bound on a graceful shutdown.
    idle_ms: Option<u64>,
    close_ms: u64,
    /// Last datagram from the peer (or the first timeout, which starts the idle clock).
    last_rx: Option<Timestamp>,
    /// A graceful shutdown started: it fails at this time unless everything was acknowledged.
    shutdown_by: Option<Timestamp>,
    /// Whether the peer has proved its address (listener admission; a client's peer always counts as proved).
    address: Address,
}

/// Out-of-order segments an unverified peer can make the engine hold.
const UNVERIFIED_OUT_OF_ORDER: usize = 4;
/// An unanswered echo request is repeated this often.
const ECHO_EVERY_MS: u64 = 1000;

/// Address validation of an accepted connection (see `proto::admission`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Address {
    /// Proved (or not ours to check: a client's server).
    Proven,
    /// Just proved: [`Connection::take_verified`] reports it once.
    JustProven,
    /// Not yet: the engine holds a small window, and an echo request goes out when due.
    Unverified { echo_at: Timestamp, rcv_wnd: u32 },
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("conv", &self.kcp.conv())
            .field("queued", &self.tx.len())
            .field("closed", &self.closed)
            .finish()
    }
}

impl Connection {
    /// Builds the engine and pipeline for `conv` from a config, sealing with `sealer` (this session's half of
    /// `cfg.crypt`: [`rkcp_crypt::PacketCrypt::client_session`] or `server_session`; `None` without a cipher).
    pub(crate) fn new(
        conv: u32,
        cfg: &KcpConfig,
        sealer: Option<SessionSealer>,
    ) -> Result<Connection, SessionError> {
        cfg.validate()?;
        let (crypt_head, crypt_tail) = sealer
            .as_ref()
            .map_or((0, 0), |c| (c.header_len(), c.trailer_len()));
        // A peer configured like us sends the shape our encoder does (autotune finds any other).
        let fec_dec = match &cfg.fec {
            Some(f) => FecDecoder::new(f.data_shards, FecSender::wire_parity(f))
                .ok()
                .map(Box::new),
            None => None,
        };
        let fec_head = if cfg.fec.is_some() { FEC_HEADER } else { 0 };
        // With the session's fill-ins (see `KcpConfig::engine_config`): ACKs wait at most
        // `DEFAULT_ACK_DELAY_MS` (2 ms) unless `ack_delay` says otherwise (a sender whose window is full moves one window per
        // ACK wait, which capped kcptun's 128-segment client window near 6 MB/s on any path), and the
        // loss-tolerant controller comes with time-based loss recovery.
        let engine = cfg.engine_config_reserving(crypt_head + crypt_tail + fec_head);
        let kcp = Kcp::with_config(conv, &engine)
            .map_err(|e| SessionError::Config(ConfigError::Engine(e)))?;
        let fec_enc = match &cfg.fec {
            Some(f) => Some(Box::new(FecSender::new(f, crypt_head, &kcp)?)),
            None => None,
        };
        Ok(Connection {
            kcp,
            fec_enc,
            fec_dec,
            crypt: sealer.map(Box::new),
            crypt_head,
            crypt_tail,
            tx: TxQueue::default(),
            unacked: 0,
            stream: cfg.kcp.stream,
            write_delay: cfg.kcp.write_delay,
            delay_until: None,
            dead_link: cfg.kcp.dead_link,
            closed: None,
            leftover: Vec::new(),
            leftover_pos: 0,
            counters: SnmpSnapshot::default(),
            address: Address::Proven,
            idle_ms: cfg.idle_timeout.map(|d| d.as_millis() as u64),
            close_ms: cfg.close_timeout.as_millis() as u64,
            last_rx: None,
            shutdown_by: None,
        })
    }

    /// An accepted connection whose peer has not proved its address: until it does, the engine holds at
    /// most `window` segments and a few out of order, and an echo request goes out now and every second.
    pub(crate) fn start_unverified(&mut self, now: Timestamp, window: u32) {
        let rcv_wnd = self.kcp.rcv_wnd();
        self.kcp.set_window(0, window.clamp(1, rcv_wnd.max(1)));
        self.kcp
            .set_out_of_order_limit(Some(UNVERIFIED_OUT_OF_ORDER));
        self.address = Address::Unverified {
            echo_at: now,
            rcv_wnd,
        };
    }

    /// An accepted connection whose peer proved its address with a stateless cookie (in the first datagram,
    /// which [`Connection::handle_datagram`] keeps from being an RTT sample like any answer to a cookie).
    pub(crate) fn address_proven_by_cookie(&mut self) {
        self.address = Address::Proven;
    }

    /// Whether the peer proved its address since the last call (once).
    pub(crate) fn take_verified(&mut self) -> bool {
        if self.address == Address::JustProven {
            self.address = Address::Proven;
            return true;
        }
        false
    }

    /// Whether the peer has proved its address.
    #[cfg(test)]
    pub(crate) fn verified(&self) -> bool {
        !matches!(self.address, Address::Unverified { .. })
    }

    /// After input or on a timer: an unverified peer that proved itself gets the full window; otherwise the
    /// echo request goes out when due.
    fn check_address(&mut self, now: Timestamp) {
        let Address::Unverified { echo_at, rcv_wnd } = self.address else {
            return;
        };
        if self.kcp.peer_proven() {
            self.kcp.set_window(0, rcv_wnd);
            self.kcp.set_out_of_order_limit(None);
            self.address = Address::JustProven;
            // Tell the peer about the window at once.
            self.flush_now(now);
        } else if echo_at <= now {
            self.output(|kcp, mut out| kcp.send_echo_request(now.engine(), &mut out));
            self.address = Address::Unverified {
                echo_at: now.add_millis(ECHO_EVERY_MS),
                rcv_wnd,
            };
        }
    }

    /// The conversation id.
    pub(crate) fn conv(&self) -> u32 {
        self.kcp.conv()
    }

    /// Crypt + FEC header bytes plus the cipher trailer: what the engine reserves out of each datagram.
    pub(crate) fn overhead(&self) -> usize {
        self.crypt_head
            + self.crypt_tail
            + if self.fec_enc.is_some() {
                FEC_HEADER
            } else {
                0
            }
    }

    /// Why the connection ended, if it did.
    pub(crate) fn closed(&self) -> Option<CloseReason> {
        self.closed
    }

    /// Sealed datagrams waiting to be sent, oldest first.
    pub(crate) fn transmits(&mut self) -> &mut TxQueue {
        &mut self.tx
    }

    /// Swaps the queue of datagrams waiting to be sent with `other` (the driver sends them without holding
    /// the connection, then reports with [`Connection::note_sent`]).
    pub(crate) fn swap_transmits(&mut self, other: &mut TxQueue) {
        std::mem::swap(&mut self.tx, other);
    }

    /// Counts `pkts` datagrams of `bytes` bytes in all that the driver sent from a swapped-out queue.
    pub(crate) fn note_sent(&mut self, pkts: usize, bytes: usize) {
        self.counters.out_pkts += pkts as u64;
        self.counters.out_bytes += bytes as u64;
    }

    /// The driver handed `n` queued datagrams (of `bytes` bytes in all) to the socket.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn transmitted(&mut self, n: usize) {
        let bytes: usize = (0..n).map(|i| self.tx.get(i).len()).sum();
        self.counters.out_pkts += n as u64;
        self.counters.out_bytes += bytes as u64;
        self.tx.consume(n);
        if self.tx.len() > MAX_PENDING_TX {
            self.tx.clear();
        }
    }

    // ------------------------------------------------------------------ network side

    /// Counts a datagram dropped before it reached this connection (a client socket's foreign or
    /// unopenable datagrams): `InCsumErrors` for a failed checksum, `InErrs` otherwise.
    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        match reason {
            DropReason::Checksum => self.counters.in_csum_errors += 1,
            _ => self.counters.in_errs += 1,
        }
    }

    /// Feeds one opened datagram (crypt layer removed, at least 24 bytes) to FEC and the engine, counting as
    /// kcp-go's `kcpInput` does. Call [`Connection::finish_input`] once the batch is done.
    pub(crate) fn handle_datagram(&mut self, now: Timestamp, data: &[u8]) {
        if self.closed.is_some() {
            return;
        }
        self.last_rx = Some(now);
        let now = now.engine();
        self.counters.in_pkts += 1;
        self.counters.in_bytes += data.len() as u64;
        // A datagram answering a stateless echo request (admission or a path check) echoes a cookie, not our
        // clock: no RTT sample from it.
        let conv = self.kcp.conv();
        let kcp = &self.kcp;
        let freshness = |seg: &[u8]| {
            if rkcp_engine::find_echo_reply(seg, conv).is_none_or(|ts| kcp.awaits_echo(ts)) {
                Freshness::Fresh
            } else {
                Freshness::Stale
            }
        };
        let kcp_bytes = match rkcp_fec::classify(data) {
            Classified::Plain(kcp) => {
                let freshness = freshness(kcp);
                Self::note_data(&mut self.unacked, kcp);
                if self.kcp.input(now, kcp, freshness).is_err() {
                    self.counters.kcp_in_errors += 1;
                }
                return;
            }
            Classified::Truncated => {
                self.counters.in_errs += 1;
                return;
            }
            Classified::Parity => {
                self.counters.fec_parity_shards += 1;
                None
            }
            Classified::Data(kcp) => Some((kcp, freshness(kcp))),
        };
        // A peer may send FEC although we do not: decode with (1,1) and let autotune find its shape.
        if self.fec_dec.is_none() {
            self.fec_dec = FecDecoder::new(1, 1).ok().map(Box::new);
        }
        let Connection {
            kcp,
            fec_dec,
            unacked,
            counters,
            ..
        } = self;
        if let Some((bytes, freshness)) = kcp_bytes {
            Self::note_data(unacked, bytes);
            if kcp.input(now, bytes, freshness).is_err() {
                counters.kcp_in_errors += 1;
            }
        }
        if let Some(dec) = fec_dec.as_mut() {
            let outcome = dec.decode(now, data, |rebuilt: &[u8]| {
                Self::note_data(unacked, rebuilt);
                if kcp.input(now, rebuilt, Freshness::Stale).is_ok() {
                    counters.fec_recovered += 1;
                } else {
                    counters.kcp_in_errors += 1;
                }
            });
            if let Ok(o) = outcome {
                counters.fec_errs += o.fec_errs as u64;
                counters.fec_short_shards += o.short_shards as u64;
            }
        }
    }

    /// Counts a datagram that starts with a data segment (it will be acknowledged).
    fn note_data(unacked: &mut usize, seg: &[u8]) {
        if seg.get(4) == Some(&CMD_PUSH) {
            *unacked += 1;
        }
    }

    /// After a batch of input: whatever the engine has due (window slide, ACK-no-delay), then, if at least a
    /// full ACK datagram's worth of ACKs has piled up since the engine last flushed, those ACKs now rather
    /// than at the next periodic flush.
    ///
    /// Why: a pure receiver otherwise acknowledges once per `interval` (10 ms in fast3), so a sender can move
    /// at most one window per interval (1024 × 1.3 kB / 10 ms ≈ 130 MB/s) however fast the path is. This runs
    /// once per received batch, and sends only full datagrams' worth: each early flush sends at most one ACK
    /// datagram that is not full. On the wire it is an ACK-only flush (kcp-go `flush(true)`).
    pub(crate) fn finish_input(&mut self, now: Timestamp) {
        if self.closed.is_some() {
            return;
        }
        self.check_address(now);
        self.update(now);
        let per_datagram = (self.kcp.mtu() - self.kcp.reserved()) / rkcp_engine::OVERHEAD;
        if self.unacked >= per_datagram.max(1) {
            self.output(|kcp, mut out| kcp.flush_acks(now.engine(), &mut out));
            self.unacked = 0;
        }
    }

    /// Runs `f` on the engine with the output pipeline (FEC, cipher, send queue) as its datagram sink.
    fn output<R>(&mut self, f: impl FnOnce(&mut Kcp, &mut dyn FnMut(&mut [u8])) -> R) -> R {
        let Connection {
            kcp,
            fec_enc,
            crypt,
            tx,
            crypt_tail,
            ..
        } = self;
        let mut fec = fec_enc.as_deref_mut();
        let mut out = |buf: &mut [u8]| {
            emit(
                fec.as_deref_mut(),
                crypt.as_deref_mut(),
                tx,
                *crypt_tail,
                buf,
            )
        };
        f(kcp, &mut out)
    }

    /// Reading opened the receive window: once it has opened by a quarter since the peer last heard it, a
    /// window update (with the pending ACKs) goes out now rather than at the next periodic flush, so a sender
    /// held by the window our lagging reader last advertised resumes at once (see
    /// [`Kcp::window_update_due`]); then whatever the engine has due.
    fn after_read(&mut self, now: Timestamp) {
        if self.kcp.window_update_due() {
            self.output(|kcp, mut out| kcp.flush_window(now.engine(), &mut out));
            self.unacked = 0;
        }
        self.update(now);
    }

    /// Runs whatever the engine has due at `now`, queueing the output.
    fn update(&mut self, now: Timestamp) {
        let before = self.tx.len();
        self.output(|kcp, mut out| kcp.update(now.engine(), &mut out));
        if self.tx.len() != before {
            // Any flush writes every pending ACK.
            self.unacked = 0;
        }
        self.adapt();
    }

    /// Adaptive parity: the policy sees what the engine sent and retransmitted since its last look, and
    /// its new choice applies (see `proto::afec`).
    fn adapt(&mut self) {
        if let Some(fec) = self.fec_enc.as_mut() {
            fec.adapt(&self.kcp);
        }
    }

    /// The parity packets sent per FEC group (`None` without FEC).
    #[cfg(test)]
    pub(crate) fn fec_parity_shards(&self) -> Option<usize> {
        self.fec_enc.as_ref().map(|e| e.parity_sent())
    }

    /// A full flush now (kcp-go's flush after `Write`), queueing the output.
    fn flush_now(&mut self, now: Timestamp) {
        self.output(|kcp, mut out| kcp.flush(now.engine(), &mut out));
        self.unacked = 0;
    }

    /// When [`Connection::handle_timeout`] is next due (write delay, idle timeout and shutdown bound
    /// included); `None` while the engine is idle and no lifecycle bound is armed.
    pub(crate) fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        if self.closed.is_some() {
            return None;
        }
        let d = self
            .kcp
            .next_deadline()
            .map(|d| Timestamp::from_engine(d, now));
        let d = match (d, self.delay_until) {
            (Some(d), Some(hold)) => Some(d.max(hold)),
            (d, _) => d,
        };
        let echo = match self.address {
            Address::Unverified { echo_at, .. } => Some(echo_at),
            _ => None,
        };
        [d, self.idle_deadline(), self.shutdown_by, echo]
            .into_iter()
            .flatten()
            .min()
    }

    /// When the idle timeout fires, unless the peer is heard from first.
    fn idle_deadline(&self) -> Option<Timestamp> {
        Some(self.last_rx?.add_millis(self.idle_ms?))
    }

    /// The timer's work: whatever the engine has due (periodic flush, retransmissions, probes), then the
    /// dead-link check, the shutdown bound and the idle timeout, each of which may close the connection.
    /// Calling it early is harmless.
    pub(crate) fn handle_timeout(&mut self, now: Timestamp) {
        if self.closed.is_some() {
            return;
        }
        self.last_rx.get_or_insert(now);
        self.check_address(now);
        // Woken early (for a lifecycle bound) while write delay holds the flush: the engine waits.
        if self.delay_until.is_none_or(|h| now >= h) {
            self.delay_until = None;
            self.update(now);
        }
        if self.kcp.is_dead_link() {
            self.close(now, CloseReason::DeadLink(self.dead_link));
        } else if self.shutdown_by.is_some_and(|t| now >= t) && !self.all_acked() {
            self.close(now, CloseReason::CloseTimeout(self.close_ms));
        } else if self.idle_deadline().is_some_and(|t| now >= t) {
            self.close(now, CloseReason::IdleTimeout(self.idle_ms.unwrap_or(0)));
        }
    }

    /// A graceful shutdown starts (the first call counts): [`Connection::handle_timeout`] closes the
    /// connection with [`CloseReason::CloseTimeout`] if everything written is not acknowledged by
    /// `close_timeout` from now.
    pub(crate) fn begin_shutdown(&mut self, now: Timestamp) {
        self.shutdown_by
            .get_or_insert(now.add_millis(self.close_ms));
    }

    /// Whether a reader can make progress (data, or the end).
    pub(crate) fn readable(&self) -> bool {
        self.kcp.peek_size().is_some() || self.leftover_pos < self.leftover.len()
    }

    /// Whether the send window has room for a write.
    pub(crate) fn writable(&self) -> bool {
        let ws = self.kcp.wait_snd();
        ws < self.kcp.snd_wnd() as usize && ws < self.kcp.rmt_wnd() as usize
    }

    // ------------------------------------------------------------------ application side

    /// Reads into `buf` (a byte stream: leftover of a message first, then the next segment(s) or message).
    /// `Ok(None)`: nothing to read yet. A zero-length message is skipped (a 0-byte read would look like EOF).
    pub(crate) fn read(
        &mut self,
        now: Timestamp,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SessionError> {
        if buf.is_empty() {
            return Ok(Some(0));
        }
        if self.closed == Some(CloseReason::Local) {
            return Err(SessionError::Closed);
        }
        if self.leftover_pos < self.leftover.len() {
            let n = (self.leftover.len() - self.leftover_pos).min(buf.len());
            let from = self.leftover_pos;
            buf[..n].copy_from_slice(&self.leftover[from..from + n]);
            self.leftover_pos += n;
            self.counters.bytes_received += n as u64;
            return Ok(Some(n));
        }
        while let Some(size) = self.kcp.peek_size() {
            let n = if self.stream || size <= buf.len() {
                self.kcp.recv(buf).map_err(SessionError::Kcp)?
            } else {
                self.leftover.resize(size, 0);
                let n = self
                    .kcp
                    .recv(&mut self.leftover)
                    .map_err(SessionError::Kcp)?;
                self.leftover.truncate(n);
                let k = n.min(buf.len());
                buf[..k].copy_from_slice(&self.leftover[..k]);
                self.leftover_pos = k;
                k
            };
            if n == 0 {
                continue;
            }
            self.counters.bytes_received += n as u64;
            self.after_read(now);
            return Ok(Some(n));
        }
        match self.closed {
            Some(r) => Err(r.to_error()),
            None => Ok(None),
        }
    }

    /// Writes up to one window of `data` while the window has room (`Ok(None)`: full, wait for
    /// [`Connection::writable`]), then flushes unless write delay holds it.
    pub(crate) fn write(
        &mut self,
        now: Timestamp,
        data: &[u8],
    ) -> Result<Option<usize>, SessionError> {
        if let Some(r) = self.closed {
            return Err(r.to_error());
        }
        if data.is_empty() {
            return Ok(Some(0));
        }
        if !self.writable() {
            return Ok(None);
        }
        let mss = self.kcp.mss();
        let n = data.len().min(self.kcp.snd_wnd() as usize * mss);
        let chunk = &data[..n];
        if self.stream {
            self.kcp.send(chunk).map_err(SessionError::Kcp)?;
        } else {
            chunk
                .chunks(mss)
                .try_for_each(|c| self.kcp.send(c).map(|_| ()))
                .map_err(SessionError::Kcp)?;
        }
        self.counters.bytes_sent += n as u64;
        self.flush_after_write(now);
        Ok(Some(n))
    }

    /// Message mode: queues `msg` as one message once the window has room (`Ok(false)`: full).
    pub(crate) fn send_msg(&mut self, now: Timestamp, msg: &[u8]) -> Result<bool, SessionError> {
        if let Some(r) = self.closed {
            return Err(r.to_error());
        }
        if self.stream {
            return Err(SessionError::NotMessageMode);
        }
        if !self.writable() {
            return Ok(false);
        }
        self.kcp.send(msg).map_err(|e| match e {
            KcpError::MessageTooLarge { len, .. } => SessionError::MessageTooLarge { len },
            e => SessionError::Kcp(e),
        })?;
        self.counters.bytes_sent += msg.len() as u64;
        self.flush_after_write(now);
        Ok(true)
    }

    /// Message mode: the next whole message into `buf` (`Ok(None)`: none yet).
    pub(crate) fn recv_msg(
        &mut self,
        now: Timestamp,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SessionError> {
        if self.closed == Some(CloseReason::Local) {
            return Err(SessionError::Closed);
        }
        if self.stream {
            return Err(SessionError::NotMessageMode);
        }
        if self.leftover_pos < self.leftover.len() {
            let rest = self.leftover.len() - self.leftover_pos;
            if rest > buf.len() {
                return Err(SessionError::BufferTooSmall { needed: rest });
            }
            let from = self.leftover_pos;
            buf[..rest].copy_from_slice(&self.leftover[from..]);
            self.leftover.clear();
            self.leftover_pos = 0;
            self.counters.bytes_received += rest as u64;
            return Ok(Some(rest));
        }
        if let Some(size) = self.kcp.peek_size() {
            if size > buf.len() {
                return Err(SessionError::BufferTooSmall { needed: size });
            }
            return match self.kcp.recv(buf) {
                Ok(n) => {
                    self.counters.bytes_received += n as u64;
                    self.after_read(now);
                    Ok(Some(n))
                }
                Err(KcpError::BufferTooSmall { needed }) => {
                    Err(SessionError::BufferTooSmall { needed })
                }
                Err(e) => Err(SessionError::Kcp(e)),
            };
        }
        match self.closed {
            Some(r) => Err(r.to_error()),
            None => Ok(None),
        }
    }

    /// Message mode: the size of the next whole message, if one is ready (`Ok(None)`: none yet).
    pub(crate) fn peek_msg_size(&self) -> Result<Option<usize>, SessionError> {
        if self.closed == Some(CloseReason::Local) {
            return Err(SessionError::Closed);
        }
        if self.stream {
            return Err(SessionError::NotMessageMode);
        }
        if self.leftover_pos < self.leftover.len() {
            return Ok(Some(self.leftover.len() - self.leftover_pos));
        }
        match (self.kcp.peek_size(), self.closed) {
            (Some(n), _) => Ok(Some(n)),
            (None, Some(r)) => Err(r.to_error()),
            (None, None) => Ok(None),
        }
    }

    /// kcp-go's post-write flush rule: flush now unless write delay is on and the window is not full.
    fn flush_after_write(&mut self, now: Timestamp) {
        if !self.write_delay || !self.writable() {
            self.delay_until = None;
            self.flush_now(now);
        } else if self.delay_until.is_none() {
            self.delay_until = Some(now.add_millis(u64::from(self.kcp.interval())));
        }
    }

    /// A full flush of whatever is queued (only matters with write delay). `Err` once closed by the peer's
    /// side (a local close is not an error here).
    pub(crate) fn flush(&mut self, now: Timestamp) -> Result<(), SessionError> {
        match self.closed {
            Some(CloseReason::Local) => Ok(()),
            Some(r) => Err(r.to_error()),
            None => {
                self.delay_until = None;
                self.flush_now(now);
                Ok(())
            }
        }
    }

    /// Everything written has been acknowledged (KCP has no FIN: this is how a writer knows the peer has it).
    pub(crate) fn all_acked(&self) -> bool {
        self.kcp.wait_snd() == 0
    }

    /// Closes the connection (only the first call does anything). A local close first flushes what the
    /// window allows (the driver still sends it); then the engine's counters are kept and its queues and the
    /// FEC receive queue are dropped.
    pub(crate) fn close(&mut self, now: Timestamp, reason: CloseReason) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason);
        if reason == CloseReason::Local {
            self.flush_now(now);
        } else {
            self.tx.clear();
        }
        let stats = *self.kcp.stats();
        fold_engine_stats(&mut self.counters, &stats);
        self.kcp = Kcp::new(self.kcp.conv());
        self.fec_dec = None;
        self.leftover = Vec::new();
        self.leftover_pos = 0;
    }

    /// Drops what is queued for sending (after a close, once the last flush went out or could not).
    pub(crate) fn release_tx(&mut self) {
        self.tx.clear();
    }

    /// Gives back a send-queue allocation a burst left behind, keeping `keep` bytes.
    pub(crate) fn trim_tx(&mut self, keep: usize) {
        self.tx.trim(keep);
    }

    /// This connection's counters, the engine's included. Process-wide fields are 0.
    pub(crate) fn counters(&self) -> SnmpSnapshot {
        let mut s = self.counters;
        if self.closed.is_none() {
            fold_engine_stats(&mut s, self.kcp.stats());
        }
        s
    }

    // ------------------------------------------------------------------ knobs

    /// Stream mode on the engine and for reads (message boundaries ignored).
    pub(crate) fn set_stream_mode(&mut self, on: bool) {
        self.kcp.set_stream_mode(on);
        self.stream = on;
    }

    /// kcp-go's write delay: a write's flush waits for the next interval unless the window is full.
    pub(crate) fn set_write_delay(&mut self, on: bool) {
        self.write_delay = on;
        if !on {
            self.delay_until = None;
        }
    }

    /// Idle timeout in ms (`None`: off), counted from the last datagram heard.
    pub(crate) fn set_idle_timeout(&mut self, ms: Option<u64>) {
        self.idle_ms = ms;
    }

    /// Bound on a graceful shutdown in ms (one already under way keeps its deadline).
    pub(crate) fn set_close_timeout(&mut self, ms: u64) {
        self.close_ms = ms;
    }

    /// Retransmissions of one segment after which the link counts as dead.
    pub(crate) fn set_dead_link(&mut self, xmit: u32) {
        self.kcp.set_dead_link(xmit);
        self.dead_link = xmit;
    }
}

/// Adds the engine's counters (kcp-go counts RetransSegs as fast + early + lost itself).
fn fold_engine_stats(s: &mut SnmpSnapshot, e: &rkcp_engine::KcpStats) {
    s.in_segs += e.in_segs;
    s.out_segs += e.out_segs;
    s.retrans_segs += e.retrans_segs;
    s.fast_retrans_segs += e.fast_retrans_segs;
    s.early_retrans_segs += e.early_retrans_segs;
    s.lost_segs += e.lost_segs;
    s.repeat_segs += e.repeat_segs;
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
