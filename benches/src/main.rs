//! `kcpbench`: end-to-end benchmarks of the rkcp stack against kernel TCP and kcp-go. See `kcpbench --help`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use kcpbench::client::{
    self, ClientOpts, GoColumn, ServerProc, latency, latency::LatencyPlan, sessions,
    sessions::SessionsPlan, throughput, throughput::ThroughputPlan,
};
use kcpbench::config::{BenchConfig, FecSpec, Mode, Transport};
use kcpbench::gopeer::{GoPeer, GoServer};
use kcpbench::proto::Op;
use kcpbench::results::Report;
use kcpbench::{plot, procstat, report, serve};

const LONG_ABOUT: &str = "\
End-to-end benchmarks of the rkcp stack (KCP, smux over KCP) against kernel TCP (plain and with smux) and, \
when Go is installed, against kcp-go/smux (the kcp-go column).

Without --connect, kcpbench starts its own server on 127.0.0.1 (`kcpbench serve` as a child process, and the \
Go peer for the kcp-go column) and stops it at the end. With --connect it talks to a server you started, \
possibly in another network namespace, so the same tool measures across an emulated link.

List flags (--transport, --mode, --crypt, --fec, --tcp-cc, --streams, --op) take comma-separated values; \
every combination is measured in the same run, so the ratios hold on a noisy machine. --tcp-cc bbr,cubic gives \
one TCP row per congestion control, set per socket (no sysctl needed, so it works inside a namespace).

RECIPES

  Loopback, everything at once (release build!):
    cargo run --release -p kcpbench -- throughput --transport kcp,smux-kcp,tcp,smux-tcp --crypt none,aes --fec 0/0,10/3
    cargo run --release -p kcpbench -- latency --count 500
    cargo run --release -p kcpbench -- sessions --sessions 10000 --secs 30

  Across an emulated lossy link (root; Linux with the sch_netem qdisc): two network namespaces joined by a
  veth pair, 30 ms and 10 % loss each way:
    ip netns add kba; ip netns add kbb
    ip link add kbva netns kba type veth peer name kbvb netns kbb
    ip -n kba addr add 10.77.0.1/24 dev kbva; ip -n kba link set kbva up; ip -n kba link set lo up
    ip -n kbb addr add 10.77.0.2/24 dev kbvb; ip -n kbb link set kbvb up; ip -n kbb link set lo up
    ip netns exec kba tc qdisc add dev kbva root netem delay 30ms loss 10%
    ip netns exec kbb tc qdisc add dev kbvb root netem delay 30ms loss 10%
    ip netns exec kbb kcpbench serve --listen 10.77.0.2:7000 &
    ip netns exec kbb kcpbench-go serve --listen 10.77.0.2:7001 &   # optional, the kcp-go column
    ip netns exec kba kcpbench latency --connect 10.77.0.2:7000 --go 10.77.0.2:7001 --size 64 --period 20ms --count 500
    ip netns del kba; ip netns del kbb                      # removes the link

  The bulk link (100 Mbit/s, 20 ms each way, 1 % loss, about 1 MB of queue), same namespaces:
    ip netns exec kba tc qdisc replace dev kbva root netem delay 20ms loss 1% rate 100mbit limit 800
    ip netns exec kbb tc qdisc replace dev kbvb root netem delay 20ms loss 1% rate 100mbit limit 800
    ip netns exec kba kcpbench throughput --connect 10.77.0.2:7000 --transport smux-kcp,tcp --bytes 64MiB
  Throughput rows show the sender's queue delay: its mean smoothed RTT during the transfer above the smallest
  it saw (KCP srtt, TCP_INFO), i.e. what the transfer added to the bottleneck queue.

  Without netem (`tc` answers 'Specified qdisc kind is unknown'), any user-space link emulator that joins two
  such namespaces works the same way; benches/results.sh takes one through LINK_EMULATOR (see that script).

READING THE TABLES

  Loopback has no bandwidth limit and no loss of its own, so a loopback row measures CPU cost and scheduling,
  and two rows regularly surprise:
  - `kcp` slower than `smux-kcp`: in the `kcp` rows the benchmark task itself reads and writes the KcpStream;
    with smux, the smux session task drains KCP into its buffer while the benchmark task consumes, a two-task
    pipeline that can use both cores. The extra layer costs CPU but buys parallelism; on one core, or across a
    real link, expect the opposite order.
  - `aes` as fast as or faster than `none`: `none` still sends the 20-byte nonce + CRC32 header (kcptun's
    format) and AES-NI costs little per datagram, while a sender with less work per datagram can outrun the
    receiver on loopback, overflow its UDP socket buffer and pay in retransmissions (kcpbench does not record
    the retransmission counters yet: these are the likely causes, not measured ones). Compare ciphers across a
    link with a bandwidth limit (the recipes above), where that effect disappears.
  Numbers from one run are comparable with each other (same machine, same minute), not with another run's.

Results: a table at the end; --json FILE keeps the whole report (every RTT) to render again later.";

#[derive(Parser, Debug)]
#[command(name = "kcpbench", version, about = "End-to-end benchmarks: rkcp vs kernel TCP vs kcp-go", long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the control server (and its data listeners) until killed.
    Serve {
        /// Control address to listen on (TCP); data listeners use the same IP.
        #[arg(long, default_value = "127.0.0.1:7000")]
        listen: String,
        /// Exit when stdin closes (used when kcpbench starts its own server).
        #[arg(long)]
        stdin_lifetime: bool,
        /// Shard each KCP data listener over N SO_REUSEPORT sockets, one read loop and endpoint each
        /// (`KcpListener::bind_sharded`; 1 = one socket).
        #[arg(long, default_value_t = 1)]
        shards: usize,
        /// tokio worker threads: 0 = tokio's default multi-thread runtime (one worker per core), 1 = a
        /// current-thread runtime (everything on one thread: no wake-ups between workers), N = N workers.
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Bulk transfer, one-way and echo, over N streams.
    Throughput {
        #[command(flatten)]
        common: Common,
        /// Payload bytes per row, split over the streams (e.g. 256MiB, 1GB, 100KiB).
        #[arg(long, default_value = "256MiB", value_parser = parse_bytes)]
        bytes: u64,
        /// Concurrent streams (list).
        #[arg(long, default_value = "1", value_delimiter = ',')]
        streams: Vec<u32>,
        /// oneway (op S, sink) and/or echo (op E) (list).
        #[arg(long, default_value = "oneway", value_delimiter = ',')]
        op: Vec<String>,
    },
    /// Paced messages echoed on one stream: RTT avg / p50 / p99 / max.
    Latency {
        #[command(flatten)]
        common: Common,
        /// Message size in bytes (at least 8).
        #[arg(long, default_value_t = 64)]
        size: u32,
        /// Time between two messages (e.g. 20ms).
        #[arg(long, default_value = "20ms", value_parser = parse_duration)]
        period: Duration,
        /// Messages per row.
        #[arg(long, default_value_t = 500)]
        count: u32,
    },
    /// Render saved JSON reports again: the table, and optionally the markdown page and the plots.
    Render {
        /// Reports written with --json (merged in the order given).
        #[arg(required = true)]
        json: Vec<PathBuf>,
        /// Write the markdown page here (e.g. benches/RESULTS.md).
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write PNG plots into this directory.
        #[arg(long)]
        plots: Option<PathBuf>,
    },
    /// Many sessions each sending a small message per second: server CPU and memory per session.
    Sessions {
        #[command(flatten)]
        common: Common,
        /// Sessions to open (each its own connection; the client needs that many file descriptors).
        #[arg(long, default_value_t = 10_000)]
        sessions: u32,
        /// Sessions for the kcp-go rows (default: the same as --sessions).
        #[arg(long)]
        go_sessions: Option<u32>,
        /// Length of the measurement window, seconds.
        #[arg(long, default_value_t = 30.0)]
        secs: f64,
        /// Message size in bytes.
        #[arg(long, default_value_t = 16)]
        size: u32,
        /// Messages per second per session (spread evenly over the sessions).
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
    },
    /// Hostile traffic: N datagrams at a target rate from M source ports (garbage, session starts, replays).
    #[command(long_about = FLOOD_ABOUT)]
    Flood(FloodArgs),
    /// UDP relay that records the client's datagrams (input of `flood --kind replay`).
    #[command(long_about = RELAY_ABOUT)]
    Relay {
        /// Address to listen on (UDP); point the client here.
        #[arg(long)]
        listen: String,
        /// The server's address.
        #[arg(long)]
        to: String,
        /// Append every client-to-server datagram to this file (u32 little-endian length, then the bytes).
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// A bare KcpListener that prints its ListenerStats and RSS every second (the target of a flood).
    #[command(long_about = LISTEN_ABOUT)]
    Listen {
        /// Address to listen on (UDP).
        #[arg(long, default_value = "127.0.0.1:7900")]
        listen: String,
        /// kcp-go cipher (none keeps kcp-go's nonce + CRC header; plain: no packet layer).
        #[arg(long, default_value = "none")]
        crypt: String,
        /// kcptun --key.
        #[arg(long, default_value = "it's a secrect")]
        key: String,
        /// Stop after this many seconds (default: run until killed).
        #[arg(long)]
        secs: Option<f64>,
    },
}

const FLOOD_ABOUT: &str = "\
Sends --count datagrams at --rate per second from --ports UDP sockets (source ports) to --target, and prints \
what was sent and the rate achieved (the machine may not reach the rate asked: read the last line).

KINDS
  garbage  random bytes, random lengths 24..=1400 (fails the cipher check, or is not KCP)
  starts   plausible KCP session starts: random conv, PUSH, sn 0, una 0, --payload random bytes, in an FEC
           data header unless --no-fec (kcptun's default is --datashard 10), sealed with --crypt/--key
           (kcp-go ciphers: 20-byte nonce + CRC header; `none` has the header without encryption, `plain` sends
           bare KCP) so that they pass the cipher check as a real client's would
  replay   the datagrams of --file (written by `kcpbench relay --record`), in order, cycling until --count;
           each pass over the file comes from the next socket, i.e. from a new source port

SOURCES
  The sockets are bound on 127.0.0.1 (a listener caps unverified sessions per source IP: --src-ips N spreads them
  over 127.0.0.1..=127.0.0.N, Linux routes all of 127/8 to lo). Raise `ulimit -n` above --ports.

EXAMPLES
  kcpbench flood --target 127.0.0.1:29900 --kind starts --crypt aes --key secret --count 1000000 --rate 100000 --ports 1000
  kcpbench flood --target 127.0.0.1:29900 --kind garbage --count 1000000 --rate 100000 --ports 1000
  kcpbench relay --listen 127.0.0.1:29901 --to 127.0.0.1:29900 --record session.rec   # client -> :29901
  kcpbench flood --target 127.0.0.1:29900 --kind replay --file session.rec --count 1000 --ports 100";

const RELAY_ABOUT: &str = "\
A UDP relay: datagrams from any client to --listen are forwarded to --to from a socket of their own (one per \
client address) and the answers go back. With --record FILE every client-to-server datagram is appended to FILE \
as a u32 little-endian length followed by the bytes: the input of `kcpbench flood --kind replay --file FILE`. \
Runs until killed; prints `READY <addr>` once bound.";

const LISTEN_ABOUT: &str = "\
A bare KcpListener (fast3, --crypt/--key) that accepts and drains every session and prints, every second, its \
ListenerStats (created, verified, unverified gauge, expired, address checks, drops by reason), the process' \
resident memory and its growth since start, and growth / unverified (bytes per unverified session). The \
target of `kcpbench flood` when the figures are about the listener itself rather than a tunnel.";

/// `kcpbench flood` flags.
#[derive(Args, Debug)]
struct FloodArgs {
    /// Address to flood (UDP).
    #[arg(long)]
    target: String,
    /// garbage, starts or replay.
    #[arg(long, default_value = "starts")]
    kind: kcpbench::flood::FloodKind,
    /// Datagrams in all.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Datagrams per second (0: as fast as possible).
    #[arg(long, default_value_t = 100_000.0)]
    rate: f64,
    /// Source sockets (ports).
    #[arg(long, default_value_t = 1000)]
    ports: usize,
    /// Spread the sockets over 127.0.0.1 ..= 127.0.0.N (loopback targets).
    #[arg(long, default_value_t = 1)]
    src_ips: u32,
    /// starts: kcp-go cipher (none = header without encryption, plain = bare KCP).
    #[arg(long, default_value = "none")]
    crypt: String,
    /// starts: kcptun --key.
    #[arg(long, default_value = "it's a secrect")]
    key: String,
    /// starts: no FEC data header (for a server with --datashard 0).
    #[arg(long)]
    no_fec: bool,
    /// starts: payload bytes per session start.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// replay: the recording (`kcpbench relay --record`).
    #[arg(long)]
    file: Option<PathBuf>,
    /// PRNG seed (0: from the clock).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

/// Flags every client subcommand takes (names follow kcptun's).
#[derive(Args, Debug)]
struct Common {
    /// Control address of a running `kcpbench serve` (default: start one on 127.0.0.1).
    #[arg(long)]
    connect: Option<String>,
    /// kcp-go column: auto (build and start the Go peer locally if Go is installed), off, or the control
    /// address of a running `kcpbench-go serve`.
    #[arg(long, default_value = "auto")]
    go: String,
    /// Runtime of the server kcpbench starts itself (`kcpbench serve --threads`; not with --connect):
    /// 0 = tokio's default multi-thread runtime, 1 = a current-thread runtime, N = N worker threads.
    #[arg(long, default_value_t = 0)]
    server_threads: usize,
    /// Transports (list): kcp, smux-kcp, tcp, smux-tcp [throughput: all four; latency: kcp,tcp; sessions: kcp].
    #[arg(long, value_delimiter = ',')]
    transport: Option<Vec<Transport>>,
    /// kcptun modes (list): normal, fast, fast2, fast3, manual.
    #[arg(long, default_value = "fast3", value_delimiter = ',')]
    mode: Vec<Mode>,
    /// kcptun ciphers (list): none, aes, aes-128, salsa20, ... (none still sends kcp-go's nonce+CRC header; plain = no packet layer at all).
    #[arg(long, default_value = "none", value_delimiter = ',')]
    crypt: Vec<String>,
    /// kcptun --key (PBKDF2-derived as kcptun does).
    #[arg(long, default_value = "it's a secrect")]
    key: String,
    /// FEC data/parity shards (list), e.g. 0/0,10/3. `1/P:auto`: the session chooses the parity from the
    /// losses it sees (rkcp only, off unless asked; one data shard), starting at P, between 1 and 2P;
    /// `auto` = `1/2:auto`.
    #[arg(long, default_value = "0/0", value_delimiter = ',', value_parser = parse_fec)]
    fec: Vec<FecSpec>,
    /// Manual mode: nodelay.
    #[arg(long, default_value_t = 1)]
    nodelay: i32,
    /// Manual mode: interval, ms.
    #[arg(long, default_value_t = 10)]
    interval: i32,
    /// Manual mode: resend.
    #[arg(long, default_value_t = 2)]
    resend: i32,
    /// Manual mode: nc.
    #[arg(long, default_value_t = 1)]
    nc: i32,
    /// Send window, segments.
    #[arg(long, default_value_t = 1024)]
    sndwnd: u32,
    /// Receive window, segments.
    #[arg(long, default_value_t = 1024)]
    rcvwnd: u32,
    /// MTU, bytes.
    #[arg(long, default_value_t = 1350)]
    mtu: usize,
    /// ACK at once.
    #[arg(long)]
    acknodelay: bool,
    /// Cap on KCP segments in flight (rkcp only; 0 = none, as kcp-go): with windows well above the path's
    /// capacity, holes no longer stall the sender. Rows with a cap have no kcp-go row.
    #[arg(long, default_value_t = 0)]
    inflight: u32,
    /// Congestion controller (rkcp rows only; rows with another than kcpgo have no kcp-go row): kcpgo
    /// (kcp-go's window, the default), none, rate (delivery-rate model with pacing), or tolerant
    /// (kcp-go's window repaired for random loss, with RACK loss detection and tail loss probes).
    #[arg(long, default_value = "kcpgo")]
    cc: String,
    /// RACK time-based loss detection (rkcp rows only).
    #[arg(long)]
    rack: bool,
    /// Tail loss probe (rkcp rows only).
    #[arg(long)]
    tlp: bool,
    /// Repeat the ACKs of out-of-order segments in this many later ACK flushes (rkcp rows only;
    /// -1 = the controller's default: 2 with rate and tolerant, 0 otherwise).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    ack_repeat: i32,
    /// Redundant bundling for thin streams: copies of unacknowledged segments fill the room of
    /// later datagrams (rkcp rows only).
    #[arg(long)]
    bundle: bool,
    /// smux version (1 or 2).
    #[arg(long, default_value_t = 2)]
    smuxver: u8,
    /// smux session receive buffer, bytes.
    #[arg(long, default_value_t = 4_194_304)]
    smuxbuf: usize,
    /// smux v2 per-stream window, bytes.
    #[arg(long, default_value_t = 2_097_152)]
    streambuf: usize,
    /// smux v2 window autotuning (rkcp rows; kcp-go rows advertise --streambuf as is): the window
    /// starts at min(64 KiB, --streambuf) and grows with the path, as rkcp_smux::Config's default.
    #[arg(long)]
    autotune: bool,
    /// smux max frame payload, bytes.
    #[arg(long, default_value_t = 32768)]
    framesize: usize,
    /// smux keepalive, seconds.
    #[arg(long, default_value_t = 10)]
    keepalive: u64,
    /// UDP socket buffers, bytes.
    #[arg(long, default_value_t = 4_194_304)]
    sockbuf: usize,
    /// Kernel TCP congestion control of the TCP rows (list), e.g. bbr,cubic: one row per algorithm,
    /// labelled `tcp bbr`, `tcp cubic`, set with TCP_CONGESTION on the client's socket and the server's
    /// accepted one (see /proc/sys/net/ipv4/tcp_available_congestion_control). Default: the kernel's.
    #[arg(long = "tcp-cc", value_delimiter = ',')]
    tcp_cc: Vec<String>,
    /// Prefix every scenario (group) name of this run with TEXT, e.g. "5 % loss": runs over different
    /// links then get tables of their own when their JSON reports are rendered together.
    #[arg(long)]
    scenario: Option<String>,
    /// Longest one row may take (e.g. 120s); a row over it is recorded as failed.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,
    /// Write the report (every figure) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write PNG plots into this directory.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

impl Common {
    fn base(&self) -> BenchConfig {
        BenchConfig {
            nodelay: self.nodelay,
            interval: self.interval,
            resend: self.resend,
            nc: self.nc,
            sndwnd: self.sndwnd,
            rcvwnd: self.rcvwnd,
            mtu: self.mtu,
            acknodelay: self.acknodelay,
            inflight: self.inflight,
            cc: self.cc.clone(),
            rack: self.rack,
            tlp: self.tlp,
            ackrepeat: self.ack_repeat,
            bundle: self.bundle,
            key: self.key.clone(),
            smuxver: self.smuxver,
            smuxbuf: self.smuxbuf,
            streambuf: self.streambuf,
            autotune: self.autotune,
            framesize: self.framesize,
            keepalive: self.keepalive,
            sockbuf: self.sockbuf,
            ..BenchConfig::default()
        }
    }

    fn configs(&self, default_transports: &[Transport]) -> anyhow::Result<Vec<BenchConfig>> {
        let transports = self.transport.as_deref().unwrap_or(default_transports);
        let configs =
            client::expand_configs(&self.base(), transports, &self.mode, &self.crypt, &self.fec);
        let tcp_cc: Vec<String> = self
            .tcp_cc
            .iter()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        if configs.iter().any(|c| !c.transport.is_kcp()) {
            for cc in &tcp_cc {
                kcpbench::tcpopt::check(cc).context("--tcp-cc")?;
            }
        }
        let configs = client::expand_tcp_cc(configs, &tcp_cc);
        for c in &configs {
            c.validate()
                .with_context(|| format!("configuration {}", c.label()))?;
        }
        Ok(configs)
    }
}

/// `256MiB`, `1GB`, `64KiB`, `1500`.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1_048_576.0,
        "g" | "gb" => 1e9,
        "gib" => 1_073_741_824.0,
        u => {
            return Err(format!(
                "unknown size unit {u:?} (B, KB, KiB, MB, MiB, GB, GiB)"
            ));
        }
    };
    Ok((num * mult).round() as u64)
}

/// `20ms`, `2s`, `1.5s`, `500us`, `2m`; a bare number is seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => num,
        "ms" => num / 1e3,
        "us" | "µs" => num / 1e6,
        "m" | "min" => num * 60.0,
        u => return Err(format!("unknown duration unit {u:?} (us, ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("bad duration {s:?}: {e}"))
}

/// `10/3`, `1/2:auto`, `auto` (see [`FecSpec`]).
fn parse_fec(s: &str) -> Result<FecSpec, String> {
    s.parse()
}

/// What `--go` means for this run; the Go server started for it, if any (stopped when dropped).
fn resolve_go(flag: &str, remote: bool) -> (GoColumn, Option<GoServer>) {
    if flag == "off" {
        return (GoColumn::Off, None);
    }
    if flag == "auto" && remote {
        return (
            GoColumn::Unavailable(
                "--connect without --go ADDR: start `kcpbench-go serve` next to the server and pass its \
                 control address with --go"
                    .into(),
            ),
            None,
        );
    }
    let peer = match GoPeer::locate_or_build() {
        Ok(p) => p,
        Err(why) => return (GoColumn::Unavailable(why), None),
    };
    if flag != "auto" {
        let control = flag.to_string();
        return (GoColumn::Peer { peer, control }, None);
    }
    match peer.spawn_server("127.0.0.1:0") {
        Ok(srv) => {
            let control = srv.control_addr().to_string();
            (GoColumn::Peer { peer, control }, Some(srv))
        }
        Err(e) => (
            GoColumn::Unavailable(format!("kcpbench-go serve did not start: {e:#}")),
            None,
        ),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kcpbench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with(0)
}

/// A tokio runtime with `threads` workers (0: tokio's default multi-thread runtime; 1: current-thread).
fn runtime_with(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    b.enable_all().build().context("starting the tokio runtime")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Flood(a) => run_flood(a),
        Cmd::Relay { listen, to, record } => {
            let to = resolve(&to)?;
            kcpbench::flood::relay(&listen, to, record.as_deref(), |a| {
                println!("READY {a}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
            })
        }
        Cmd::Listen {
            listen,
            crypt,
            key,
            secs,
        } => runtime()?.block_on(kcpbench::flood::listen(&kcpbench::flood::ListenPlan {
            listen,
            crypt,
            key,
            secs,
        })),
        Cmd::Serve {
            listen,
            stdin_lifetime,
            shards,
            threads,
        } => run_serve(&listen, stdin_lifetime, shards, threads),
        Cmd::Render {
            json,
            markdown,
            plots,
        } => {
            if let Some(dir) = &plots {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            println!(
                "{}",
                report::render(&json, markdown.as_deref(), plots.as_deref())?
            );
            Ok(())
        }
        Cmd::Throughput {
            common,
            bytes,
            streams,
            op,
        } => {
            let ops = op
                .iter()
                .map(|o| match o.as_str() {
                    "oneway" | "one-way" | "sink" | "S" => Ok(Op::Sink),
                    "echo" | "E" => Ok(Op::Echo),
                    o => bail!("unknown --op {o:?} (oneway, echo)"),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let plan = ThroughputPlan {
                configs: common.configs(&Transport::ALL)?,
                bytes,
                streams,
                ops,
            };
            let mut c = Client::start(&common)?;
            runtime()?.block_on(throughput::run(&c.opts, &plan, &mut c.report))?;
            c.finish(&common)
        }
        Cmd::Latency {
            common,
            size,
            period,
            count,
        } => {
            let plan = LatencyPlan {
                configs: common.configs(&[Transport::Kcp, Transport::Tcp])?,
                size,
                period,
                count,
            };
            let mut c = Client::start(&common)?;
            runtime()?.block_on(latency::run(&c.opts, &plan, &mut c.report))?;
            c.finish(&common)
        }
        Cmd::Sessions {
            common,
            sessions,
            go_sessions,
            secs,
            size,
            rate,
        } => {
            let plan = SessionsPlan {
                configs: common.configs(&[Transport::Kcp])?,
                sessions,
                go_sessions: go_sessions.unwrap_or(sessions),
                secs,
                size,
                rate,
            };
            let mut c = Client::start(&common)?;
            runtime()?.block_on(sessions::run(&c.opts, &plan, &mut c.report))?;
            c.finish(&common)
        }
    }
}

fn resolve(addr: &str) -> anyhow::Result<std::net::SocketAddr> {
    std::net::ToSocketAddrs::to_socket_addrs(addr)
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))
}

fn run_flood(a: FloodArgs) -> anyhow::Result<()> {
    use kcpbench::flood::{FloodKind, FloodPlan, flood, read_records};
    let _ = procstat::raise_nofile(a.ports as u64 + 64);
    let crypt = match a.crypt.as_str() {
        "plain" => None,
        name => {
            let kind: rkcp_session::CipherKind = name
                .parse()
                .map_err(|e| anyhow::anyhow!("--crypt {name:?}: {e}"))?;
            let c = rkcp_session::PacketCrypt::from_passphrase(kind, &a.key);
            if a.kind == FloodKind::Starts && c.try_seal(&mut [0u8; 64]).is_err() {
                bail!(
                    "--crypt {name}: the AEAD kinds seal per session; flood them with --kind garbage or replay"
                );
            }
            Some(c)
        }
    };
    let replay = match (&a.file, a.kind) {
        (Some(f), FloodKind::Replay) => read_records(f)?,
        (None, FloodKind::Replay) => {
            bail!("--kind replay needs --file (a `kcpbench relay --record` file)")
        }
        _ => Vec::new(),
    };
    let plan = FloodPlan {
        target: resolve(&a.target)?,
        kind: a.kind,
        count: a.count,
        rate: a.rate,
        ports: a.ports,
        src_ips: a.src_ips,
        crypt,
        fec: !a.no_fec,
        payload: a.payload,
        replay,
        seed: a.seed,
    };
    let quiet = a.quiet;
    let r = flood(&plan, |sent, el| {
        if !quiet {
            eprintln!("{:.0}s: {sent} sent", el.as_secs_f64());
        }
    })?;
    println!(
        "flood {:?} to {}: sent {} datagrams ({} bytes, {} send errors) from {} ports in {:.2}s: {:.0} datagrams/s (asked {})",
        a.kind,
        plan.target,
        r.sent,
        r.bytes,
        r.errors,
        plan.ports,
        r.elapsed.as_secs_f64(),
        r.rate(),
        if a.rate > 0.0 {
            format!("{:.0}", a.rate)
        } else {
            "unlimited".into()
        },
    );
    Ok(())
}

fn run_serve(
    listen: &str,
    stdin_lifetime: bool,
    shards: usize,
    threads: usize,
) -> anyhow::Result<()> {
    // Ten thousand TCP sessions need as many descriptors; KCP needs one socket per listener.
    let _ = procstat::raise_nofile(1 << 20);
    if stdin_lifetime {
        std::thread::spawn(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            std::process::exit(0);
        });
    }
    runtime_with(threads)?.block_on(async {
        let server = serve::Server::bind(listen).await?.with_shards(shards);
        println!("READY {}", server.local_addr()?);
        std::io::Write::flush(&mut std::io::stdout())?;
        server.run().await
    })
}

/// A client run: its options, its report, and the servers it started (stopped when dropped).
struct Client {
    opts: ClientOpts,
    report: Report,
    _server: Option<ServerProc>,
    _go_server: Option<GoServer>,
}

impl Client {
    fn start(common: &Common) -> anyhow::Result<Client> {
        let report = client::new_report();
        let (connect, server) = match &common.connect {
            Some(a) => (a.clone(), None),
            None => {
                let exe = std::env::current_exe().context("locating kcpbench itself")?;
                let threads = common.server_threads.to_string();
                let s = ServerProc::spawn(&exe, &["--threads", &threads])?;
                (s.addr.clone(), Some(s))
            }
        };
        let (go, go_server) = resolve_go(&common.go, common.connect.is_some());
        let opts = ClientOpts {
            connect,
            go,
            timeout: common.timeout,
            progress: !common.quiet,
        };
        if let GoColumn::Unavailable(why) = &opts.go {
            eprintln!("kcp-go column skipped: {why}");
        }
        Ok(Client {
            opts,
            report,
            _server: server,
            _go_server: go_server,
        })
    }

    fn finish(self, common: &Common) -> anyhow::Result<()> {
        let mut report = self.report;
        if let Some(s) = common.scenario.as_deref().filter(|s| !s.is_empty()) {
            for r in &mut report.rows {
                r.group = format!("{s}: {}", r.group);
            }
        }
        println!("{}", report::table(&report));
        if let Some(path) = &common.json {
            let json = serde_json::to_string_pretty(&report)?;
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("report written to {}", path.display());
        }
        if let Some(dir) = &common.plots {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for p in plot::write_plots(&report, dir)? {
                eprintln!("plot written to {}", p.display());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1500"), Ok(1500));
        assert!(parse_bytes("3 parsecs").is_err());
        assert_eq!(parse_duration("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("2h").is_err());
        assert_eq!(parse_fec("10/3"), Ok(FecSpec::fixed(10, 3)));
        assert!(parse_fec("10").is_err());
        let auto = FecSpec {
            adaptive: true,
            ..FecSpec::fixed(1, 2)
        };
        assert_eq!(parse_fec("auto"), Ok(auto));
        assert_eq!(parse_fec("1/2:auto"), Ok(auto));
        assert!(parse_fec("0/0:auto").is_err());
        assert!(parse_fec("10/3:auto").is_err(), "one data shard only");
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
