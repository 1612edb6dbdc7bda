//! The CONFIG object of the control protocol: one data listener's transport and its knobs, named after
//! kcptun's flags (docs/wire-format.md#kcptun-flags), and its mapping onto [`rkcp_session::KcpConfig`] and [`rkcp_smux::Config`].
//!
//! Both servers (ours and `kcpbench-go`) and the Go client job read the same JSON, so every field has the
//! default the contract gives (kcptun's defaults, except `mode`, which is `fast3` here).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use rkcp_session::{AdaptiveFec, CipherKind, EngineConfig, KcpConfig, PacketCrypt, SocketConfig};
use serde::{Deserialize, Serialize};

/// What carries a benchmark stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Transport {
    /// One KCP session per stream (own UDP socket on the client side, like kcptun with `--conn` > 1).
    #[serde(rename = "kcp")]
    Kcp,
    /// smux streams over one KCP session (kcptun's stack).
    #[serde(rename = "smux-kcp")]
    SmuxKcp,
    /// One kernel TCP connection per stream.
    #[serde(rename = "tcp")]
    Tcp,
    /// smux streams over one kernel TCP connection.
    #[serde(rename = "smux-tcp")]
    SmuxTcp,
}

impl Transport {
    /// Every transport, in table order.
    pub const ALL: [Transport; 4] = [
        Transport::Kcp,
        Transport::SmuxKcp,
        Transport::Tcp,
        Transport::SmuxTcp,
    ];

    /// The protocol's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Kcp => "kcp",
            Transport::SmuxKcp => "smux-kcp",
            Transport::Tcp => "tcp",
            Transport::SmuxTcp => "smux-tcp",
        }
    }

    /// KCP below (UDP data port), as opposed to kernel TCP.
    pub fn is_kcp(self) -> bool {
        matches!(self, Transport::Kcp | Transport::SmuxKcp)
    }

    /// smux on top: all streams of a run share one connection.
    pub fn is_smux(self) -> bool {
        matches!(self, Transport::SmuxKcp | Transport::SmuxTcp)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Transport::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .with_context(|| format!("unknown transport {s:?} (kcp, smux-kcp, tcp, smux-tcp)"))
    }
}

/// kcptun's `--mode` (docs/wire-format.md#kcptun-modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// nodelay 0, interval 40, resend 2, nc 1.
    Normal,
    /// nodelay 0, interval 30, resend 2, nc 1 (kcptun's default).
    Fast,
    /// nodelay 1, interval 20, resend 2, nc 1.
    Fast2,
    /// nodelay 1, interval 10, resend 2, nc 1 (this tool's default).
    #[default]
    Fast3,
    /// The `nodelay`, `interval`, `resend`, `nc` fields as given.
    Manual,
}

impl Mode {
    /// The protocol's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Fast => "fast",
            Mode::Fast2 => "fast2",
            Mode::Fast3 => "fast3",
            Mode::Manual => "manual",
        }
    }
}

impl FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        [
            Mode::Normal,
            Mode::Fast,
            Mode::Fast2,
            Mode::Fast3,
            Mode::Manual,
        ]
        .into_iter()
        .find(|m| m.name() == s)
        .with_context(|| format!("unknown mode {s:?} (normal, fast, fast2, fast3, manual)"))
    }
}

/// One entry of a `--fec` list: `DATA/PARITY` (fixed, as kcptun), `1/PARITY:auto` (the session chooses
/// the parity from the losses it sees, starting at PARITY; see [`BenchConfig::adaptivefec`]), or `auto`
/// (`1/2:auto`: starting at 2 parity shards, between 1 and 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FecSpec {
    /// Data shards (0: FEC off).
    pub data: usize,
    /// Parity shards (0: FEC off); the start with `adaptive`.
    pub parity: usize,
    /// Parity chosen by the session.
    pub adaptive: bool,
}

impl FecSpec {
    /// Fixed `data/parity`.
    pub fn fixed(data: usize, parity: usize) -> Self {
        FecSpec {
            data,
            parity,
            adaptive: false,
        }
    }
}

impl FromStr for FecSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "auto" {
            return Ok(FecSpec {
                adaptive: true,
                ..FecSpec::fixed(1, 2)
            });
        }
        let (shape, adaptive) = match s.strip_suffix(":auto") {
            Some(shape) => (shape, true),
            None => (s, false),
        };
        let (d, p) = shape.split_once('/').ok_or_else(|| {
            format!("FEC {s:?} is not DATA/PARITY, DATA/PARITY:auto or auto (e.g. 10/3)")
        })?;
        let d = d.trim().parse().map_err(|_| format!("bad FEC {s:?}"))?;
        let p = p.trim().parse().map_err(|_| format!("bad FEC {s:?}"))?;
        if adaptive && (d != 1 || p == 0) {
            return Err(format!(
                "adaptive FEC {s:?} takes one data shard and at least one parity shard (1/P:auto)"
            ));
        }
        Ok(FecSpec {
            adaptive,
            ..FecSpec::fixed(d, p)
        })
    }
}

/// One data listener's configuration: the contract's CONFIG object. `Default` is the contract's defaults
/// with transport `kcp`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BenchConfig {
    /// What carries the streams.
    pub transport: Transport,
    /// kcptun preset; `manual` takes the four fields below.
    pub mode: Mode,
    /// Manual mode: kcp-go `nodelay` (0/1).
    pub nodelay: i32,
    /// Manual mode: flush interval, ms.
    pub interval: i32,
    /// Manual mode: fast-resend threshold.
    pub resend: i32,
    /// Manual mode: 1 = no congestion control.
    pub nc: i32,
    /// Send window, segments.
    pub sndwnd: u32,
    /// Receive window, segments.
    pub rcvwnd: u32,
    /// Largest datagram, bytes (kcptun's 1350).
    pub mtu: usize,
    /// ACK right after each input.
    pub acknodelay: bool,
    /// Cap on segments in flight (rkcp only, `rkcp_session::KcpConfig::max_inflight`); 0 = no cap (kcp-go).
    pub inflight: u32,
    /// Congestion controller (rkcp only, `rkcp_session::KcpConfig::congestion`): `kcpgo` (kcp-go's window),
    /// `none`, or `rate` (delivery-rate model with pacing).
    pub cc: String,
    /// RACK loss detection (rkcp only, `rkcp_session::EngineConfig::rack`).
    pub rack: bool,
    /// Tail loss probe (rkcp only, `rkcp_session::EngineConfig::tlp`).
    pub tlp: bool,
    /// Repeated ACKs of out-of-order segments (rkcp only, `rkcp_session::EngineConfig::ack_repeat`):
    /// -1 = the controller's default.
    pub ackrepeat: i32,
    /// Redundant bundling for thin streams (rkcp only, `rkcp_session::EngineConfig::bundle`).
    pub bundle: bool,
    /// kcptun cipher name; `none` still carries kcp-go's nonce + CRC header, as kcptun does.
    pub crypt: String,
    /// kcptun `--key`, derived with PBKDF2 as kcptun does.
    pub key: String,
    /// FEC data shards (0 = FEC off).
    pub datashard: usize,
    /// FEC parity shards (0 = FEC off); with `adaptivefec`, where the session starts.
    pub parityshard: usize,
    /// Parity chosen by the session from the losses it sees (rkcp only, `rkcp_session::AdaptiveFec`;
    /// `datashard` must be 1): it starts at `parityshard` and moves between 1 and
    /// [`BenchConfig::adaptive_max_parity`]. A Go peer reading the same CONFIG sends fixed
    /// `datashard/parityshard`.
    pub adaptivefec: bool,
    /// smux version, 1 or 2.
    pub smuxver: u8,
    /// smux session receive buffer, bytes.
    pub smuxbuf: usize,
    /// smux v2 per-stream window, bytes.
    pub streambuf: usize,
    /// smux v2 window autotuning (rkcp only): the window starts at `min(64 KiB, streambuf)` and
    /// grows with what the path needs, up to the session buffer. Off, the window is `streambuf`, as
    /// kcptun and Go smux advertise it.
    pub autotune: bool,
    /// smux largest frame payload, bytes.
    pub framesize: usize,
    /// smux keepalive interval, seconds.
    pub keepalive: u64,
    /// UDP socket buffers (`SO_RCVBUF`/`SO_SNDBUF`), bytes. Kernel TCP keeps its autotuning (fixing the
    /// buffer would disable it and handicap the TCP baseline).
    pub sockbuf: usize,
    /// Always true: benchmarks never compress.
    pub nocomp: bool,
    /// Kernel TCP congestion control of the TCP transports' sockets (`TCP_CONGESTION`, set on the
    /// client's socket and on the server's accepted one), e.g. `cubic` or `bbr`; empty = the kernel's
    /// default. KCP transports ignore it.
    pub tcpcc: String,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            transport: Transport::Kcp,
            mode: Mode::Fast3,
            nodelay: 1,
            interval: 10,
            resend: 2,
            nc: 1,
            sndwnd: 1024,
            rcvwnd: 1024,
            mtu: 1350,
            acknodelay: false,
            inflight: 0,
            cc: "kcpgo".into(),
            rack: false,
            tlp: false,
            ackrepeat: -1,
            bundle: false,
            crypt: "none".into(),
            key: "it's a secrect".into(),
            datashard: 0,
            parityshard: 0,
            adaptivefec: false,
            smuxver: 2,
            smuxbuf: 4_194_304,
            streambuf: 2_097_152,
            autotune: false,
            framesize: 32768,
            keepalive: 10,
            sockbuf: 4_194_304,
            nocomp: true,
            tcpcc: String::new(),
        }
    }
}

impl BenchConfig {
    /// The session configuration, built as kcptun builds it (mode tuple, windows, mtu, cipher from the
    /// PBKDF2-derived key, FEC).
    ///
    /// # Errors
    /// A field session would refuse.
    pub fn kcp_config(&self) -> anyhow::Result<KcpConfig> {
        let base = match self.mode {
            Mode::Normal => KcpConfig::normal(),
            Mode::Fast => KcpConfig::fast(),
            Mode::Fast2 => KcpConfig::fast2(),
            Mode::Fast3 => KcpConfig::fast3(),
            Mode::Manual => KcpConfig::fast3().with_mode(
                self.nodelay != 0,
                self.interval.clamp(10, 5000) as u32,
                self.resend.max(0) as u32,
                self.nc != 0,
            ),
        };
        let cfg = KcpConfig {
            kcp: EngineConfig {
                snd_wnd: self.sndwnd,
                rcv_wnd: self.rcvwnd.min(65535),
                mtu: self.mtu,
                ack_nodelay: self.acknodelay,
                max_inflight: (self.inflight > 0).then_some(self.inflight),
                congestion: match self.cc.as_str() {
                    "kcpgo" | "" => rkcp_session::Congestion::KcpGo,
                    "none" => rkcp_session::Congestion::None,
                    "rate" => rkcp_session::Congestion::DeliveryRate,
                    "tolerant" => rkcp_session::Congestion::LossTolerant,
                    other => {
                        bail!(
                            "unknown congestion controller {other:?} (kcpgo, none, rate, tolerant)"
                        )
                    }
                },
                rack: self.rack,
                tlp: self.tlp,
                ack_repeat: u32::try_from(self.ackrepeat).ok(),
                bundle: self.bundle,
                stream: true,
                write_delay: false,
                ..base.kcp
            },
            socket: SocketConfig {
                recv_buffer: Some(self.sockbuf),
                send_buffer: Some(self.sockbuf),
                ..base.socket
            },
            ..base
        }
        .with_fec(self.datashard, self.parityshard);
        let cfg = if self.adaptivefec && self.datashard > 0 && self.parityshard > 0 {
            if self.datashard != 1 {
                bail!(
                    "adaptive FEC takes one data shard (1/P:auto), not {}",
                    self.datashard
                );
            }
            let policy = AdaptiveFec::new(1, self.adaptive_max_parity());
            cfg.with_adaptive_fec(self.parityshard, policy)
        } else {
            cfg
        };
        // "plain": no packet layer at all (kcp-go with a nil BlockCrypt), 20 bytes less per datagram
        // than kcptun's "none".
        let cfg = if self.crypt == "plain" {
            cfg
        } else {
            let kind = CipherKind::from_kcptun_name(&self.crypt);
            cfg.with_crypt(PacketCrypt::from_passphrase(kind, &self.key))
        };
        cfg.validate().context("KCP configuration")?;
        Ok(cfg)
    }

    /// Most parity shards adaptive FEC may choose: twice the start, at least one more.
    pub fn adaptive_max_parity(&self) -> usize {
        (2 * self.parityshard)
            .max(self.parityshard + 1)
            .min(256usize.saturating_sub(self.datashard))
    }

    /// The smux configuration (kcptun's: fixed `streambuf` windows, unless `autotune`).
    ///
    /// # Errors
    /// An unsupported version or a value smux refuses.
    pub fn smux_config(&self) -> anyhow::Result<rkcp_smux::Config> {
        let mut c = rkcp_smux::Config::default();
        c.version = match self.smuxver {
            1 => rkcp_smux::Version::V1,
            2 => rkcp_smux::Version::V2,
            v => bail!("unsupported smux version {v} (1 or 2)"),
        };
        c.max_receive_buffer = self.smuxbuf;
        // Both ends take --smuxbuf (kcptun's convention).
        c.peer_receive_buffer = self.smuxbuf;
        c.max_stream_buffer = self.streambuf;
        c.stream_window_autotune = self.autotune;
        c.max_frame_size = self.framesize;
        if self.keepalive == 0 {
            bail!("keepalive must be positive");
        }
        c.keep_alive_interval = Duration::from_secs(self.keepalive);
        c.keep_alive_timeout = Duration::from_secs(self.keepalive * 3);
        c.validate().context("smux configuration")?;
        Ok(c)
    }

    /// Checks that both halves of the configuration build.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.transport.is_kcp() {
            self.kcp_config()?;
        }
        if self.transport.is_smux() {
            self.smux_config()?;
        }
        Ok(())
    }

    /// A short human label for tables: what differs between rows (transport, mode, cipher, FEC, and the
    /// windows/mtu/smux version when not the defaults).
    pub fn label(&self) -> String {
        let d = BenchConfig::default();
        let mut s = match self.transport {
            Transport::Kcp => "kcp".to_string(),
            Transport::SmuxKcp => "smux/kcp".to_string(),
            Transport::Tcp => "tcp".to_string(),
            Transport::SmuxTcp => format!("smux v{}/tcp", self.smuxver),
        };
        if !self.transport.is_kcp() {
            if !self.tcpcc.is_empty() {
                s += &format!(" {}", self.tcpcc);
            }
            return s;
        }
        if self.transport == Transport::SmuxKcp && self.smuxver != d.smuxver {
            s = format!("smux v{}/kcp", self.smuxver);
        }
        if self.mode == Mode::Manual {
            s += &format!(
                " {},{},{},{}",
                self.nodelay, self.interval, self.resend, self.nc
            );
        } else {
            s += &format!(" {}", self.mode.name());
        }
        if self.sndwnd != d.sndwnd || self.rcvwnd != d.rcvwnd {
            s += &format!(" wnd {}/{}", self.sndwnd, self.rcvwnd);
        }
        if self.mtu != d.mtu {
            s += &format!(" mtu {}", self.mtu);
        }
        if self.acknodelay {
            s += " acknodelay";
        }
        if self.inflight > 0 {
            s += &format!(" inflight {}", self.inflight);
        }
        if self.cc != "kcpgo" && !self.cc.is_empty() {
            s += &format!(" cc {}", self.cc);
        }
        if self.rack {
            s += " rack";
        }
        if self.tlp {
            s += " tlp";
        }
        if self.ackrepeat >= 0 {
            s += &format!(" ackrepeat {}", self.ackrepeat);
        }
        if self.bundle {
            s += " bundle";
        }
        if self.autotune && self.transport.is_smux() {
            s += " autotune";
        }
        if self.crypt != "none" {
            s += &format!(" {}", self.crypt);
        }
        if self.datashard > 0 && self.parityshard > 0 {
            s += &format!(" fec {}/{}", self.datashard, self.parityshard);
            if self.adaptivefec {
                s += " auto";
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_defaults_fill_missing_fields() {
        let c: BenchConfig = serde_json::from_str(r#"{"transport":"smux-kcp"}"#).unwrap();
        assert_eq!(c.transport, Transport::SmuxKcp);
        assert_eq!(c.mode, Mode::Fast3);
        assert_eq!(c.mtu, 1350);
        assert_eq!(c.smuxver, 2);
        let back: BenchConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn kcp_config_follows_kcptun() {
        let c = BenchConfig {
            mode: Mode::Fast,
            crypt: "aes".into(),
            datashard: 10,
            parityshard: 3,
            ..BenchConfig::default()
        };
        let k = c.kcp_config().unwrap();
        assert_eq!(
            (k.kcp.nodelay, k.kcp.interval, k.kcp.resend, k.kcp.nc),
            (false, 30, 2, true)
        );
        assert_eq!(k.crypt.as_ref().unwrap().kind(), CipherKind::Aes);
        assert_eq!(k.mss(), 1350 - 24 - 28);
        assert_eq!(c.label(), "kcp fast aes fec 10/3");
        let s = c.smux_config().unwrap();
        assert_eq!(s.version, rkcp_smux::Version::V2);
        assert_eq!(s.max_stream_buffer, 2_097_152);
    }

    #[test]
    fn adaptive_fec_maps_onto_the_session() {
        let c = BenchConfig {
            datashard: 1,
            parityshard: 2,
            adaptivefec: true,
            ..BenchConfig::default()
        };
        let f = c.kcp_config().unwrap().fec.unwrap();
        assert_eq!((f.data_shards, f.parity_shards), (1, 2));
        let a = f.adaptive.unwrap();
        assert_eq!((a.min_parity, a.max_parity), (1, 4));
        assert_eq!(a, AdaptiveFec::new(1, 4));
        assert_eq!(c.label(), "kcp fast3 fec 1/2 auto");
        let c = BenchConfig {
            datashard: 10,
            parityshard: 3,
            adaptivefec: true,
            ..BenchConfig::default()
        };
        assert!(c.kcp_config().is_err(), "one data shard only");
        // Off unless asked for, and without FEC nothing to adapt.
        let c = BenchConfig {
            datashard: 10,
            parityshard: 3,
            ..BenchConfig::default()
        };
        assert_eq!(c.kcp_config().unwrap().fec.unwrap().adaptive, None);
        let c = BenchConfig {
            adaptivefec: true,
            ..BenchConfig::default()
        };
        assert!(c.kcp_config().unwrap().fec.is_none());
    }

    #[test]
    fn bad_values_are_refused() {
        let c = BenchConfig {
            mtu: 2000,
            ..BenchConfig::default()
        };
        assert!(c.validate().is_err());
        let c = BenchConfig {
            transport: Transport::SmuxTcp,
            smuxver: 3,
            ..BenchConfig::default()
        };
        assert!(c.validate().is_err());
        assert!("udp".parse::<Transport>().is_err());
        // The TCP congestion control names TCP rows only.
        let c = BenchConfig {
            transport: Transport::Tcp,
            tcpcc: "cubic".into(),
            ..BenchConfig::default()
        };
        assert_eq!(c.label(), "tcp cubic");
        let c = BenchConfig {
            tcpcc: "cubic".into(),
            ..BenchConfig::default()
        };
        assert_eq!(c.label(), "kcp fast3");
        assert_eq!("smux-tcp".parse::<Transport>().unwrap(), Transport::SmuxTcp);
    }
}
