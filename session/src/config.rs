//! Session-level configuration: the engine's knobs, the packet pipeline (cipher, FEC), the socket and the
//! session's lifecycle bounds (idle timeout, close timeout).

use std::time::Duration;

use rkcp_crypt::PacketCrypt;
use rkcp_engine::Congestion;

use crate::error::ConfigError;
use crate::proto::admission::Admission;

/// Largest MTU a session accepts: kcp-go's `UDPSession.SetMtu` refuses more than 1500, and peers read into
/// 1500-byte buffers (docs/wire-format.md#session-options, #session-bad-input).
pub const MAX_MTU: usize = 1500;

/// kcp-go's FEC header on data packets: seqid u32, type u16, size u16 (docs/wire-format.md#session-headers, #fec-header).
const FEC_HEADER: usize = rkcp_fec::HEADER_SIZE_PLUS2;

/// Reed–Solomon shard counts for the FEC layer (docs/wire-format.md#fec). Each direction's setting is independent: this
/// decides what *we* put on the wire; received FEC is detected per packet whatever the local setting (B.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecConfig {
    /// Data shards per group (kcptun `--datashard`, default 10).
    pub data_shards: usize,
    /// Parity shards per group (kcptun `--parityshard`, default 3).
    pub parity_shards: usize,
}

impl FecConfig {
    /// kcptun's default 10 data + 3 parity.
    pub const KCPTUN: FecConfig = FecConfig {
        data_shards: 10,
        parity_shards: 3,
    };
}

/// Configuration of a [`KcpStream`](crate::KcpStream) or of every session a [`KcpListener`](crate::KcpListener)
/// accepts.
///
/// `Default` keeps kcp-go's library defaults (docs/wire-format.md#session-options) for every engine knob, with one exception:
/// `stream` is on, because [`KcpStream`](crate::KcpStream) is a byte stream (`AsyncRead`/`AsyncWrite`) and every
/// real user of kcp-go (kcptun) turns it on. Beyond kcp-go, and invisible on the wire, every session has an idle
/// timeout ([`KcpConfig::idle_timeout`], 60 s) and a bounded graceful shutdown ([`KcpConfig::close_timeout`],
/// 30 s); kcp-go has neither. The presets ([`KcpConfig::normal`] … [`KcpConfig::fast3`]) are
/// kcptun's per-session setup (docs/wire-format.md#kcptun-modes, #kcptun-session): its mode tuple, stream mode, mtu 1350, windows 1024/1024
/// and 4 MiB socket buffers. Cipher and FEC stay off in every preset: set [`KcpConfig::crypt`] and
/// [`KcpConfig::fec`] to talk to a kcptun peer (which always has a cipher, even `none`; docs/wire-format.md#layering).
#[derive(Debug, Clone)]
pub struct KcpConfig {
    /// Lower minimum RTO (30 ms instead of 100) and gentler RTO backoff. Default `false` (kcp-go).
    pub nodelay: bool,
    /// Internal flush interval in ms, 10..=5000. Default 100 (kcp-go). Also bounds the ACK delay.
    pub interval: u32,
    /// Fast-retransmit threshold in duplicate ACKs; 0 disables fast retransmit. Default 0 (kcp-go).
    pub resend: u32,
    /// Disable congestion control (window = min(snd_wnd, peer's window)). Default `false` (kcp-go).
    pub nc: bool,
    /// Send window in segments. Default 32 (kcp-go).
    pub snd_wnd: u32,
    /// Receive window in segments, 1..=65535. Default 32 (kcp-go).
    pub rcv_wnd: u32,
    /// Largest UDP payload sent, headers included, 50..=1500. Default 1400 (kcp-go). The KCP payload per
    /// segment is `mtu - 24 - header` where header is the cipher's 20 bytes plus 8 with FEC (B.1).
    pub mtu: usize,
    /// Stream mode (no message boundaries; segments are filled to the MSS). Default `true`, see above.
    pub stream: bool,
    /// Send ACKs right after each input instead of at the next flush. Default `false` (kcp-go).
    pub ack_nodelay: bool,
    /// Do not flush after each write; wait until the window fills or the next interval tick. Default `false`.
    pub write_delay: bool,
    /// Transmissions of one segment after which the peer counts as gone and the stream fails with
    /// [`SessionError::DeadLink`](crate::SessionError::DeadLink). Default 20 (kcp-go `IKCP_DEADLINK`).
    pub dead_link: u32,
    /// Cap on segments sent but not yet acknowledged, beyond kcp-go and invisible on the wire; see
    /// [`rkcp_engine::Kcp::set_max_inflight`]. Default `None` (no cap, as kcp-go). For a long lossy path, set the
    /// windows well above the path's capacity (e.g. 4096) and this near its bandwidth-delay product plus
    /// its bottleneck queue, in segments: holes then no longer stall the sender.
    pub max_inflight: Option<u32>,
    /// Congestion controller, invisible on the wire; see [`Congestion`]. Default [`Congestion::KcpGo`]
    /// (kcp-go's window, byte for byte). [`Congestion::DeliveryRate`] paces new segments at the measured
    /// bottleneck rate and keeps about two bandwidth-delay products in flight without taking random loss for
    /// congestion: for lossy long links, with windows well above the path's capacity (e.g. 4096).
    pub congestion: Congestion,
    /// Packet cipher (kcp-go's nonce + CRC + cipher, or an authenticated Rust-only kind). Default `None`
    /// (plain KCP, no header). Both ends must agree.
    pub crypt: Option<PacketCrypt>,
    /// Reed–Solomon FEC for what we send. Default `None`.
    pub fec: Option<FecConfig>,
    /// DSCP code point for outgoing datagrams (IPv4 `IP_TOS = dscp << 2`, IPv6 traffic class `dscp`, as kcp-go).
    /// Default `None` (leave the socket alone).
    pub dscp: Option<u32>,
    /// `SO_RCVBUF` request in bytes (the kernel may cap it). Default `None` (OS default).
    pub recv_buffer: Option<usize>,
    /// `SO_SNDBUF` request in bytes (the kernel may cap it). Default `None` (OS default).
    pub send_buffer: Option<usize>,
    /// Listener only: sessions created but not yet accepted, beyond which new peers are dropped. Default 128
    /// (kcp-go `acceptBacklog`).
    pub accept_backlog: usize,
    /// Listener only: live sessions at most; datagrams from further new peers are dropped and counted in
    /// [`ListenerStats`](crate::ListenerStats). Default 65536.
    pub max_sessions: usize,
    /// Listener only: the limits for peers that have not proved their address yet, and the replay record
    /// (see [`Admission`]; defaults keep a listener safe on the open internet).
    pub admission: Admission,
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
        // The engine's knobs start at the engine's own (kcp-go) defaults; only stream mode differs.
        let e = rkcp_engine::KcpConfig::default();
        KcpConfig {
            nodelay: e.nodelay,
            interval: e.interval,
            resend: e.resend,
            nc: e.nc,
            snd_wnd: e.snd_wnd,
            rcv_wnd: e.rcv_wnd,
            mtu: e.mtu,
            stream: true,
            ack_nodelay: e.ack_nodelay,
            write_delay: e.write_delay,
            dead_link: e.dead_link,
            max_inflight: e.max_inflight,
            congestion: e.congestion,
            crypt: None,
            fec: None,
            dscp: None,
            recv_buffer: None,
            send_buffer: None,
            accept_backlog: 128,
            max_sessions: 65536,
            admission: Admission::default(),
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

    /// kcptun's session setup around one of the engine's presets (which own the mode tuples, docs/wire-format.md#kcptun-modes).
    fn kcptun(mode: rkcp_engine::KcpConfig) -> Self {
        KcpConfig {
            nodelay: mode.nodelay,
            interval: mode.interval,
            resend: mode.resend,
            nc: mode.nc,
            mtu: 1350,
            snd_wnd: 1024,
            rcv_wnd: 1024,
            recv_buffer: Some(4 << 20),
            send_buffer: Some(4 << 20),
            ..KcpConfig::default()
        }
    }

    /// kcptun `normal`: nodelay 0, interval 40, resend 2, nc 1 (plus the kcptun session setup, see above).
    pub fn normal() -> Self {
        Self::kcptun(rkcp_engine::KcpConfig::normal())
    }

    /// kcptun `fast` (its default mode): nodelay 0, interval 30, resend 2, nc 1.
    pub fn fast() -> Self {
        Self::kcptun(rkcp_engine::KcpConfig::fast())
    }

    /// kcptun `fast2`: nodelay 1, interval 20, resend 2, nc 1.
    pub fn fast2() -> Self {
        Self::kcptun(rkcp_engine::KcpConfig::fast2())
    }

    /// kcptun `fast3`: nodelay 1, interval 10, resend 2, nc 1.
    pub fn fast3() -> Self {
        Self::kcptun(rkcp_engine::KcpConfig::fast3())
    }

    /// Sets the cipher (builder style).
    pub fn with_crypt(mut self, crypt: PacketCrypt) -> Self {
        self.crypt = Some(crypt);
        self
    }

    /// Sets FEC shard counts (builder style); `(0, _)` or `(_, 0)` turns FEC off, as in kcp-go.
    pub fn with_fec(mut self, data_shards: usize, parity_shards: usize) -> Self {
        self.fec = (data_shards > 0 && parity_shards > 0).then_some(FecConfig {
            data_shards,
            parity_shards,
        });
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
        self.mtu
            .saturating_sub(rkcp_engine::OVERHEAD + self.overhead())
    }

    /// Checks every field.
    ///
    /// # Errors
    /// The first offending field, as a [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.mtu > MAX_MTU || self.mtu < rkcp_engine::OVERHEAD + self.overhead() + 1 {
            return Err(ConfigError::Mtu {
                mtu: self.mtu,
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
        if let Some(d) = self.dscp
            && d > 63
        {
            return Err(ConfigError::Dscp(d));
        }
        if self.accept_backlog == 0 {
            return Err(ConfigError::AcceptBacklog);
        }
        if self.max_sessions == 0 {
            return Err(ConfigError::MaxSessions);
        }
        if self.idle_timeout.is_some_and(|t| t.as_millis() == 0)
            || self.close_timeout.as_millis() == 0
        {
            return Err(ConfigError::ZeroTimeout);
        }
        self.engine_config(0)
            .validate()
            .map_err(ConfigError::Engine)
    }

    /// The engine configuration for this session config, with `reserved` bytes in front of each datagram.
    pub(crate) fn engine_config(&self, reserved: usize) -> rkcp_engine::KcpConfig {
        rkcp_engine::KcpConfig {
            nodelay: self.nodelay,
            interval: self.interval,
            resend: self.resend,
            nc: self.nc,
            snd_wnd: self.snd_wnd,
            rcv_wnd: self.rcv_wnd,
            mtu: self.mtu,
            stream: self.stream,
            reserved,
            ack_nodelay: self.ack_nodelay,
            dead_link: self.dead_link,
            max_inflight: self.max_inflight,
            congestion: self.congestion,
            ..rkcp_engine::KcpConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkcp_crypt::CipherKind;

    #[test]
    fn congestion_reaches_the_engine() {
        let c = KcpConfig {
            congestion: Congestion::DeliveryRate,
            ..KcpConfig::fast3()
        };
        assert_eq!(c.engine_config(0).congestion, Congestion::DeliveryRate);
        assert_eq!(
            KcpConfig::fast3().engine_config(0).congestion,
            Congestion::KcpGo
        );
    }

    #[test]
    fn presets_are_kcptun_tuples() {
        let t = |c: KcpConfig| (c.nodelay, c.interval, c.resend, c.nc);
        assert_eq!(t(KcpConfig::default()), (false, 100, 0, false));
        assert_eq!(t(KcpConfig::normal()), (false, 40, 2, true));
        assert_eq!(t(KcpConfig::fast()), (false, 30, 2, true));
        assert_eq!(t(KcpConfig::fast2()), (true, 20, 2, true));
        assert_eq!(t(KcpConfig::fast3()), (true, 10, 2, true));
        for c in [
            KcpConfig::default(),
            KcpConfig::normal(),
            KcpConfig::fast(),
            KcpConfig::fast2(),
            KcpConfig::fast3(),
        ] {
            c.validate().unwrap();
        }
    }

    #[test]
    fn mss_matches_kcp_go_header_sizes() {
        // docs/wire-format.md#session-headers: mtu 1350 + crypt + FEC 10/3 -> header 28, mss 1298; crypt only -> 1306.
        let key = [7u8; 32];
        let c = KcpConfig {
            mtu: 1350,
            ..KcpConfig::default()
        }
        .with_crypt(PacketCrypt::new(CipherKind::Aes, &key))
        .with_fec(10, 3);
        assert_eq!(c.overhead(), 28);
        assert_eq!(c.mss(), 1298);
        let c = KcpConfig {
            mtu: 1350,
            ..KcpConfig::default()
        }
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
        assert!(matches!(bad(|c| c.mtu = 1501), ConfigError::Mtu { .. }));
        assert!(matches!(bad(|c| c.mtu = 24), ConfigError::Mtu { .. }));
        assert!(matches!(
            bad(|c| c.fec = Some(FecConfig {
                data_shards: 200,
                parity_shards: 100
            })),
            ConfigError::FecShards { .. }
        ));
        assert!(matches!(bad(|c| c.dscp = Some(64)), ConfigError::Dscp(64)));
        assert!(matches!(
            bad(|c| c.accept_backlog = 0),
            ConfigError::AcceptBacklog
        ));
        assert!(matches!(
            bad(|c| c.max_sessions = 0),
            ConfigError::MaxSessions
        ));
        assert!(matches!(bad(|c| c.interval = 5), ConfigError::Engine(_)));
        assert!(matches!(bad(|c| c.rcv_wnd = 0), ConfigError::Engine(_)));
        assert!(matches!(
            bad(|c| c.idle_timeout = Some(Duration::ZERO)),
            ConfigError::ZeroTimeout
        ));
        assert!(matches!(
            bad(|c| c.close_timeout = Duration::from_micros(10)),
            ConfigError::ZeroTimeout
        ));
        assert!(KcpConfig::default().with_fec(0, 3).fec.is_none());
        let c = KcpConfig::fast3().with_idle_timeout(None);
        assert_eq!(c.idle_timeout, None);
        c.validate().unwrap();
    }
}
