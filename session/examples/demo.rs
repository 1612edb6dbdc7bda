//! Self-contained loopback demo: a KCP server and client in one process move 64 MiB (checksummed) over one
//! smux stream on one KCP session with aes + FEC 10/3 (kcptun's stack), print the throughput and kcp-go's SNMP
//! counters, then do the same transfer over TCP for comparison.
//!
//! `cargo run --release -p rkcp-session --example demo [MiB]`

use std::time::Instant;

use rkcp_session::{CipherKind, KcpConfig, KcpListener, KcpStream, PacketCrypt, SnmpSnapshot};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// CRC-32 over a stream of chunks (crc32fast: carry-less multiply, a fraction of a cycle per byte). The
/// receiver checksums on the transfer's critical path; a byte-serial FNV-1a (~4 cycles per byte) cost about a
/// sixth of the receiving core at 100 MB/s and showed up in the measured rate.
#[derive(Clone, Default)]
struct Sum(crc32fast::Hasher);

impl Sum {
    fn new() -> Self {
        Sum::default()
    }
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn value(&self) -> u64 {
        u64::from(self.0.clone().finalize())
    }
}

fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545F4914F6CDD1D;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Receives `len` bytes, returns their checksum, and answers with it.
async fn receive<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, len: usize) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut sum = Sum::new();
    let mut got = 0;
    while got < len {
        let n = s.read(&mut buf[..(len - got).min(1 << 16)]).await?;
        anyhow::ensure!(n > 0, "stream ended early");
        sum.update(&buf[..n]);
        got += n;
    }
    s.write_all(&sum.value().to_le_bytes()).await?;
    // Returns once the peer has acknowledged the checksum (KCP), or after sending FIN (TCP).
    s.shutdown().await?;
    Ok(sum.value())
}

/// Sends `data`, reads the receiver's checksum; returns (seconds, checksum).
async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    data: &[u8],
) -> anyhow::Result<(f64, u64)> {
    let start = Instant::now();
    for chunk in data.chunks(1 << 16) {
        s.write_all(chunk).await?;
    }
    let mut sum = [0u8; 8];
    s.read_exact(&mut sum).await?;
    Ok((start.elapsed().as_secs_f64(), u64::from_le_bytes(sum)))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    let data = payload(mib << 20);
    let mut expect = Sum::new();
    expect.update(&data);

    // KCP: kcptun-style session (fast3, aes, FEC 10/3) with big windows for a fast local link.
    let crypt = PacketCrypt::from_passphrase(CipherKind::Aes, "demo passphrase");
    let wnd = std::env::var("DEMO_WND")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mut cfg = KcpConfig::fast3().with_window(wnd, wnd);
    cfg.kcp.ack_nodelay = std::env::var_os("DEMO_NO_ACKNODELAY").is_none();
    let cfg = cfg.with_crypt(crypt).with_fec(10, 3);
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await?;
    let addr = listener.local_addr().unwrap();
    let len = data.len();
    // Server: accept a KCP session, run an smux server on it, receive one stream.
    let server = tokio::spawn(async move {
        let (kcp, peer) = listener.accept().await?;
        println!("kcp: accepted conv {:#010x} from {peer}", kcp.conv());
        let mux = rkcp_smux::Session::server(kcp, rkcp_smux::Config::default())?;
        let mut stream = mux.accept_stream().await?;
        let sum = receive(&mut stream, len).await?;
        anyhow::Ok((sum, mux, listener))
    });
    // Client: dial, run an smux client on the KCP stream, send over one smux stream.
    let kcp = KcpStream::connect(addr, cfg).await?;
    println!(
        "kcp: client {} -> {addr}, conv {:#010x}, mss {}, smux v1 on top",
        kcp.local_addr()?,
        kcp.conv(),
        kcp.mss()
    );
    let mux = rkcp_smux::Session::client(kcp, rkcp_smux::Config::default())?;
    let mut stream = mux.open_stream().await?;
    let (secs, sum) = send(&mut stream, &data).await?;
    anyhow::ensure!(sum == expect.value(), "KCP checksum mismatch");
    let kcp_rate = len as f64 / secs / 1e6;
    println!("kcp+smux: {mib} MiB in {secs:.3} s = {kcp_rate:.1} MB/s, checksum {sum:016x} ok");
    let (_, server_mux, listener) = server.await??;
    let total = rkcp_session::global_snmp();
    println!("\nprocess counters (both ends of the session):\n{total}");
    println!(
        "\nthe same as kcptun's --snmplog CSV:\n{}\n{}",
        SnmpSnapshot::csv_header(),
        total.csv_row(unix_now())
    );
    println!("listener: {:?}", listener.stats());
    let _ = mux.close().await;
    let _ = server_mux.close().await;

    // The same over TCP.
    let tcp = TcpListener::bind("127.0.0.1:0").await?;
    let taddr = tcp.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut s, _) = tcp.accept().await?;
        receive(&mut s, len).await
    });
    let mut c = TcpStream::connect(taddr).await?;
    let (secs, sum) = send(&mut c, &data).await?;
    anyhow::ensure!(sum == expect.value(), "TCP checksum mismatch");
    drop(c);
    server.await??;
    println!(
        "\ntcp: {mib} MiB in {secs:.3} s = {:.1} MB/s (kernel TCP over loopback, for comparison)",
        len as f64 / secs / 1e6
    );
    println!("{NEXT_STEPS}");
    Ok(())
}

/// Where to go from here: the programs in `examples/`, with copy-paste command lines.
const NEXT_STEPS: &str = "
Next, the programs in examples/ (each has --help):
  kcptun-compatible tunnel (either end may be Go's kcptun):
    cargo build --release
    kcptun-server -l :29900 -t 127.0.0.1:8080 --key secret                 # or target/release/tunnel-server
    target/release/tunnel-client -l :12948 -r SERVER:29900 --key secret    # or kcptun-client
  random numbers behind an HTTP gateway:
    cargo run --release -p rkcp-examples --bin rand-service -- --listen 127.0.0.1:29910
    cargo run --release -p rkcp-examples --bin api-gateway -- --target 127.0.0.1:29910 --listen 127.0.0.1:8080
    curl http://127.0.0.1:8080/rand
  two-way RPC behind NAT:
    cargo run --release -p rkcp-examples --bin rpc-demo -- public --listen 127.0.0.1:29920
    cargo run --release -p rkcp-examples --bin rpc-demo -- nat --server 127.0.0.1:29920
  relay gateway:
    cargo run --release -p rkcp-examples --bin relay -- -l 127.0.0.1:29950 -k KEY
    cargo run --release -p rkcp-examples --bin relay-backend -- -r 127.0.0.1:29950 -i web -k KEY
    cargo run --release -p rkcp-examples --bin relay-client -- -r 127.0.0.1:29950 -i web -k KEY -l 127.0.0.1:8080";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
