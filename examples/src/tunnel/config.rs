//! Command line and JSON configuration, flag for flag and default for default as kcptun 20210922
//! (`docs/wire-format.md#kcptun-flags`, `#kcptun-modes`).
//!
//! Where kcptun silently falls back (an unknown `--crypt` means aes, an unknown `--mode` keeps the manual
//! values, an unknown JSON key is ignored, the well-known default key is used), we do the same for
//! compatibility but say so: [`Params::warnings`] lists each case and the programs log them at `warn` level.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgAction, Parser};
use rkcp_session::{AdaptiveFec, CipherKind, KcpConfig, PacketCrypt};
use serde::{Deserialize, Serialize};

/// Flags shared by client and server, in kcptun's order and with its defaults where both sides agree.
macro_rules! tunnel_config {
    (
        $(#[$meta:meta])*
        $name:ident {
            $($(#[$fmeta:meta])* $field:ident : $ty:ty,)*
        }
    ) => {
        #[derive(Parser, Serialize, Deserialize, Debug, Clone, PartialEq)]
        $(#[$meta])*
        #[command(version, disable_version_flag = true, after_help = crate::cli::SIGNALS_HELP)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*

            /// pre-shared secret between client and server (the default is public knowledge: set your own)
            #[arg(long, env = "KCPTUN_KEY", default_value = DEFAULT_KEY, hide_env_values = true)]
            pub key: String,
            /// aes, aes-128, aes-192, salsa20, blowfish, twofish, cast5, 3des, tea, xtea, xor, sm4, none
            /// (as kcptun, an unknown name means aes: we warn)
            #[arg(long, default_value = "aes")]
            pub crypt: String,
            /// Rust peers only: authenticate every packet with aes-256-gcm or chacha20-poly1305 instead of
            /// --crypt (kcptun has no such flag; both ends must set it)
            #[arg(long, default_value = "")]
            pub aead: String,
            /// profiles: fast3, fast2, fast, normal, manual (as kcptun, an unknown name means manual: we warn)
            #[arg(long, default_value = "fast")]
            pub mode: String,
            /// set maximum transmission unit for UDP packets
            #[arg(long, default_value_t = 1350)]
            pub mtu: i64,
            /// set reed-solomon erasure coding - datashard
            #[arg(long = "datashard", visible_alias = "ds", default_value_t = 10)]
            pub datashard: i64,
            /// set reed-solomon erasure coding - parityshard
            #[arg(long = "parityshard", visible_alias = "ps", default_value_t = 3)]
            pub parityshard: i64,
            /// adaptive FEC (rkcp only; kcptun has no such flag, and decodes what it sends), with --ds 1:
            /// the parity shards follow the losses this end sees, between 1 and this many, starting at
            /// --parityshard; 0 (the default) keeps --parityshard fixed, as kcptun
            #[arg(long, default_value_t = 0)]
            pub autofec: i64,
            /// set DSCP(6bit)
            #[arg(long, default_value_t = 0)]
            pub dscp: i64,
            /// disable compression
            #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
                  default_value_t = false, action = ArgAction::Set)]
            pub nocomp: bool,
            /// flush ack immediately when a packet is received
            #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true",
                  default_value_t = false, action = ArgAction::Set)]
            pub acknodelay: bool,
            /// congestion controller (rkcp only; kcptun has no such flag and peers need not agree):
            /// kcpgo (kcptun's, the default), rate (delivery-rate model with pacing, for lossy long
            /// links; use large --sndwnd/--rcvwnd such as 4096), tolerant (kcptun's window repaired
            /// for random loss, with RACK loss detection and tail loss probes: what --nc 0 should
            /// use on a lossy link, where kcptun's own window collapses), none
            #[arg(long, default_value = "kcpgo")]
            pub cc: String,
            /// manual mode: nodelay
            #[arg(long, hide = true, default_value_t = 0, allow_negative_numbers = true)]
            pub nodelay: i64,
            /// manual mode: interval in ms
            #[arg(long, hide = true, default_value_t = 50, allow_negative_numbers = true)]
            pub interval: i64,
            /// manual mode: fast resend threshold
            #[arg(long, hide = true, default_value_t = 0, allow_negative_numbers = true)]
            pub resend: i64,
            /// manual mode: 1 disables congestion control
            #[arg(long, hide = true, default_value_t = 0, allow_negative_numbers = true)]
            pub nc: i64,
            /// per-socket buffer in bytes
            #[arg(long, default_value_t = 4194304)]
            pub sockbuf: i64,
            /// specify smux version, available 1,2
            #[arg(long, default_value_t = 1)]
            pub smuxver: i64,
            /// the overall de-mux buffer in bytes
            #[arg(long, default_value_t = 4194304)]
            pub smuxbuf: i64,
            /// per stream receive buffer in bytes, smux v2+
            #[arg(long, default_value_t = 2097152)]
            pub streambuf: i64,
            /// seconds between heartbeats
            #[arg(long, default_value_t = 10)]
            pub keepalive: i64,
            /// collect snmp to file, aware of timeformat in golang, like: ./snmp-20060102.log
            #[arg(long, default_value = "")]
            pub snmplog: String,
            /// snmp collect period, in seconds
            #[arg(long, default_value_t = 60)]
            pub snmpperiod: i64,
            /// specify a log file to output, default goes to stderr
            #[arg(long, default_value = "")]
            pub log: String,
            /// to suppress the per-session and per-stream messages ('stream open/close', 'remote address', …)
            #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
                  default_value_t = false, action = ArgAction::Set)]
            pub quiet: bool,
            /// to emulate a TCP connection(linux) -- not supported by this implementation
            #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
                  default_value_t = false, action = ArgAction::Set)]
            pub tcp: bool,
            /// config from json file, which will override the command from shell
            #[arg(short = 'c', default_value = "")]
            #[serde(skip)]
            pub c: String,
            /// print the version (-v, kcptun's spelling, works too)
            #[arg(short = 'V', long = "version", short_alias = 'v', action = ArgAction::Version)]
            #[serde(skip)]
            pub version: Option<bool>,
            /// Warnings about the JSON file (unknown keys), filled in by [`merge_json`].
            #[arg(skip)]
            #[serde(skip)]
            pub json_warnings: Vec<String>,
        }
    };
}

tunnel_config! {
    /// tunnel-client: kcptun's client (with SMUX). Accepts TCP connections and carries each one as a smux
    /// stream over KCP to a tunnel-server or kcptun server.
    #[command(name = "tunnel-client")]
    ClientConfig {
        /// local listen address
        #[arg(short = 'l', long = "localaddr", default_value = ":12948")]
        localaddr: String,
        /// kcp server address
        #[arg(short = 'r', long = "remoteaddr", default_value = "vps:29900")]
        remoteaddr: String,
        /// set num of UDP connections to server
        #[arg(long, default_value_t = 1)]
        conn: i64,
        /// set auto expiration time(in seconds) for a single UDP connection, 0 to disable
        #[arg(long, default_value_t = 0)]
        autoexpire: i64,
        /// set how long an expired connection can live (in seconds)
        #[arg(long, default_value_t = 600)]
        scavengettl: i64,
        /// set send window size(num of packets)
        #[arg(long, default_value_t = 128)]
        sndwnd: i64,
        /// set receive window size(num of packets)
        #[arg(long, default_value_t = 512)]
        rcvwnd: i64,
    }
}

tunnel_config! {
    /// tunnel-server: kcptun's server (with SMUX). Accepts KCP sessions and connects each smux stream to the
    /// target (host:port over TCP, or a unix socket path).
    #[command(name = "tunnel-server")]
    ServerConfig {
        /// kcp server listen address
        #[arg(short = 'l', long = "listen", default_value = ":29900")]
        listen: String,
        /// target server address, or path/to/unix_socket
        #[arg(short = 't', long = "target", default_value = "127.0.0.1:12948")]
        target: String,
        /// set send window size(num of packets)
        #[arg(long, default_value_t = 1024)]
        sndwnd: i64,
        /// set receive window size(num of packets)
        #[arg(long, default_value_t = 1024)]
        rcvwnd: i64,
        /// start profiling server on :6060 (Go only: accepted and ignored)
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
              default_value_t = false, action = ArgAction::Set)]
        pprof: bool,
        /// serve the KCP counters (the SNMP set) in Prometheus text format on http://ADDR/metrics, e.g.
        /// 127.0.0.1:9100 (not a kcptun flag)
        #[arg(long, default_value = "")]
        metrics: String,
    }
}

/// Go's flag syntax allows long names with one dash (`-key x`, `-nocomp`); clap wants two. Rewrites `-name`
/// and `-name=value` to `--name…` for every long name the command knows (single letters stay short flags).
fn go_style_args(cmd: &clap::Command, args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut longs: Vec<String> = Vec::new();
    for a in cmd.get_arguments() {
        if let Some(l) = a.get_long() {
            longs.push(l.to_string());
        }
        if let Some(al) = a.get_all_aliases() {
            longs.extend(al.into_iter().map(str::to_string));
        }
    }
    longs.extend(["help".to_string(), "version".to_string()]);
    let mut out = Vec::new();
    let mut rest = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || rest {
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            rest = true;
            out.push(arg);
            continue;
        }
        if let Some(body) = s.strip_prefix('-')
            && !body.starts_with('-')
        {
            let name = body.split_once('=').map_or(body, |(n, _)| n);
            if name.len() > 1 && longs.iter().any(|l| l == name) {
                out.push(OsString::from(format!("-{s}")));
                continue;
            }
        }
        out.push(arg);
    }
    out
}

/// Parses a command line the way kcptun does (Go flag syntax accepted), then applies `-c file.json` on top.
///
/// # Errors
/// clap's usage errors (which print help or version when asked, see [`clap::Error::exit`]) as the `Err` of the
/// outer result; a JSON file that cannot be read or parsed as the inner error.
pub fn parse_args<T>(
    args: impl IntoIterator<Item = OsString>,
) -> Result<anyhow::Result<T>, clap::Error>
where
    T: Parser + Serialize + for<'de> Deserialize<'de> + HasConfigFile,
{
    let cmd = T::command();
    let args = go_style_args(&cmd, args);
    let parsed = T::try_parse_from(args)?;
    Ok(apply_json(parsed))
}

/// Access to the `-c` field of both configs.
pub trait HasConfigFile {
    /// The `-c` path ("" for none).
    fn config_file(&self) -> &str;
    /// Sets the `-c` path (kept across the JSON merge, which does not carry it).
    fn set_config_file(&mut self, path: String);
    /// Records what the JSON merge found suspicious (unknown keys), for [`Params::warnings`].
    fn set_json_warnings(&mut self, warnings: Vec<String>);
}

impl HasConfigFile for ClientConfig {
    fn config_file(&self) -> &str {
        &self.c
    }
    fn set_config_file(&mut self, path: String) {
        self.c = path;
    }
    fn set_json_warnings(&mut self, warnings: Vec<String>) {
        self.json_warnings = warnings;
    }
}

impl HasConfigFile for ServerConfig {
    fn config_file(&self) -> &str {
        &self.c
    }
    fn set_config_file(&mut self, path: String) {
        self.c = path;
    }
    fn set_json_warnings(&mut self, warnings: Vec<String>) {
        self.json_warnings = warnings;
    }
}

/// The JSON file overrides the command line key by key (kcptun decodes the file over the flag values). Keys
/// match case-insensitively, as with Go's `encoding/json`. Unknown keys are ignored as kcptun ignores them, but
/// each one becomes a warning naming the key (and the known key it probably meant): a misspelt `"kye"` would
/// otherwise leave the default key in use without a word.
fn apply_json<T>(cfg: T) -> anyhow::Result<T>
where
    T: Serialize + for<'de> Deserialize<'de> + HasConfigFile,
{
    let path = cfg.config_file().to_string();
    if path.is_empty() {
        return Ok(cfg);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading config file {path}"))?;
    merge_json(cfg, &text).with_context(|| format!("parsing config file {path}"))
}

/// Merges the JSON object `text` over `cfg` (see `apply_json`).
///
/// # Errors
/// Not a JSON object, or a value of the wrong type for its key.
pub fn merge_json<T>(cfg: T, text: &str) -> anyhow::Result<T>
where
    T: Serialize + for<'de> Deserialize<'de> + HasConfigFile,
{
    let path = cfg.config_file().to_string();
    let file: serde_json::Value = serde_json::from_str(text)?;
    let serde_json::Value::Object(file) = file else {
        bail!("the configuration must be a JSON object");
    };
    let serde_json::Value::Object(mut base) = serde_json::to_value(&cfg)? else {
        bail!("internal: configuration did not serialize to an object");
    };
    let mut warnings = Vec::new();
    for (k, v) in file {
        let lower = k.to_ascii_lowercase();
        if base.contains_key(&lower) {
            base.insert(lower, v);
        } else {
            let hint = closest(&lower, base.keys().map(String::as_str))
                .map_or_else(String::new, |known| format!(" (did you mean {known:?}?)"));
            warnings.push(format!(
                "config file{}: unknown key {k:?} ignored{hint}",
                if path.is_empty() {
                    String::new()
                } else {
                    format!(" {path}")
                }
            ));
        }
    }
    let mut out: T = serde_json::from_value(serde_json::Value::Object(base))?;
    out.set_config_file(path);
    out.set_json_warnings(warnings);
    Ok(out)
}

/// The known name within edit distance 2 of `name` (a typo), if there is one.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| (edit_distance(name, k), k))
        .filter(|&(d, _)| d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance with adjacent transpositions counted as one edit ("kye" → "key").
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// kcptun's default `--key`: printed in its source and every guide, so it protects nothing.
pub const DEFAULT_KEY: &str = "it's a secrect";

/// The KCP and smux knobs both sides turn the same way (`docs/wire-format.md#kcptun-session`).
#[derive(Debug, Clone)]
pub struct Params {
    /// The per-session KCP configuration (mode preset, windows, MTU, cipher, FEC, DSCP, socket buffers).
    pub kcp: KcpConfig,
    /// The smux configuration (version, buffers, keepalive).
    pub smux: rkcp_smux::Config,
    /// Snappy compression on (no `--nocomp`).
    pub comp: bool,
    /// The cipher's kcptun name after the `aes` fallback (or the `--aead` name).
    pub crypt_name: &'static str,
    /// Every silent kcptun fallback this configuration hit (unknown cipher or mode, unknown JSON keys, the
    /// default key), worded for the log. The programs log each at `warn` level when they start.
    pub warnings: Vec<String>,
}

/// The common fields as the builder sees them.
#[derive(Debug, Clone)]
pub(crate) struct Common<'a> {
    pub(crate) key: &'a str,
    pub(crate) crypt: &'a str,
    pub(crate) aead: &'a str,
    pub(crate) json_warnings: &'a [String],
    pub(crate) mode: &'a str,
    pub(crate) mtu: i64,
    pub(crate) sndwnd: i64,
    pub(crate) rcvwnd: i64,
    pub(crate) datashard: i64,
    pub(crate) parityshard: i64,
    pub(crate) autofec: i64,
    pub(crate) dscp: i64,
    pub(crate) nocomp: bool,
    pub(crate) acknodelay: bool,
    pub(crate) cc: &'a str,
    pub(crate) nodelay: i64,
    pub(crate) interval: i64,
    pub(crate) resend: i64,
    pub(crate) nc: i64,
    pub(crate) sockbuf: i64,
    pub(crate) smuxver: i64,
    pub(crate) smuxbuf: i64,
    pub(crate) streambuf: i64,
    pub(crate) keepalive: i64,
    pub(crate) tcp: bool,
}

macro_rules! common_of {
    ($c:expr) => {
        Common {
            key: &$c.key,
            crypt: &$c.crypt,
            aead: &$c.aead,
            json_warnings: &$c.json_warnings,
            mode: &$c.mode,
            mtu: $c.mtu,
            sndwnd: $c.sndwnd,
            rcvwnd: $c.rcvwnd,
            datashard: $c.datashard,
            parityshard: $c.parityshard,
            autofec: $c.autofec,
            dscp: $c.dscp,
            nocomp: $c.nocomp,
            acknodelay: $c.acknodelay,
            cc: &$c.cc,
            nodelay: $c.nodelay,
            interval: $c.interval,
            resend: $c.resend,
            nc: $c.nc,
            sockbuf: $c.sockbuf,
            smuxver: $c.smuxver,
            smuxbuf: $c.smuxbuf,
            streambuf: $c.streambuf,
            keepalive: $c.keepalive,
            tcp: $c.tcp,
        }
    };
}

impl ClientConfig {
    /// The session parameters this configuration asks for.
    ///
    /// # Errors
    /// `--tcp`, an unsupported smux version, or values kcp-go / smux would refuse (see `build`).
    pub fn params(&self) -> anyhow::Result<Params> {
        build(&common_of!(self))
    }
}

impl ServerConfig {
    /// The session parameters this configuration asks for.
    ///
    /// # Errors
    /// As [`ClientConfig::params`].
    pub fn params(&self) -> anyhow::Result<Params> {
        build(&common_of!(self))
    }
}

/// kcptun's mode presets (`docs/wire-format.md#kcptun-modes`); `manual` and unknown names keep the hidden flags.
pub fn mode_tuple(mode: &str, manual: (i64, i64, i64, i64)) -> (i64, i64, i64, i64) {
    match mode {
        "normal" => (0, 40, 2, 1),
        "fast" => (0, 30, 2, 1),
        "fast2" => (1, 20, 2, 1),
        "fast3" => (1, 10, 2, 1),
        _ => manual,
    }
}

fn positive(v: i64, what: &str) -> anyhow::Result<usize> {
    if v <= 0 {
        bail!("--{what} must be positive, got {v}");
    }
    usize::try_from(v).with_context(|| format!("--{what} {v} is too large"))
}

/// kcptun's mode names; anything else falls back to the manual values (kcptun's `switch` has no default).
pub const MODES: [&str; 5] = ["normal", "fast", "fast2", "fast3", "manual"];

/// The cipher `--crypt`/`--aead` select, and the warnings for kcptun's silent fallbacks.
fn cipher(c: &Common<'_>, warnings: &mut Vec<String>) -> anyhow::Result<CipherKind> {
    if !c.aead.is_empty() {
        let kind = c
            .aead
            .parse::<CipherKind>()
            .ok()
            .filter(CipherKind::is_authenticated)
            .with_context(|| {
                format!(
                    "--aead {:?}: expected aes-256-gcm or chacha20-poly1305",
                    c.aead
                )
            })?;
        warnings.push(format!(
            "--aead {}: authenticated packets only a Rust peer with the same --aead understands (a kcptun peer \
             drops every packet); --crypt {:?} is not used",
            kind.name(),
            c.crypt
        ));
        return Ok(kind);
    }
    if let Some(kind) = CipherKind::kcptun_lookup(c.crypt) {
        return Ok(kind);
    }
    if let Ok(kind) = c.crypt.parse::<CipherKind>() {
        // A Rust-only name: kcptun does not know it and would use aes (AES-256-CFB) instead, so the two ends
        // would disagree without a word. Refuse it here; `--aead` is the explicit spelling.
        bail!(
            "--crypt {}: not a kcptun cipher (a kcptun peer reads it as aes, AES-256-CFB); for the authenticated \
             Rust-only mode use --aead {} on both ends",
            kind.name(),
            kind.name()
        );
    }
    warnings.push(format!(
        "--crypt {:?} is not a kcptun cipher: using aes, as kcptun does (the peer must agree); known: {}",
        c.crypt,
        CipherKind::KCPTUN.map(|k| k.name()).join(", ")
    ));
    Ok(CipherKind::Aes)
}

/// Builds the per-session configuration of `docs/wire-format.md#kcptun-session` from the flags.
fn build(c: &Common<'_>) -> anyhow::Result<Params> {
    if c.tcp {
        bail!(
            "--tcp (raw fake-TCP via xtaci/tcpraw) is not supported by this implementation; use plain UDP \
             (drop --tcp on both ends)"
        );
    }
    if !(1..=2).contains(&c.smuxver) {
        bail!("unsupported smux version: {} (available: 1, 2)", c.smuxver);
    }
    let mut warnings: Vec<String> = c.json_warnings.to_vec();
    let kind = cipher(c, &mut warnings)?;
    if c.key == DEFAULT_KEY && kind != CipherKind::None && kind != CipherKind::Xor {
        warnings.push(format!(
            "--key is kcptun's published default {DEFAULT_KEY:?}: anyone can decrypt this traffic; set --key \
             (or KCPTUN_KEY) on both ends"
        ));
    }
    if !MODES.contains(&c.mode) {
        warnings.push(format!(
            "--mode {:?} is not one of {}: using the manual values (nodelay {}, interval {}, resend {}, nc {}), \
             as kcptun does",
            c.mode,
            MODES.join(", "),
            c.nodelay,
            c.interval,
            c.resend,
            c.nc
        ));
    }
    let key = rkcp_crypt::derive_key(c.key.as_bytes());
    let (nodelay, interval, resend, nc) =
        mode_tuple(c.mode, (c.nodelay, c.interval, c.resend, c.nc));
    // kcp-go SetNoDelay: negative means "unchanged" (the defaults), the interval is clamped to 10..=5000.
    let mut kcp = KcpConfig::default();
    if nodelay >= 0 {
        kcp.kcp.nodelay = nodelay != 0;
    }
    if interval >= 0 {
        kcp.kcp.interval = interval.clamp(10, 5000) as u32;
    }
    if resend >= 0 {
        kcp.kcp.resend = u32::try_from(resend).unwrap_or(u32::MAX);
    }
    if nc >= 0 {
        kcp.kcp.nc = nc != 0;
    }
    // SetWindowSize: only positive values apply; the receive window is capped at 65535.
    if c.sndwnd > 0 {
        kcp.kcp.snd_wnd = u32::try_from(c.sndwnd).unwrap_or(u32::MAX);
    }
    if c.rcvwnd > 0 {
        kcp.kcp.rcv_wnd = c.rcvwnd.min(65535) as u32;
    }
    if c.mtu <= 0 || c.mtu > rkcp_session::MAX_MTU as i64 {
        bail!(
            "--mtu {} is out of range (kcp-go accepts at most 1500)",
            c.mtu
        );
    }
    kcp.kcp.mtu = c.mtu as usize;
    kcp.kcp.stream = true;
    kcp.kcp.write_delay = false;
    kcp.kcp.ack_nodelay = c.acknodelay;
    kcp.kcp.congestion = match c.cc {
        "kcpgo" | "" => rkcp_session::Congestion::KcpGo,
        "rate" => rkcp_session::Congestion::DeliveryRate,
        "none" => rkcp_session::Congestion::None,
        "tolerant" => rkcp_session::Congestion::LossTolerant,
        other => bail!("--cc {other:?} is unknown (kcpgo, rate, tolerant, none)"),
    };
    if !(0..=63).contains(&c.dscp) {
        bail!("--dscp {} is out of range (6 bits: 0..=63)", c.dscp);
    }
    kcp.socket.dscp = (c.dscp != 0).then_some(c.dscp as u32);
    let sockbuf = positive(c.sockbuf, "sockbuf")?;
    kcp.socket.recv_buffer = Some(sockbuf);
    kcp.socket.send_buffer = Some(sockbuf);
    kcp.crypt = Some(PacketCrypt::new(kind, &key));
    if c.datashard > 0 && c.parityshard > 0 {
        if c.datashard + c.parityshard > 256 {
            bail!(
                "--datashard {} + --parityshard {} exceeds the 256 shards Reed-Solomon over GF(2^8) allows",
                c.datashard,
                c.parityshard
            );
        }
        kcp = kcp.with_fec(c.datashard as usize, c.parityshard as usize);
        if c.autofec != 0 {
            if c.datashard != 1 {
                bail!(
                    "--autofec needs --datashard 1 (not {}): a kcptun peer cannot follow parity changes of larger groups safely",
                    c.datashard
                );
            }
            if c.autofec < c.parityshard || c.autofec > 255 {
                bail!(
                    "--autofec {} must be at least --parityshard {} and at most 255",
                    c.autofec,
                    c.parityshard
                );
            }
            let policy = AdaptiveFec::new(1, c.autofec as usize);
            kcp = kcp.with_adaptive_fec(c.parityshard as usize, policy);
        }
    }
    kcp.validate().context("KCP configuration")?;

    let mut smux = rkcp_smux::Config::default();
    smux.version = if c.smuxver == 1 {
        rkcp_smux::Version::V1
    } else {
        rkcp_smux::Version::V2
    };
    smux.max_receive_buffer = positive(c.smuxbuf, "smuxbuf")?;
    // Both ends of a kcptun tunnel take --smuxbuf: assume the peer's buffer is ours.
    smux.peer_receive_buffer = smux.max_receive_buffer;
    smux.max_stream_buffer = positive(c.streambuf, "streambuf")?;
    // kcptun always advertises --streambuf (Go smux has no window autotuning).
    smux.stream_window_autotune = false;
    if c.keepalive <= 0 {
        bail!("--keepalive must be positive, got {}", c.keepalive);
    }
    smux.keep_alive_interval = Duration::from_secs(c.keepalive as u64);
    smux.validate().context("smux configuration")?;
    Ok(Params {
        kcp,
        smux,
        comp: !c.nocomp,
        crypt_name: kind.name(),
        warnings,
    })
}

/// A server target: TCP `host:port`, or a unix socket path when it is not `host:port` (kcptun uses Go's
/// `net.SplitHostPort` to decide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `host:port`.
    Tcp(String),
    /// A unix domain socket path.
    Unix(PathBuf),
}

impl Target {
    /// Classifies `s` as Go's `net.SplitHostPort` would.
    pub fn parse(s: &str) -> Target {
        let host_port = if let Some(rest) = s.strip_prefix('[') {
            rest.split_once(']')
                .is_some_and(|(_, after)| after.starts_with(':') && !after[1..].contains(':'))
        } else {
            s.split_once(':')
                .is_some_and(|(host, port)| !port.contains(':') && !host.contains(['[', ']']))
        };
        if host_port {
            Target::Tcp(s.to_string())
        } else {
            Target::Unix(PathBuf::from(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(args: &[&str]) -> ClientConfig {
        let mut v = vec![OsString::from("tunnel-client")];
        v.extend(args.iter().map(OsString::from));
        parse_args::<ClientConfig>(v).unwrap().unwrap()
    }

    fn server(args: &[&str]) -> ServerConfig {
        let mut v = vec![OsString::from("tunnel-server")];
        v.extend(args.iter().map(OsString::from));
        parse_args::<ServerConfig>(v).unwrap().unwrap()
    }

    #[test]
    fn defaults_are_kcptun_defaults() {
        // SAFETY-free: KCPTUN_KEY is not set in the test environment unless the caller sets it.
        let c = client(&[]);
        assert_eq!(c.localaddr, ":12948");
        assert_eq!(c.remoteaddr, "vps:29900");
        assert_eq!((c.sndwnd, c.rcvwnd), (128, 512));
        assert_eq!((c.conn, c.autoexpire, c.scavengettl), (1, 0, 600));
        assert_eq!((c.datashard, c.parityshard, c.mtu), (10, 3, 1350));
        assert_eq!(
            (c.smuxver, c.smuxbuf, c.streambuf, c.keepalive),
            (1, 4194304, 2097152, 10)
        );
        assert_eq!((c.sockbuf, c.snmpperiod), (4194304, 60));
        assert_eq!((c.nodelay, c.interval, c.resend, c.nc), (0, 50, 0, 0));
        assert_eq!((c.crypt.as_str(), c.mode.as_str()), ("aes", "fast"));
        assert!(!c.nocomp && !c.acknodelay && !c.quiet && !c.tcp);
        let s = server(&[]);
        assert_eq!(
            (s.listen.as_str(), s.target.as_str()),
            (":29900", "127.0.0.1:12948")
        );
        assert_eq!((s.sndwnd, s.rcvwnd), (1024, 1024));
        let p = c.params().unwrap();
        assert_eq!(
            (
                p.kcp.kcp.nodelay,
                p.kcp.kcp.interval,
                p.kcp.kcp.resend,
                p.kcp.kcp.nc
            ),
            (false, 30, 2, true)
        );
        assert_eq!(
            (p.kcp.kcp.snd_wnd, p.kcp.kcp.rcv_wnd, p.kcp.kcp.mtu),
            (128, 512, 1350)
        );
        assert!(p.comp);
        assert_eq!(p.crypt_name, "aes");
        assert_eq!(p.kcp.mss(), 1350 - 24 - 28);
        assert_eq!(p.smux.version, rkcp_smux::Version::V1);
        assert_eq!(p.smux.max_stream_buffer, 2097152);
    }

    #[test]
    fn autofec_is_off_by_default_and_bounds_the_parity() {
        let p = client(&[]).params().unwrap();
        assert_eq!(p.kcp.fec.unwrap().adaptive, None, "kcptun's fixed 10/3");
        let p = client(&["--ds", "1", "--ps", "2", "--autofec", "3"])
            .params()
            .unwrap();
        let f = p.kcp.fec.unwrap();
        assert_eq!((f.data_shards, f.parity_shards), (1, 2));
        assert_eq!(f.adaptive, Some(AdaptiveFec::new(1, 3)));
        assert!(server(&["--autofec", "6"]).params().is_err(), "--ds 10");
        assert!(
            client(&["--ds", "1", "--autofec", "2"]).params().is_err(),
            "below --ps 3"
        );
        assert!(client(&["--ds", "1", "--autofec", "300"]).params().is_err());
        // No FEC, nothing to adapt.
        let p = client(&["--ds", "0", "--autofec", "5"]).params().unwrap();
        assert!(p.kcp.fec.is_none());
    }

    #[test]
    fn go_single_dash_flags_aliases_and_bools() {
        let c = client(&[
            "-l",
            "127.0.0.1:1",
            "-r",
            "h:2",
            "-key",
            "k",
            "-crypt=none",
            "-nocomp",
            "-ds",
            "0",
            "--ps",
            "0",
            "-mode",
            "manual",
            "-interval",
            "5",
            "-nodelay",
            "1",
            "-nc",
            "1",
            "--quiet=false",
            "-smuxver",
            "2",
        ]);
        assert_eq!(
            (c.localaddr.as_str(), c.remoteaddr.as_str()),
            ("127.0.0.1:1", "h:2")
        );
        assert_eq!((c.key.as_str(), c.crypt.as_str()), ("k", "none"));
        assert!(c.nocomp && !c.quiet);
        assert_eq!((c.datashard, c.parityshard), (0, 0));
        let p = c.params().unwrap();
        assert!(p.kcp.fec.is_none());
        assert_eq!(c.autofec, 0);
        assert_eq!(
            (
                p.kcp.kcp.nodelay,
                p.kcp.kcp.interval,
                p.kcp.kcp.resend,
                p.kcp.kcp.nc
            ),
            (true, 10, 0, true)
        );
        assert_eq!(p.smux.version, rkcp_smux::Version::V2);
        assert!(!p.comp);
        // fast3 overrides the manual flags.
        let p = client(&["--mode", "fast3", "--interval", "100"])
            .params()
            .unwrap();
        assert_eq!(p.kcp.kcp.interval, 10);
        // unknown cipher means aes.
        assert_eq!(
            client(&["--crypt", "rot13"]).params().unwrap().crypt_name,
            "aes"
        );
    }

    #[test]
    fn congestion_flag_is_off_by_default() {
        use rkcp_session::Congestion;
        assert_eq!(
            client(&[]).params().unwrap().kcp.kcp.congestion,
            Congestion::KcpGo
        );
        let p = client(&["--cc", "rate", "--sndwnd", "4096"])
            .params()
            .unwrap();
        assert_eq!(p.kcp.kcp.congestion, Congestion::DeliveryRate);
        let p = client(&["--cc", "tolerant", "--nc", "0"]).params().unwrap();
        assert_eq!(p.kcp.kcp.congestion, Congestion::LossTolerant);
        let e = client(&["--cc", "bbr"]).params().unwrap_err().to_string();
        assert!(e.contains("--cc"), "{e}");
    }

    #[test]
    fn clear_errors() {
        let e = client(&["--tcp"]).params().unwrap_err().to_string();
        assert!(e.contains("not supported"), "{e}");
        let e = client(&["--smuxver", "3"])
            .params()
            .unwrap_err()
            .to_string();
        assert!(e.contains("smux version"), "{e}");
        assert!(client(&["--keepalive", "31"]).params().is_err());
        assert!(client(&["--mtu", "1501"]).params().is_err());
        assert!(client(&["--dscp", "64"]).params().is_err());
        let v = ["tunnel-client", "--nosuchflag"].map(OsString::from);
        assert!(parse_args::<ClientConfig>(v).is_err());
    }

    #[test]
    fn json_overrides_flags_case_insensitively() {
        let c = client(&["--key", "flag", "--mtu", "1200", "--conn", "2"]);
        let c = merge_json(c, r#"{"key":"file","MTU":1000,"nocomp":true,"unknown":1}"#).unwrap();
        assert_eq!(c.json_warnings.len(), 1);
        assert_eq!(
            (c.key.as_str(), c.mtu, c.conn, c.nocomp),
            ("file", 1000, 2, true)
        );
        assert!(merge_json(c.clone(), r#"{"mtu":"big"}"#).is_err());
        assert!(merge_json(c, "[1]").is_err());
        let s = merge_json(server(&[]), r#"{"target":"/tmp/x.sock","listen":":1"}"#).unwrap();
        assert_eq!(Target::parse(&s.target), Target::Unix("/tmp/x.sock".into()));
    }

    #[test]
    fn target_classification_follows_split_host_port() {
        assert_eq!(
            Target::parse("127.0.0.1:80"),
            Target::Tcp("127.0.0.1:80".into())
        );
        assert_eq!(Target::parse("[::1]:80"), Target::Tcp("[::1]:80".into()));
        assert_eq!(Target::parse(":80"), Target::Tcp(":80".into()));
        assert_eq!(
            Target::parse("/run/a.sock"),
            Target::Unix("/run/a.sock".into())
        );
        assert_eq!(Target::parse("a:b:c"), Target::Unix("a:b:c".into()));
    }

    fn warnings(c: &ClientConfig) -> Vec<String> {
        c.params().unwrap().warnings
    }

    #[test]
    fn silent_kcptun_fallbacks_become_warnings() {
        // A chosen key, a known cipher and mode: nothing to say.
        assert!(warnings(&client(&["--key", "k"])).is_empty());
        // kcptun's published default key.
        let w = warnings(&client(&[]));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("published default"), "{w:?}");
        // Unknown cipher: still aes (kcptun compatibility), but said.
        let c = client(&["--key", "k", "--crypt", "rot13"]);
        assert_eq!(c.params().unwrap().crypt_name, "aes");
        let w = warnings(&c);
        assert!(
            w.len() == 1 && w[0].contains("\"rot13\" is not a kcptun cipher: using aes"),
            "{w:?}"
        );
        // Unknown mode: the manual values, said.
        let c = client(&["--key", "k", "--mode", "fast4"]);
        let p = c.params().unwrap();
        assert_eq!((p.kcp.kcp.nodelay, p.kcp.kcp.interval), (false, 50));
        assert!(
            p.warnings.len() == 1 && p.warnings[0].contains("--mode \"fast4\" is not one of"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn rust_only_cipher_names_are_refused_in_crypt_and_accepted_in_aead() {
        for name in ["aes-256-gcm", "chacha20-poly1305"] {
            let e = client(&["--key", "k", "--crypt", name])
                .params()
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("a kcptun peer reads it as aes") && e.contains("--aead"),
                "{e}"
            );
            let p = client(&["--key", "k", "--aead", name]).params().unwrap();
            assert_eq!(p.crypt_name, name);
            assert!(
                p.warnings[0].contains("only a Rust peer"),
                "{:?}",
                p.warnings
            );
        }
        let e = client(&["--aead", "aes"]).params().unwrap_err().to_string();
        assert!(
            e.contains("expected aes-256-gcm or chacha20-poly1305"),
            "{e}"
        );
    }

    #[test]
    fn unknown_json_keys_are_named_with_a_suggestion() {
        let c = merge_json(
            server(&["--key", "k"]),
            r#"{"targt":"127.0.0.1:1","kye":"secret","MTU":1200,"zzzzzzzz":1}"#,
        )
        .unwrap();
        // kcptun ignores them: the flag values stay.
        assert_eq!(
            (c.target.as_str(), c.key.as_str(), c.mtu),
            ("127.0.0.1:12948", "k", 1200)
        );
        let mut w = c.params().unwrap().warnings;
        w.sort();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].contains("unknown key \"kye\" ignored (did you mean \"key\"?)"),
            "{w:?}"
        );
        assert!(
            w[1].contains("unknown key \"targt\" ignored (did you mean \"target\"?)"),
            "{w:?}"
        );
        assert!(w[2].ends_with("unknown key \"zzzzzzzz\" ignored"), "{w:?}");
        // Known keys produce no warning.
        let c = merge_json(server(&["--key", "k"]), r#"{"Key":"x","listen":":1"}"#).unwrap();
        assert!(c.params().unwrap().warnings.is_empty());
    }

    #[test]
    fn version_flag_is_capital_v_and_kcptuns_lower_v() {
        for flag in ["-V", "--version", "-v", "-version"] {
            let v = ["tunnel-client", flag].map(OsString::from);
            let e = parse_args::<ClientConfig>(v).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion, "{flag}");
        }
    }
}
