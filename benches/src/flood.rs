//! `kcpbench flood | relay | listen`: hostile traffic against a KCP listener, and the two helpers that measure
//! what it does (benches/RESULTS.md, "Hostile traffic").
//!
//! - [`flood`]: N datagrams at a target rate from M UDP sockets (M source ports, optionally spread over several
//!   loopback addresses) to one address: random garbage, plausible KCP session starts (sealed with a kcp-go
//!   cipher when given one, so that they pass the cipher check), or replays of a recorded session.
//! - [`relay`]: a UDP relay between a client and a server that records the client's datagrams into a file
//!   ([`write_record`] format), the input of `--kind replay`.
//! - [`listen`]: a bare [`KcpListener`] that accepts and drains every session and prints its
//!   [`rkcp_session::ListenerStats`] and its resident memory every second: the figures of a flood (sessions
//!   created, unverified sessions, bytes per unverified session).
//!
//! Plain std sockets and threads, no async: the sender must be cheap enough to reach ~100 k datagrams/s.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rkcp_session::{CipherKind, KcpConfig, KcpListener, PacketCrypt};

/// What a flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodKind {
    /// Random bytes, random lengths from 24 to 1400.
    Garbage,
    /// KCP session starts: random conv, PUSH, sn 0, una 0, a random payload; sealed if a cipher is given.
    Starts,
    /// The datagrams of a recorded file, in order, each pass over the file from the next socket.
    Replay,
}

impl std::str::FromStr for FloodKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "garbage" => Ok(FloodKind::Garbage),
            "starts" => Ok(FloodKind::Starts),
            "replay" => Ok(FloodKind::Replay),
            _ => Err(format!("unknown --kind {s:?} (garbage, starts, replay)")),
        }
    }
}

/// A flood's parameters.
#[derive(Debug, Clone)]
pub struct FloodPlan {
    /// Where to send.
    pub target: SocketAddr,
    /// What to send.
    pub kind: FloodKind,
    /// Datagrams in all.
    pub count: u64,
    /// Datagrams per second (0: as fast as possible).
    pub rate: f64,
    /// Source sockets (ports).
    pub ports: usize,
    /// Source addresses: the sockets are spread over 127.0.0.1 ..= 127.0.0.N (loopback targets only).
    pub src_ips: u32,
    /// `starts`: seal with this kcp-go cipher (`none` included: nonce + CRC header, no encryption); None:
    /// bare KCP, no packet layer at all.
    pub crypt: Option<PacketCrypt>,
    /// `starts`: wrap the KCP segment in an FEC data header (kcptun's default --datashard 10).
    pub fec: bool,
    /// `starts`: payload bytes per session start.
    pub payload: usize,
    /// `replay`: the recorded datagrams.
    pub replay: Vec<Vec<u8>>,
    /// PRNG seed (0: from the clock).
    pub seed: u64,
}

/// What a flood did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodReport {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// `send_to` failures (ICMP port unreachable, full buffers).
    pub errors: u64,
    /// Bytes handed to the kernel.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl FloodReport {
    /// Achieved datagrams per second.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// xorshift64*: fast, good enough for junk.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let seed = if seed == 0 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id()) << 32
        } else {
            seed
        };
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
    fn range(&mut self, lo: usize, hi_inclusive: usize) -> usize {
        lo + (self.next() % (hi_inclusive - lo + 1) as u64) as usize
    }
}

/// KCP command of a data segment.
const CMD_PUSH: u8 = 81;
/// KCP segment header.
const KCP_OVERHEAD: usize = 24;
/// FEC data header (seqid, type, size).
const FEC_HEADER: usize = 8;

/// Writes one session start into `buf` (cleared first): [crypt header room, 20 bytes for kcp-go's ciphers]
/// [FEC data header] KCP PUSH sn 0 una 0 + payload, then seals it.
fn session_start(plan: &FloodPlan, rng: &mut Rng, fec_seq: &mut u32, buf: &mut Vec<u8>) {
    buf.clear();
    let head = plan.crypt.as_ref().map_or(0, PacketCrypt::header_len);
    buf.resize(head, 0);
    let seg_len = KCP_OVERHEAD + plan.payload;
    buf.reserve(FEC_HEADER + seg_len + 16);
    if plan.fec {
        buf.extend_from_slice(&fec_seq.to_le_bytes());
        *fec_seq = fec_seq.wrapping_add(1);
        buf.extend_from_slice(&0xF1u16.to_le_bytes());
        buf.extend_from_slice(&((seg_len + 2) as u16).to_le_bytes());
    }
    let conv = rng.next() as u32;
    let ts = rng.next() as u32;
    buf.extend_from_slice(&conv.to_le_bytes());
    buf.push(CMD_PUSH);
    buf.push(0); // frg
    buf.extend_from_slice(&128u16.to_le_bytes()); // wnd
    buf.extend_from_slice(&ts.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes()); // sn
    buf.extend_from_slice(&0u32.to_le_bytes()); // una
    buf.extend_from_slice(&(plan.payload as u32).to_le_bytes());
    let at = buf.len();
    buf.resize(at + plan.payload, 0);
    rng.fill(&mut buf[at..]);
    if let Some(c) = &plan.crypt {
        buf.resize(buf.len() + c.trailer_len(), 0);
        c.seal(buf);
    }
}

/// Binds the source sockets: `ports` sockets round-robin over 127.0.0.1 ..= 127.0.0.`src_ips` (or the
/// unspecified address of the target's family when `src_ips` is 0 or the target is not loopback).
fn bind_sources(plan: &FloodPlan) -> anyhow::Result<Vec<UdpSocket>> {
    let mut socks = Vec::with_capacity(plan.ports);
    for i in 0..plan.ports.max(1) {
        let ip: IpAddr = match plan.target.ip() {
            IpAddr::V4(t) if t.is_loopback() && plan.src_ips > 0 => IpAddr::V4(Ipv4Addr::from(
                u32::from(Ipv4Addr::new(127, 0, 0, 1)) + (i as u32 % plan.src_ips),
            )),
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        let s = UdpSocket::bind((ip, 0)).with_context(|| {
            format!("binding source socket {i} on {ip} (raise `ulimit -n` for many --ports)")
        })?;
        socks.push(s);
    }
    Ok(socks)
}

/// Sends the flood (blocking); `progress` is called about once a second with (sent, elapsed).
///
/// # Errors
/// The source sockets cannot be bound, or `replay` has nothing to send.
pub fn flood(
    plan: &FloodPlan,
    mut progress: impl FnMut(u64, Duration),
) -> anyhow::Result<FloodReport> {
    if plan.kind == FloodKind::Replay && plan.replay.is_empty() {
        bail!("--kind replay: the recording holds no datagram");
    }
    let socks = bind_sources(plan)?;
    let mut rng = Rng::new(plan.seed);
    let mut fec_seq = rng.next() as u32;
    let mut buf = Vec::with_capacity(1600);
    let mut pool = vec![
        0u8;
        if plan.kind == FloodKind::Garbage {
            1 << 16
        } else {
            0
        }
    ];
    rng.fill(&mut pool);
    let start = Instant::now();
    let mut next_report = Duration::from_secs(1);
    let (mut sent, mut errors, mut bytes) = (0u64, 0u64, 0u64);
    // Pacing: check the clock every `batch` datagrams and sleep while ahead of `i / rate`.
    let batch = 64u64;
    for i in 0..plan.count {
        if plan.rate > 0.0 && i % batch == 0 {
            let due = Duration::from_secs_f64(i as f64 / plan.rate);
            let now = start.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let (sock, data): (&UdpSocket, &[u8]) = match plan.kind {
            FloodKind::Garbage => {
                // A random slice of a random pool, with fresh random bytes in front (where headers are read).
                let len = rng.range(24, 1400);
                let at = rng.range(0, pool.len() - len);
                pool[at..at + 24].copy_from_slice(&{
                    let mut h = [0u8; 24];
                    rng.fill(&mut h);
                    h
                });
                (&socks[i as usize % socks.len()], &pool[at..at + len])
            }
            FloodKind::Starts => {
                session_start(plan, &mut rng, &mut fec_seq, &mut buf);
                (&socks[i as usize % socks.len()], &buf)
            }
            FloodKind::Replay => {
                let n = plan.replay.len() as u64;
                let pass = i / n;
                (
                    &socks[(pass % socks.len() as u64) as usize],
                    &plan.replay[(i % n) as usize],
                )
            }
        };
        match sock.send_to(data, plan.target) {
            Ok(n) => {
                sent += 1;
                bytes += n as u64;
            }
            Err(_) => errors += 1,
        }
        if i % 1024 == 0 {
            let el = start.elapsed();
            if el >= next_report {
                progress(sent, el);
                next_report = el + Duration::from_secs(1);
            }
        }
    }
    Ok(FloodReport {
        sent,
        errors,
        bytes,
        elapsed: start.elapsed(),
    })
}

/// Appends one datagram to a recording: its length (u32, little endian), then its bytes.
///
/// # Errors
/// The write fails.
pub fn write_record(w: &mut impl Write, datagram: &[u8]) -> std::io::Result<()> {
    w.write_all(&(datagram.len() as u32).to_le_bytes())?;
    w.write_all(datagram)
}

/// Reads a recording written by [`write_record`] (`kcpbench relay --record`).
///
/// # Errors
/// The file cannot be read or is truncated or holds a datagram over 64 KiB.
pub fn read_records(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut r =
        BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?);
    let mut out = Vec::new();
    loop {
        let mut len = [0u8; 4];
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > 65_536 {
            bail!(
                "{}: datagram {} claims {len} bytes: not a recording",
                path.display(),
                out.len()
            );
        }
        let mut d = vec![0u8; len];
        r.read_exact(&mut d)
            .with_context(|| format!("{}: truncated datagram {}", path.display(), out.len()))?;
        out.push(d);
    }
    Ok(out)
}

/// Runs a UDP relay until killed: datagrams from any client to `listen` go to `to` from a socket of their own
/// (one per client address), the answers go back; with `record`, every client→server datagram is appended to
/// that file ([`write_record`], flushed at once). `ready` gets the bound address.
///
/// # Errors
/// Binding or the recording file fails.
pub fn relay(
    listen: &str,
    to: SocketAddr,
    record: Option<&Path>,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let front = Arc::new(UdpSocket::bind(listen).with_context(|| format!("binding {listen}"))?);
    let rec = match record {
        Some(p) => Some(Arc::new(Mutex::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )))),
        None => None,
    };
    ready(front.local_addr()?);
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, client) = front.recv_from(&mut buf)?;
        if let Some(rec) = &rec {
            let mut w = rec.lock().expect("recording lock");
            write_record(&mut *w, &buf[..n])?;
            w.flush()?;
        }
        let up = match upstreams.get(&client) {
            Some(u) => Arc::clone(u),
            None => {
                let bind: SocketAddr = if to.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let u = Arc::new(UdpSocket::bind(bind)?);
                u.connect(to)?;
                let (u2, front2) = (Arc::clone(&u), Arc::clone(&front));
                std::thread::spawn(move || {
                    let mut b = vec![0u8; 65_536];
                    while let Ok(n) = u2.recv(&mut b) {
                        let _ = front2.send_to(&b[..n], client);
                    }
                });
                upstreams.insert(client, Arc::clone(&u));
                u
            }
        };
        let _ = up.send(&buf[..n]);
    }
}

/// Listener options of [`listen`].
#[derive(Debug, Clone)]
pub struct ListenPlan {
    /// Address to bind.
    pub listen: String,
    /// kcp-go cipher name (`none` keeps the nonce + CRC header, `plain` none at all).
    pub crypt: String,
    /// Passphrase.
    pub key: String,
    /// Stop after this long (None: until killed).
    pub secs: Option<f64>,
}

/// Serves a bare [`KcpListener`] (fast3 settings, the given cipher): accepts every session and reads it until
/// it fails; prints one line a second with the listener's counters, the process' resident memory and its
/// growth since the start, and the growth divided by the unverified gauge.
///
/// # Errors
/// Bad cipher name, bind failure.
pub async fn listen(plan: &ListenPlan) -> anyhow::Result<()> {
    let mut cfg = KcpConfig::fast3();
    if plan.crypt != "plain" {
        let kind: CipherKind = plan
            .crypt
            .parse()
            .map_err(|e| anyhow::anyhow!("--crypt {:?}: {e}", plan.crypt))?;
        cfg = cfg.with_crypt(PacketCrypt::from_passphrase(kind, &plan.key));
    }
    let listener = Arc::new(KcpListener::bind(plan.listen.as_str(), cfg).await?);
    let _ = listener.set_recv_buffer(4 << 20);
    println!("READY {}", listener.local_addr().unwrap());
    let l2 = Arc::clone(&listener);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l2.accept().await {
            tokio::spawn(async move {
                let mut b = vec![0u8; 4096];
                while tokio::io::AsyncReadExt::read(&mut s, &mut b).await.is_ok() {}
            });
        }
    });
    let rss0 = crate::procstat::rss_bytes();
    let start = Instant::now();
    let mut peak_unverified = 0u64;
    let mut peak_growth = 0i64;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let st = listener.stats();
        let rss = crate::procstat::rss_bytes();
        let growth = rss as i64 - rss0 as i64;
        peak_unverified = peak_unverified.max(st.unverified);
        peak_growth = peak_growth.max(growth);
        let per = if st.unverified > 0 {
            format!("{}", growth / st.unverified as i64)
        } else {
            "-".into()
        };
        println!(
            "t={:.0}s rss={}KiB growth={}KiB unverified={} bytes/unverified={} created={} verified={} expired={} \
             address_checks={} unverified_limit={} stale={} not_a_start={} short={} checksum={} unknown_peer={} \
             replayed={} backlog_full={} session_cap={} peak_unverified={} peak_growth={}KiB",
            start.elapsed().as_secs_f64(),
            rss / 1024,
            growth / 1024,
            st.unverified,
            per,
            st.created,
            st.verified,
            st.unverified_expired,
            st.address_checks,
            st.unverified_limit,
            st.stale,
            st.not_a_start,
            st.short,
            st.checksum,
            st.unknown_peer,
            st.replayed,
            st.backlog_full,
            st.session_cap,
            peak_unverified,
            peak_growth / 1024,
        );
        if plan
            .secs
            .is_some_and(|s| start.elapsed().as_secs_f64() >= s)
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let path = std::env::temp_dir().join(format!("kcpbench-rec-{}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        write_record(&mut f, b"one").unwrap();
        write_record(&mut f, &[]).unwrap();
        write_record(&mut f, &[7; 1400]).unwrap();
        drop(f);
        let r = read_records(&path).unwrap();
        assert_eq!(r, vec![b"one".to_vec(), vec![], vec![7; 1400]]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn sealed_starts_open_as_kcp_starts() {
        let crypt = PacketCrypt::from_passphrase(CipherKind::Aes, "k");
        let plan = FloodPlan {
            target: "127.0.0.1:9".parse().unwrap(),
            kind: FloodKind::Starts,
            count: 1,
            rate: 0.0,
            ports: 1,
            src_ips: 0,
            crypt: Some(crypt.clone()),
            fec: true,
            payload: 32,
            replay: vec![],
            seed: 7,
        };
        let (mut rng, mut seq, mut buf) = (Rng::new(1), 5u32, Vec::new());
        session_start(&plan, &mut rng, &mut seq, &mut buf);
        let r = crypt.open(&mut buf).unwrap();
        let inner = &buf[r];
        assert_eq!(&inner[4..6], &0xF1u16.to_le_bytes());
        let kcp = &inner[FEC_HEADER..];
        assert_eq!(kcp[4], CMD_PUSH);
        assert_eq!(&kcp[12..20], &[0; 8]); // sn, una
        assert_eq!(kcp.len(), KCP_OVERHEAD + 32);
    }
}
