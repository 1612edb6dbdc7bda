//! Session-level configuration by composition: the engine's own [`EngineConfig`] (every KCP knob, with the
//! engine's defaults), the packet pipeline (cipher, FEC), the socket ([`SocketConfig`]), the listener
//! ([`ListenerConfig`]) and the session's lifecycle bounds (idle timeout, close timeout).

use std::time::Duration;

use rkcp_crypt::PacketCrypt;
use rkcp_engine::KcpConfig as EngineConfig;

use crate::error::ConfigError;
use crate::proto::admission::Admission;

/// Largest MTU a session accepts: kcp-go's `UDPSession.SetMtu` refuses more than 1500, and peers read into
/// 1500-byte buffers (docs/wire-format.md#session-options, #session-bad-input).
pub const MAX_MTU: usize = 1500;

/// The longest a session lets an ACK wait, ms, unless [`EngineConfig::ack_delay`] says otherwise (beyond
/// kcp-go, invisible on the wire; kcp-go waits for the next periodic flush, up to an interval).
///
/// Why 2 ms: a sender whose window is full (kcptun's client sends with 128 segments) moves one window per
/// round trip plus ACK wait. A quarter interval (7 ms in kcptun's default `fast` mode) still cost 10 % on
/// a 40 ms path (linkem, 100 Mbit/s, aes + FEC 10/3: 3.5 MB/s against 3.9 with 2 ms; the window allows
/// 128 × 1298 B / 40 ms = 4.2 MB/s). 2 ms is fast3's quarter interval, already used there; it costs at
/// most 500 ACK datagrams a second while data arrives (faster streams fill a whole ACK datagram first and
/// flush it then), and never more ACK datagrams than data datagrams.
pub const DEFAULT_ACK_DELAY_MS: u32 = 2;

/// kcp-go's FEC header on data packets: seqid u32, type u16, size u16 (docs/wire-format.md#session-headers, #fec-header).
const FEC_HEADER: usize = rkcp_fec::HEADER_SIZE_PLUS2;

/// Reed–Solomon shard counts for the FEC layer (docs/wire-format.md#fec). Each direction's setting is independent: this
/// decides what *we* put on the wire; received FEC is detected per packet whatever the local setting (B.3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FecConfig {
    /// Data shards per group (kcptun `--datashard`, default 10).
    pub data_shards: usize,
    /// Parity shards per group (kcptun `--parityshard`, default 3). With [`FecConfig::adaptive`], where the
    /// policy starts.
    pub parity_shards: usize,
    /// Let the session choose the parity count from the loss it observes (not in kcp-go; see
    /// [`AdaptiveFec`]). Default `None`: `parity_shards` stays fixed, exactly as kcp-go.
    pub adaptive: Option<AdaptiveFec>,
}

impl FecConfig {
    /// kcptun's default 10 data + 3 parity.
    pub const KCPTUN: FecConfig = FecConfig {
        data_shards: 10,
        parity_shards: 3,
        adaptive: None,
    };
}

/// Parity chosen by the session (not in kcp-go), for one data shard per group: the parity follows
/// [`rkcp_fec::AdaptiveParity`], fed every flush with the engine's new data segments and retransmissions
/// (what the peer still lacked after FEC). It starts at [`FecConfig::parity_shards`] and moves between
/// [`AdaptiveFec::min_parity`] and [`AdaptiveFec::max_parity`].
///
/// On the wire the groups stay (1, 1): the one parity packet of each datagram is sent once per chosen parity
/// shard, every copy with the same seqid. With one data shard every parity shard is a copy of the data shard
/// anyway, so this protects exactly as (1, ps) would, while the FEC shape never changes: every receiver (ours,
/// any kcp-go, with FEC configured or not) decodes it without retuning and drops the copies it does not need
/// as duplicates of a seqid (docs/wire-format.md#fec-autotune).
///
/// Only one data shard: changing the shape of groups of several data shards mid-stream
/// ([`rkcp_fec::FecEncoder::set_parity_shards`]) makes kcp-go 5.6.1, until its autotune relocks, rebuild
/// from misaligned shards; with the XOR parity row such a rebuild keeps a valid conversation id and command,
/// and its KCP hands the application corrupt bytes (seen in the interop test over a lossy path).
/// [`KcpConfig::validate`] refuses adaptive FEC with more data shards. One data shard is also what small
/// messages that must not wait need (one datagram is one group; parity never waits for a group to fill).
///
/// Since FEC hides the losses it repairs, the residual losses are rare exactly when the parity is right,
/// and the policy waits for windows that are evidence ([`rkcp_fec::AdaptiveConfig::min_evidence`]): it
/// rises once two windows of a few residual losses each call for it (at 10 % loss and one small message
/// every 20 ms, within 10 to 30 s from one parity shard), and comes down only after thousands of packets
/// without the losses that would justify the current count (minutes for such traffic). Starting at the
/// count one would pick for the link by hand protects the first packets; starting at the minimum saves
/// bandwidth until losses show. Retransmissions are counted whether the data or its acknowledgement was
/// lost, so with sparse traffic the policy sees about the sum of both directions' residual losses and
/// leans to more parity.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct AdaptiveFec {
    /// Fewest parity shards per group the policy may choose, >= 1 (what a clean link gets).
    pub min_parity: usize,
    /// Most parity shards per group the policy may choose (`data_shards + max_parity <= 256`).
    pub max_parity: usize,
    /// The policy's tuning (evaluation window, smoothing, what a parity shard must be worth, hysteresis);
    /// each field is explained on [`rkcp_fec::AdaptiveConfig`]. [`AdaptiveFec::new`] sets a tuning for one
    /// data shard (its docs say why not that type's defaults).
    pub policy: rkcp_fec::AdaptiveConfig,
}

impl AdaptiveFec {
    /// Between `min_parity` and `max_parity` parity shards.
    ///
    /// The policy is tuned for one data shard, which is what adaptive FEC sends, rather than the
    /// [`rkcp_fec::AdaptiveConfig`] defaults (made for groups of 10 in bulk transfers, with which a parity
    /// shard of a one-shard group is never worth its bytes): a window of 50 packets instead of 500 (about a
    /// second of one small message every 20 ms) so that the choice follows within seconds, and a parity
    /// shard counts as worth sending while it spares a retransmission round trip to one packet in 333
    /// (`parity_cost` 0.003 instead of 0.25). The best count is then 1 parity shard from about 0.3 % loss,
    /// 2 from about 6 % and 3 from about 15 % (the policy moves there as the evidence allows).
    pub fn new(min_parity: usize, max_parity: usize) -> Self {
        let mut policy = rkcp_fec::AdaptiveConfig::default();
        policy.window = 50;
        policy.parity_cost = 0.003;
        AdaptiveFec {
            min_parity,
            max_parity,
            policy,
        }
    }
}

/// Options of the UDP socket a session or listener creates ([`KcpConfig::socket`]). All default to `None`:
/// the socket keeps the operating system's settings. A session accepted by a [`KcpListener`](crate::KcpListener)
/// shares the listener's socket, so only the listener's config applies to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketConfig {
    /// DSCP code point for outgoing datagrams (IPv4 `IP_TOS = dscp << 2`, IPv6 traffic class `dscp`, as
    /// kcp-go `SetDSCP`), 0..=63. Default `None` (leave the socket alone). Trade-off: routers may honour it
    /// (lower queueing delay for e.g. `EF` = 46) or bleach or police it.
    pub dscp: Option<u32>,
    /// `SO_RCVBUF` request in bytes (the kernel may cap it, e.g. at `net.core.rmem_max`). Default `None` (OS
    /// default, often ~200 KiB). Trade-off: a larger buffer absorbs bursts of a fast sender instead of
    /// dropping them (KCP would retransmit), at the cost of kernel memory; kcptun asks for 4 MiB.
    pub recv_buffer: Option<usize>,
    /// `SO_SNDBUF` request in bytes (the kernel may cap it). Default `None` (OS default). Trade-off as
    /// `recv_buffer`: a small buffer makes sends wait for the socket more often.
    pub send_buffer: Option<usize>,
}

/// The limits of a [`KcpListener`](crate::KcpListener) ([`KcpConfig::listener`]); a client
/// [`KcpStream`](crate::KcpStream) ignores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Sessions created but not yet accepted, beyond which new peers are dropped. Default 128 (kcp-go
    /// `acceptBacklog`). Trade-off: a larger backlog rides out bursts of new peers when `accept` runs late,
    /// but holds more unaccepted sessions' memory.
    pub accept_backlog: usize,
    /// Live sessions at most; datagrams from further new peers are dropped and counted in
    /// [`ListenerStats`](crate::ListenerStats). Default 65536. Trade-off: the bound on the listener's memory
    /// (a few KB per idle session) against the number of peers it serves.
    pub max_sessions: usize,
    /// The limits for peers that have not proved their address yet, and the replay record (see
    /// [`Admission`]; the defaults keep a listener safe on the open internet).
    pub admission: Admission,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            accept_backlog: 128,
            max_sessions: 65536,
            admission: Admission::default(),
        }
    }
}

/// Configuration of a [`KcpStream`](crate::KcpStream) or of every session a [`KcpListener`](crate::KcpListener)
/// accepts.
///
/// It holds the engine's configuration ([`KcpConfig::kcp`], an [`EngineConfig`]: nodelay, interval, resend,
/// nc, windows, MTU, stream mode, RTO floor, congestion control, RACK, TLP, ACK delay …) unchanged, and adds
/// only what the session owns: the packet cipher ([`KcpConfig::crypt`]), FEC ([`KcpConfig::fec`]), the
/// socket ([`KcpConfig::socket`]), the listener's limits ([`KcpConfig::listener`]) and the lifecycle
/// ([`KcpConfig::idle_timeout`], [`KcpConfig::close_timeout`]).
///
/// `Default` is kcp-go's library default (docs/wire-format.md#session-options): `kcp` is exactly
/// [`EngineConfig::default()`], so in particular **message mode** (`stream: false`), as kcp-go's
/// `NewConn`/`Listen`. [`KcpStream`](crate::KcpStream)'s `AsyncRead`/`AsyncWrite` work in both modes: in
/// message mode each write is cut into MSS-sized messages and a read that gets only part of a message keeps
/// the rest for the next read, so the bytes arrive in order either way. Stream mode packs small writes into
/// full segments (fewer, fuller datagrams): the presets turn it on, as kcptun does, and so should a byte-stream
/// user who does not need to talk to a message-mode application.
///
/// The presets ([`KcpConfig::normal`] … [`KcpConfig::fast3`]) are kcptun's per-session setup
/// (docs/wire-format.md#kcptun-modes, #kcptun-session): the engine preset's mode tuple, stream mode, mtu
/// 1350, windows 1024/1024, and 4 MiB socket buffers. Cipher and FEC stay off in every preset: set
/// [`KcpConfig::crypt`] and [`KcpConfig::fec`] to talk to a kcptun peer (which always has a cipher, even
/// `none`; docs/wire-format.md#layering).
///
/// How the session uses the engine's fields, beyond handing them over:
/// - `reserved` is set by the session to the cipher and FEC header size ([`KcpConfig::overhead`]); a value
///   here is ignored.
/// - `mtu` is at most [`MAX_MTU`] (1500, as kcp-go) and must leave room for the headers.
/// - `write_delay` is the session's rule (kcp-go `SetWriteDelay`): a write is not flushed until the window
///   fills or an interval passed.
/// - `ack_delay`: `None` lets the session bound the ACK delay at [`DEFAULT_ACK_DELAY_MS`] (beyond kcp-go,
///   invisible on the wire: a sender whose window is full moves one window per round trip plus ACK wait, and a
///   whole interval capped kcptun's 128-segment window near 6 MB/s on any path); `Some(ms)` is used as is
///   (`Some(interval)` is kcp-go's wait).
/// - [`Congestion::LossTolerant`](rkcp_engine::Congestion::LossTolerant) turns `rack` and `tlp` on (it comes
///   with time-based loss recovery).
///
/// ```
/// use rkcp_session::{EngineConfig, KcpConfig};
///
/// // kcptun fast3 with a smaller receive window and RACK loss detection.
/// let cfg = KcpConfig {
///     kcp: EngineConfig { rcv_wnd: 256, rack: true, ..KcpConfig::fast3().kcp },
///     ..KcpConfig::fast3()
/// };
/// cfg.validate().unwrap();
/// assert!(cfg.kcp.stream);
/// // The default keeps the engine's defaults (kcp-go), message mode included.
/// assert_eq!(KcpConfig::default().kcp, EngineConfig::default());
/// ```
#[derive(Debug, Clone)]
pub struct KcpConfig {
    /// The engine's knobs, each documented on [`EngineConfig`]. Default [`EngineConfig::default()`]
    /// (kcp-go's `NewKCP`); see the type's docs for how the session treats `reserved`, `write_delay` and
    /// `ack_delay`.
    pub kcp: EngineConfig,
    /// Packet cipher (kcp-go's nonce + CRC + cipher, or an authenticated Rust-only kind). Default `None`
    /// (plain KCP, no header). Both ends must agree. Trade-off: confidentiality and a checksum (kcp-go kinds)
    /// or authentication (AEAD kinds) for 20 to 28 bytes per datagram and some CPU.
    pub crypt: Option<PacketCrypt>,
    /// Reed–Solomon FEC for what we send. Default `None`. Trade-off: `parity / data` more bandwidth (3/10 for
    /// kcptun's 10/3) and 8 header bytes per datagram, for recovering lost datagrams without a round trip.
    /// [`FecConfig::adaptive`] (default off) lets the session choose the parity from the losses it sees.
    pub fec: Option<FecConfig>,
    /// Options of the UDP socket; default: the OS's.
    pub socket: SocketConfig,
    /// A listener's limits (backlog, session count, admission of unproved peers).
    pub listener: ListenerConfig,
    /// Closes the session with [`SessionError::IdleTimeout`](crate::SessionError::IdleTimeout) once nothing
    /// has been received from the peer for this long (any datagram that passes the cipher check counts: data,
    /// ACKs, probes). `None` disables it. Default [`KcpConfig::DEFAULT_IDLE_TIMEOUT`] (60 s); kcp-go has none.
    ///
    /// This is how a side that only reads learns that its peer is gone (a writer also learns it from
    /// `dead_link`), and how a [`KcpListener`](crate::KcpListener) forgets peers that vanished. Trade-off:
    /// KCP itself sends nothing while idle, so a healthy session whose peer stays silent longer than this is
    /// closed too. kcptun never is: its smux keepalive (at most every 30 s, every 10 s by default) resets
    /// the timer. A bare [`KcpStream`](crate::KcpStream) that may stay silent must send something now and
    /// then, or use a longer timeout, or `None` (dead peers are then kept until a write fails).
    pub idle_timeout: Option<Duration>,
    /// Bound on a graceful `shutdown()` (which waits until the peer acknowledged everything written): when it
    /// has not completed after this long the session closes and `shutdown()` fails with
    /// [`SessionError::CloseTimeout`](crate::SessionError::CloseTimeout). Default
    /// [`KcpConfig::DEFAULT_CLOSE_TIMEOUT`] (30 s). Trade-off: it counts from the start of `shutdown()`, so
    /// it must cover sending what is still queued (up to about two send windows) on the slowest path.
    pub close_timeout: Duration,
}

impl Default for KcpConfig {
    fn default() -> Self {
        KcpConfig {
            kcp: EngineConfig::default(),
            crypt: None,
            fec: None,
            socket: SocketConfig::default(),
            listener: ListenerConfig::default(),
            idle_timeout: Some(Self::DEFAULT_IDLE_TIMEOUT),
            close_timeout: Self::DEFAULT_CLOSE_TIMEOUT,
        }
    }
}

impl KcpConfig {
    /// Default [`KcpConfig::idle_timeout`]: 60 s, twice the longest keepalive interval kcptun allows (30 s).
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

    /// Default [`KcpConfig::close_timeout`]: 30 s.
    pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

    /// kcptun's session setup around one of the engine's presets (which own the mode tuples,
    /// docs/wire-format.md#kcptun-modes).
    fn kcptun(mode: EngineConfig) -> Self {
        KcpConfig {
            kcp: EngineConfig {
                mtu: 1350,
                snd_wnd: 1024,
                rcv_wnd: 1024,
                stream: true,
                ..mode
            },
            socket: SocketConfig {
                recv_buffer: Some(4 << 20),
                send_buffer: Some(4 << 20),
                ..SocketConfig::default()
            },
            ..KcpConfig::default()
        }
    }

    /// kcptun `normal`: nodelay 0, interval 40, resend 2, nc 1 (plus the kcptun session setup: stream mode,
    /// mtu 1350, windows 1024/1024, 4 MiB socket buffers).
    pub fn normal() -> Self {
        Self::kcptun(EngineConfig::normal())
    }

    /// kcptun `fast` (its default mode): nodelay 0, interval 30, resend 2, nc 1 (plus the kcptun session setup).
    pub fn fast() -> Self {
        Self::kcptun(EngineConfig::fast())
    }

    /// kcptun `fast2`: nodelay 1, interval 20, resend 2, nc 1 (plus the kcptun session setup).
    pub fn fast2() -> Self {
        Self::kcptun(EngineConfig::fast2())
    }

    /// kcptun `fast3`: nodelay 1, interval 10, resend 2, nc 1 (plus the kcptun session setup).
    pub fn fast3() -> Self {
        Self::kcptun(EngineConfig::fast3())
    }

    /// Replaces the engine's configuration (builder style); see [`KcpConfig::kcp`].
    pub fn with_kcp(mut self, kcp: EngineConfig) -> Self {
        self.kcp = kcp;
        self
    }

    /// kcp-go `SetNoDelay` (builder style): `nodelay` (30 ms RTO floor and gentler backoff instead of 100 ms),
    /// flush `interval` in ms (10..=5000; shorter reacts faster and costs more wake-ups and ACK datagrams),
    /// fast-retransmit threshold `resend` (0: off) and `nc` (no congestion window). Default
    /// `(false, 100, 0, false)` (kcp-go); the presets set kcptun's tuples.
    pub fn with_mode(mut self, nodelay: bool, interval: u32, resend: u32, nc: bool) -> Self {
        self.kcp.nodelay = nodelay;
        self.kcp.interval = interval;
        self.kcp.resend = resend;
        self.kcp.nc = nc;
        self
    }

    /// Send and receive windows in segments (kcp-go `SetWindowSize`; builder style). Default 32/32 (kcp-go),
    /// 1024/1024 in the presets. Trade-off: a transfer moves at most `window × mss` per round trip, and a
    /// window holds that much memory per session.
    pub fn with_window(mut self, snd_wnd: u32, rcv_wnd: u32) -> Self {
        self.kcp.snd_wnd = snd_wnd;
        self.kcp.rcv_wnd = rcv_wnd;
        self
    }

    /// Largest UDP payload sent, headers included, at most [`MAX_MTU`] (kcp-go `SetMtu`; builder style).
    /// Default 1400 (kcp-go), 1350 in the presets. Trade-off: larger segments carry more per datagram but
    /// risk IP fragmentation (and its loss) on paths with a smaller MTU (tunnels, PPPoE).
    pub fn with_mtu(mut self, mtu: usize) -> Self {
        self.kcp.mtu = mtu;
        self
    }

    /// Stream mode (kcp-go `SetStreamMode`; builder style): `true` packs writes into full segments with no
    /// message boundaries, `false` keeps each write (or `send_msg`) a message. Default `false` (kcp-go), on in
    /// the presets (kcptun).
    pub fn with_stream(mut self, on: bool) -> Self {
        self.kcp.stream = on;
        self
    }

    /// Sets the cipher (builder style); see [`KcpConfig::crypt`].
    pub fn with_crypt(mut self, crypt: PacketCrypt) -> Self {
        self.crypt = Some(crypt);
        self
    }

    /// Sets FEC shard counts (builder style); `(0, _)` or `(_, 0)` turns FEC off, as in kcp-go. See
    /// [`KcpConfig::fec`].
    pub fn with_fec(mut self, data_shards: usize, parity_shards: usize) -> Self {
        self.fec = (data_shards > 0 && parity_shards > 0).then_some(FecConfig {
            data_shards,
            parity_shards,
            adaptive: None,
        });
        self
    }

    /// Sets adaptive FEC (builder style): one data shard per group, starting with `start_parity` parity
    /// shards, then as the session chooses within `adaptive`'s bounds (see [`AdaptiveFec`]).
    ///
    /// ```
    /// use rkcp_session::{AdaptiveFec, KcpConfig};
    ///
    /// // Small messages on a lossy link: starting at 2 parity shards (what one would set by hand for 10 %
    /// // loss), between 1 and 3 as the losses show.
    /// let cfg = KcpConfig::fast3().with_adaptive_fec(2, AdaptiveFec::new(1, 3));
    /// cfg.validate().unwrap();
    /// // Off by default: FEC set by `with_fec` keeps its parity count (kcp-go).
    /// assert_eq!(KcpConfig::fast3().with_fec(10, 3).fec.unwrap().adaptive, None);
    /// ```
    pub fn with_adaptive_fec(mut self, start_parity: usize, adaptive: AdaptiveFec) -> Self {
        self.fec = Some(FecConfig {
            data_shards: 1,
            parity_shards: start_parity,
            adaptive: Some(adaptive),
        });
        self
    }

    /// Sets the socket options (builder style); see [`SocketConfig`].
    pub fn with_socket(mut self, socket: SocketConfig) -> Self {
        self.socket = socket;
        self
    }

    /// Sets the listener's limits (builder style); see [`ListenerConfig`].
    pub fn with_listener(mut self, listener: ListenerConfig) -> Self {
        self.listener = listener;
        self
    }

    /// Sets [`KcpConfig::idle_timeout`] (builder style); `None` disables it.
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`KcpConfig::close_timeout`] (builder style).
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Bytes of crypt and FEC header in front of each datagram's KCP segments (docs/wire-format.md#session-headers), plus the
    /// authenticated ciphers' trailer: what the engine reserves out of the MTU.
    pub fn overhead(&self) -> usize {
        self.crypt
            .as_ref()
            .map_or(0, |c| c.header_len() + c.trailer_len())
            + if self.fec.is_some() { FEC_HEADER } else { 0 }
    }

    /// KCP payload bytes per segment: `mtu - 24 - overhead` (docs/wire-format.md#session-headers).
    pub fn mss(&self) -> usize {
        self.kcp
            .mtu
            .saturating_sub(rkcp_engine::OVERHEAD + self.overhead())
    }

    /// Checks every field: the session's own here, the engine's by [`EngineConfig::validate`] (on the config
    /// the engine will get, see [`KcpConfig::engine_config`]).
    ///
    /// # Errors
    /// The first offending field, as a [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mtu = self.kcp.mtu;
        if mtu > MAX_MTU || mtu < rkcp_engine::OVERHEAD + self.overhead() + 1 {
            return Err(ConfigError::Mtu {
                mtu,
                overhead: self.overhead(),
            });
        }
        if let Some(f) = self.fec
            && (f.data_shards == 0 || f.parity_shards == 0 || f.data_shards + f.parity_shards > 256)
        {
            return Err(ConfigError::FecShards {
                data: f.data_shards,
                parity: f.parity_shards,
            });
        }
        if let Some(f) = self.fec
            && let Some(a) = f.adaptive
        {
            if f.data_shards != 1 {
                return Err(ConfigError::AdaptiveFec {
                    reason: "adaptive FEC needs data_shards = 1 (a kcp-go peer cannot follow other shape changes safely)",
                });
            }
            if a.min_parity == 0
                || !(a.min_parity..=a.max_parity).contains(&f.parity_shards)
                || f.data_shards + a.max_parity > 256
            {
                return Err(ConfigError::FecShards {
                    data: f.data_shards,
                    parity: a.max_parity,
                });
            }
            if let Err(rkcp_fec::FecError::InvalidAdaptiveConfig { reason }) = a.policy.validate() {
                return Err(ConfigError::AdaptiveFec { reason });
            }
        }
        if let Some(d) = self.socket.dscp
            && d > 63
        {
            return Err(ConfigError::Dscp(d));
        }
        if self.listener.accept_backlog == 0 {
            return Err(ConfigError::AcceptBacklog);
        }
        if self.listener.max_sessions == 0 {
            return Err(ConfigError::MaxSessions);
        }
        if self.idle_timeout.is_some_and(|t| t.as_millis() == 0)
            || self.close_timeout.as_millis() == 0
        {
            return Err(ConfigError::ZeroTimeout);
        }
        self.engine_config().validate().map_err(ConfigError::Engine)
    }

    /// The configuration the engine of a session gets: [`KcpConfig::kcp`] with the cipher and FEC headers
    /// reserved in front of each datagram ([`KcpConfig::overhead`]), the ACK delay bound and the
    /// loss-tolerant controller's recovery filled in, and write delay left to the session (see the type's
    /// docs).
    pub fn engine_config(&self) -> EngineConfig {
        self.engine_config_reserving(self.overhead())
    }

    /// [`KcpConfig::engine_config`] with `reserved` bytes in front of each datagram.
    pub(crate) fn engine_config_reserving(&self, reserved: usize) -> EngineConfig {
        let k = &self.kcp;
        let loss_tolerant = k.congestion == rkcp_engine::Congestion::LossTolerant;
        EngineConfig {
            reserved,
            write_delay: false,
            ack_delay: Some(k.ack_delay.unwrap_or(DEFAULT_ACK_DELAY_MS)),
            rack: k.rack || loss_tolerant,
            tlp: k.tlp || loss_tolerant,
            ..k.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkcp_crypt::CipherKind;
    use rkcp_engine::Congestion;

    #[test]
    fn default_is_the_engine_default_unchanged() {
        let c = KcpConfig::default();
        assert_eq!(c.kcp, EngineConfig::default());
        assert!(!c.kcp.stream, "kcp-go's default is message mode");
        assert_eq!(c.socket, SocketConfig::default());
        assert_eq!(c.listener, ListenerConfig::default());
        assert_eq!(c.listener.accept_backlog, 128);
        assert_eq!(c.listener.max_sessions, 65536);
        assert_eq!(c.idle_timeout, Some(KcpConfig::DEFAULT_IDLE_TIMEOUT));
        assert_eq!(c.close_timeout, KcpConfig::DEFAULT_CLOSE_TIMEOUT);
    }

    #[test]
    fn engine_config_passes_every_knob_through() {
        // Knobs the old copied-field config could not reach.
        let mut c = KcpConfig::fast3();
        c.kcp.min_rto = Some(15);
        c.kcp.rack = true;
        c.kcp.tlp = true;
        c.kcp.ack_delay = Some(3);
        c.kcp.congestion = Congestion::DeliveryRate;
        let e = c.engine_config_reserving(28);
        assert_eq!(e.min_rto, Some(15));
        assert!(e.rack && e.tlp);
        assert_eq!(e.ack_delay, Some(3));
        assert_eq!(e.congestion, Congestion::DeliveryRate);
        assert_eq!(e.reserved, 28);
        assert!(e.stream);
        // The session's fill-ins: 2 ms ACK delay whatever the interval.
        let e = KcpConfig::fast3().engine_config_reserving(0);
        assert_eq!(e.ack_delay, Some(2));
        for c in [KcpConfig::default(), KcpConfig::normal(), KcpConfig::fast()] {
            assert_eq!(
                c.engine_config_reserving(0).ack_delay,
                Some(DEFAULT_ACK_DELAY_MS)
            );
        }
        assert_eq!(e.congestion, Congestion::KcpGo);
        assert!(!e.rack && !e.tlp);
        let mut c = KcpConfig::default();
        c.kcp.write_delay = true;
        assert!(
            !c.engine_config_reserving(0).write_delay,
            "write delay is the session's rule"
        );
        let mut c = KcpConfig::fast();
        c.kcp.congestion = Congestion::LossTolerant;
        let e = c.engine_config_reserving(0);
        assert!(e.rack && e.tlp);
    }

    #[test]
    fn presets_are_kcptun_tuples() {
        let t = |c: KcpConfig| (c.kcp.nodelay, c.kcp.interval, c.kcp.resend, c.kcp.nc);
        assert_eq!(t(KcpConfig::default()), (false, 100, 0, false));
        assert_eq!(t(KcpConfig::normal()), (false, 40, 2, true));
        assert_eq!(t(KcpConfig::fast()), (false, 30, 2, true));
        assert_eq!(t(KcpConfig::fast2()), (true, 20, 2, true));
        assert_eq!(t(KcpConfig::fast3()), (true, 10, 2, true));
        for c in [
            KcpConfig::normal(),
            KcpConfig::fast(),
            KcpConfig::fast2(),
            KcpConfig::fast3(),
        ] {
            assert!(c.kcp.stream);
            assert_eq!(
                (c.kcp.mtu, c.kcp.snd_wnd, c.kcp.rcv_wnd),
                (1350, 1024, 1024)
            );
            assert_eq!(c.socket.recv_buffer, Some(4 << 20));
            assert_eq!(c.socket.send_buffer, Some(4 << 20));
            c.validate().unwrap();
        }
        KcpConfig::default().validate().unwrap();
        let c = KcpConfig::default()
            .with_mode(true, 20, 2, true)
            .with_window(64, 128)
            .with_mtu(1200)
            .with_stream(true);
        assert_eq!(t(c.clone()), (true, 20, 2, true));
        assert_eq!((c.kcp.snd_wnd, c.kcp.rcv_wnd, c.kcp.mtu), (64, 128, 1200));
        assert!(c.kcp.stream);
    }

    #[test]
    fn mss_matches_kcp_go_header_sizes() {
        // docs/wire-format.md#session-headers: mtu 1350 + crypt + FEC 10/3 -> header 28, mss 1298; crypt only -> 1306.
        let key = [7u8; 32];
        let c = KcpConfig::default()
            .with_mtu(1350)
            .with_crypt(PacketCrypt::new(CipherKind::Aes, &key))
            .with_fec(10, 3);
        assert_eq!(c.overhead(), 28);
        assert_eq!(c.mss(), 1298);
        assert_eq!(c.engine_config().reserved, 28);
        let c = KcpConfig::default()
            .with_mtu(1350)
            .with_crypt(PacketCrypt::new(CipherKind::None, &key));
        assert_eq!(c.mss(), 1306);
        assert_eq!(KcpConfig::default().mss(), 1376);
    }

    #[test]
    fn validate_rejects_bad_fields() {
        let bad = |f: fn(&mut KcpConfig)| {
            let mut c = KcpConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(matches!(bad(|c| c.kcp.mtu = 1501), ConfigError::Mtu { .. }));
        assert!(matches!(bad(|c| c.kcp.mtu = 24), ConfigError::Mtu { .. }));
        assert!(matches!(
            bad(|c| c.fec = Some(FecConfig {
                data_shards: 200,
                parity_shards: 100,
                adaptive: None,
            })),
            ConfigError::FecShards { .. }
        ));
        assert!(matches!(
            bad(|c| c.socket.dscp = Some(64)),
            ConfigError::Dscp(64)
        ));
        assert!(matches!(
            bad(|c| c.listener.accept_backlog = 0),
            ConfigError::AcceptBacklog
        ));
        assert!(matches!(
            bad(|c| c.listener.max_sessions = 0),
            ConfigError::MaxSessions
        ));
        // Engine checks come from the engine's validate.
        assert!(matches!(
            bad(|c| c.kcp.interval = 5),
            ConfigError::Engine(rkcp_engine::KcpError::InvalidInterval(5))
        ));
        assert!(matches!(bad(|c| c.kcp.rcv_wnd = 0), ConfigError::Engine(_)));
        assert!(matches!(
            bad(|c| c.kcp.dead_link = 0),
            ConfigError::Engine(rkcp_engine::KcpError::InvalidDeadLink)
        ));
        assert!(matches!(
            bad(|c| c.idle_timeout = Some(Duration::ZERO)),
            ConfigError::ZeroTimeout
        ));
        assert!(matches!(
            bad(|c| c.close_timeout = Duration::from_micros(10)),
            ConfigError::ZeroTimeout
        ));
        // `reserved` is the session's: a user value does not fail validation.
        let mut c = KcpConfig::default();
        c.kcp.reserved = 5000;
        c.validate().unwrap();
        assert!(KcpConfig::default().with_fec(0, 3).fec.is_none());
        // Adaptive FEC: the start within [min, max], min >= 1, total <= 256, a valid policy.
        let ada = |start, min, max| {
            KcpConfig::default().with_adaptive_fec(start, AdaptiveFec::new(min, max))
        };
        ada(2, 1, 3).validate().unwrap();
        for bad in [ada(0, 0, 3), ada(4, 1, 3), ada(1, 2, 3), ada(1, 1, 256)] {
            assert!(matches!(
                bad.validate().unwrap_err(),
                ConfigError::FecShards { .. }
            ));
        }
        let mut a = AdaptiveFec::new(1, 3);
        a.policy.window = 0;
        assert!(matches!(
            KcpConfig::default()
                .with_adaptive_fec(1, a)
                .validate()
                .unwrap_err(),
            ConfigError::AdaptiveFec { .. }
        ));
        // More than one data shard: refused (a kcp-go peer would rebuild corrupt segments across a change).
        let mut c = KcpConfig::default().with_adaptive_fec(1, AdaptiveFec::new(1, 3));
        c.fec.as_mut().unwrap().data_shards = 10;
        assert!(matches!(
            c.validate().unwrap_err(),
            ConfigError::AdaptiveFec { .. }
        ));
        assert_eq!(
            KcpConfig::default().fec,
            None,
            "FEC, adaptive or not, is off by default"
        );
        let c = KcpConfig::fast3().with_idle_timeout(None);
        assert_eq!(c.idle_timeout, None);
        c.validate().unwrap();
    }
}
