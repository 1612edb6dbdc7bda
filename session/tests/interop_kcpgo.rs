//! Raw KCP interop with kcp-go 5.6.1 (no smux): the Go peer in interop/go/kcppeer, built from the Debian
//! packages. Both directions, stream and message mode, every kcptun cipher plus no crypt layer, FEC 10/3 and 0/0.
//!
//! Run with `cargo test -p rkcp-session --release -- --ignored interop_`. Needs `go` and
//! golang-github-xtaci-kcp-dev; fails (does not skip) without them.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use rkcp_session::{CipherKind, KcpConfig, KcpListener, KcpStream, PacketCrypt};

const KEY: &str = "interop key";

/// Builds the Go peer once per test binary (GOPATH mode against /usr/share/gocode).
pub(crate) fn go_peer() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = std::env::temp_dir().join(format!("kcppeer-{}", std::process::id()));
        let status = Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg("./interop/go/kcppeer/main.go")
            .current_dir(&root)
            .env("GOPATH", "/usr/share/gocode")
            .env("GO111MODULE", "off")
            .status()
            .expect("`go` must be installed for interop tests (apt-get install golang-go golang-github-xtaci-kcp-dev)");
        assert!(status.success(), "building interop/go/kcppeer failed: are golang-github-xtaci-kcp-dev installed?");
        out
    })
    .clone()
}

/// A running Go server; killed on drop.
pub(crate) struct GoServer {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Drop for GoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn go_server(args: &[String]) -> GoServer {
    let mut child = Command::new(go_peer())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the Go peer");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("Go peer said {line:?}"))
        .parse()
        .unwrap();
    GoServer { child, addr }
}

/// (Go cipher name, our config's cipher) for every kcptun cipher, plus no crypt layer at all.
fn ciphers() -> Vec<(&'static str, Option<PacketCrypt>)> {
    let mut v: Vec<_> = CipherKind::KCPTUN
        .iter()
        .map(|k| (k.name(), Some(PacketCrypt::from_passphrase(*k, KEY))))
        .collect();
    v.push(("plain", None));
    v
}

fn config(crypt: &Option<PacketCrypt>, fec: (usize, usize), stream: bool) -> KcpConfig {
    KcpConfig {
        crypt: crypt.clone(),
        ..KcpConfig::fast3()
            .with_stream(stream)
            .with_window(1024, 1024)
    }
    .with_fec(fec.0, fec.1)
}

/// Runs the Go peer with `args` to completion on a blocking thread, its stderr passed through.
async fn run_go_peer(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(go_peer())
            .args(&args)
            .stderr(Stdio::inherit())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Our client against a kcp-go echo server, then a kcp-go client against our echo server, each through a relay
/// losing 10 % of the datagrams each way; `bytes` of pattern `seeds.0` must come back intact both times (relay
/// seeds `seeds.1`, `seeds.2`; the Go peers use FEC `go_fec`, no cipher). Returns what the relays saw our client
/// send and our server send.
async fn echo_both_ways_through_a_lossy_relay(
    cfg: &KcpConfig,
    go_fec: (usize, usize),
    seeds: (u64, u64, u64),
    bytes: usize,
    what: &str,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    use common::lossy::Lossy;
    let srv = go_server(&peer_args("echo", "127.0.0.1:0", "plain", go_fec, true, 0));
    let relay = Lossy::start(srv.addr, 0.1, seeds.1).await;
    let c = KcpStream::connect(relay.inside, cfg.clone()).await.unwrap();
    let data = pattern(seeds.0, bytes);
    let got = tokio::time::timeout(Duration::from_secs(120), echo_roundtrip(c, data.clone()))
        .await
        .unwrap_or_else(|_| panic!("{what}: our client timed out"));
    assert_eq!(fnv(&got), fnv(&data), "{what}: our client");
    let from_client = relay.from_client.lock().clone();
    drop(relay);
    drop(srv);

    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let server = listener.local_addr().unwrap();
    let echo = spawn_echo(listener);
    let relay = Lossy::start(server, 0.1, seeds.2).await;
    let args = peer_args(
        "client",
        &relay.inside.to_string(),
        "plain",
        go_fec,
        true,
        bytes,
    );
    let out = run_go_peer(args).await;
    assert_go_client_echoed(&out, bytes, what);
    let from_server = relay.from_server.lock().clone();
    echo.abort();
    (from_client, from_server)
}

/// The Go client exited cleanly having echoed `bytes` (it prints `OK <bytes>`); `what` names the run.
fn assert_go_client_echoed(out: &std::process::Output, bytes: usize, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{what}: Go client failed: {stdout}");
    assert_eq!(stdout.trim(), format!("OK {bytes}"), "{what}");
}

fn peer_args(
    role: &str,
    addr: &str,
    cipher: &str,
    fec: (usize, usize),
    stream: bool,
    bytes: usize,
) -> Vec<String> {
    vec![
        format!("-role={role}"),
        format!("-addr={addr}"),
        format!("-crypt={cipher}"),
        format!("-key={KEY}"),
        format!("-ds={}", fec.0),
        format!("-ps={}", fec.1),
        format!("-stream={stream}"),
        format!("-bytes={bytes}"),
        "-mtu=1350".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_rust_client_to_kcpgo_echo() {
    for (name, crypt) in ciphers() {
        for fec in [(10, 3), (0, 0)] {
            for stream in [true, false] {
                let srv = go_server(&peer_args("echo", "127.0.0.1:0", name, fec, stream, 0));
                let mut cfg = config(&crypt, fec, stream);
                cfg.kcp.mtu = 1350;
                let c = KcpStream::connect(srv.addr, cfg).await.unwrap();
                let what = format!("cipher {name} fec {fec:?} stream {stream}");
                if stream {
                    let data = pattern(11, 300_000);
                    let got = tokio::time::timeout(
                        Duration::from_secs(60),
                        echo_roundtrip(c, data.clone()),
                    )
                    .await
                    .unwrap_or_else(|_| panic!("{what}: timed out"));
                    assert_eq!(fnv(&got), fnv(&data), "{what}");
                } else {
                    let mss = c.mss();
                    let mut buf = vec![0u8; 65536];
                    for (i, len) in [1usize, 100, mss - 1, mss, 7, 1000].into_iter().enumerate() {
                        let msg = pattern(i as u64, len);
                        c.send_msg(&msg).await.unwrap();
                        let n = tokio::time::timeout(Duration::from_secs(30), c.recv_msg(&mut buf))
                            .await
                            .unwrap_or_else(|_| panic!("{what}: timed out"))
                            .unwrap();
                        assert_eq!(&buf[..n], &msg[..], "{what}: message {i}");
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_kcpgo_client_to_rust_echo() {
    for (name, crypt) in ciphers() {
        for fec in [(10, 3), (0, 0)] {
            for stream in [true, false] {
                let mut cfg = config(&crypt, fec, stream);
                cfg.kcp.mtu = 1350;
                let listener = KcpListener::bind("127.0.0.1:0", cfg).await.unwrap();
                let addr = listener.local_addr().unwrap().to_string();
                let srv = spawn_echo(listener);
                let args = peer_args("client", &addr, name, fec, stream, 300_000);
                let out = run_go_peer(args).await;
                let what = format!("cipher {name} fec {fec:?} stream {stream}");
                assert_go_client_echoed(&out, 300_000, &what);
                srv.abort();
            }
        }
    }
}

/// An unmodified kcp-go client behind a NAT that gives it a new outside port every 50 ms: the server alone makes
/// the session follow it (roaming), one session, every byte echoed intact. Prints the throughput beside the same
/// transfer without rebinding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_kcpgo_client_roams_through_a_rebinding_nat() {
    let crypt = Some(PacketCrypt::from_passphrase(CipherKind::Aes, KEY));
    let mut rates = Vec::new();
    for rebind in [None, Some(Duration::from_millis(50))] {
        let mut cfg = config(&crypt, (10, 3), true);
        cfg.kcp.mtu = 1350;
        let listener = std::sync::Arc::new(KcpListener::bind("127.0.0.1:0", cfg).await.unwrap());
        let server = listener.local_addr().unwrap();
        let srv = spawn_echo_shared(std::sync::Arc::clone(&listener));
        let nat = common::nat::Nat::start(server, rebind).await;
        let bytes = 8_000_000;
        let args = peer_args(
            "client",
            &nat.inside.to_string(),
            "aes",
            (10, 3),
            true,
            bytes,
        );
        let t0 = std::time::Instant::now();
        let out = run_go_peer(args).await;
        let secs = t0.elapsed().as_secs_f64();
        let what = format!(
            "{:?}, {} rebinds",
            listener.stats(),
            nat.rebinds.load(std::sync::atomic::Ordering::Relaxed)
        );
        assert_go_client_echoed(&out, bytes, &what);
        let st = listener.stats();
        let rebinds = nat.rebinds.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(st.created, 1, "{st:?}");
        if rebind.is_some() {
            assert!(rebinds >= 5, "only {rebinds} rebinds");
            assert!(st.roamed >= 5, "{st:?} after {rebinds} rebinds");
        }
        let rate = 2.0 * bytes as f64 / secs / 1e6;
        println!(
            "kcp-go client, rebind {rebind:?}: {rebinds} rebinds, {} moves, {rate:.1} MB/s echoed",
            st.roamed
        );
        rates.push(rate);
        srv.abort();
    }
    println!("roaming throughput ratio: {:.2}", rates[1] / rates[0]);
}

/// Unmodified kcp-go clients against a sharded listener (2 and 4 `SO_REUSEPORT` shards): 16 Go client
/// processes at once, each its own session and source port (so the kernel spreads them over the shards), all
/// echoed intact; then one kcp-go client behind a NAT rebinding its port every 50 ms, whose packets reach other
/// shards after the rebinds: still one session, every byte intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
#[cfg(unix)]
async fn interop_kcpgo_clients_against_a_sharded_listener() {
    let crypt = Some(PacketCrypt::from_passphrase(CipherKind::Aes, KEY));
    for shards in [2, 4] {
        let mut cfg = config(&crypt, (10, 3), true);
        cfg.kcp.mtu = 1350;
        let listener = std::sync::Arc::new(
            KcpListener::bind_sharded("127.0.0.1:0", cfg, shards)
                .await
                .unwrap(),
        );
        let addr = listener.local_addr().unwrap().to_string();
        let srv = spawn_echo_shared(std::sync::Arc::clone(&listener));
        let mut clients = Vec::new();
        for _ in 0..16 {
            let args = peer_args("client", &addr, "aes", (10, 3), true, 200_000);
            clients.push(tokio::spawn(run_go_peer(args)));
        }
        for c in clients {
            let out = c.await.unwrap();
            assert_go_client_echoed(&out, 200_000, &format!("{shards} shards"));
        }
        let per: Vec<u64> = listener.shard_stats().iter().map(|s| s.created).collect();
        assert_eq!(per.iter().sum::<u64>(), 16, "{per:?}");
        assert!(per.iter().filter(|&&c| c > 0).count() > 1, "{per:?}");
        srv.abort();
    }

    let mut cfg = config(&crypt, (10, 3), true);
    cfg.kcp.mtu = 1350;
    let listener = std::sync::Arc::new(
        KcpListener::bind_sharded("127.0.0.1:0", cfg, 4)
            .await
            .unwrap(),
    );
    let srv = spawn_echo_shared(std::sync::Arc::clone(&listener));
    let nat = common::nat::Nat::start(
        listener.local_addr().unwrap(),
        Some(Duration::from_millis(50)),
    )
    .await;
    let bytes = 8_000_000;
    let args = peer_args(
        "client",
        &nat.inside.to_string(),
        "aes",
        (10, 3),
        true,
        bytes,
    );
    let out = run_go_peer(args).await;
    let st = listener.stats();
    let rebinds = nat.rebinds.load(std::sync::atomic::Ordering::Relaxed);
    assert_go_client_echoed(&out, bytes, &format!("{st:?}, {rebinds} rebinds"));
    println!("kcp-go client, 4 shards, rebinding NAT: {rebinds} rebinds, {st:?}");
    assert!(rebinds >= 5, "only {rebinds} rebinds");
    assert_eq!(st.created, 1, "{st:?}");
    assert!(st.roamed >= 5, "{st:?}");
    assert!(st.forwarded > 0, "{st:?}");
    srv.abort();
}

/// Adaptive FEC as our end uses it over a lossy path: parity sent as copies of one seqid, starting at one.
fn adaptive_configs() -> Vec<(&'static str, KcpConfig)> {
    // Windows small enough that the relay's socket buffers take a window's burst (1024 overflowed them, a
    // loss that has nothing to do with the 10 % it draws).
    let base = KcpConfig::fast3().with_window(128, 128);
    vec![(
        "adaptive 1/1..3",
        base.with_adaptive_fec(1, rkcp_session::AdaptiveFec::new(1, 3)),
    )]
}

/// kcp-go 5.6.1 decodes what adaptive FEC sends, both ways, through a relay losing 10 % of the datagrams each
/// way (no cipher, so the relay can read the FEC headers and show that the parity did change): an unmodified
/// kcp-go echo server for our client, and an unmodified kcp-go client against our echo server. Every byte
/// comes back intact. (With 3 data shards and the group shape changing instead, the kcp-go client received
/// corrupt bytes: why adaptive FEC takes one data shard.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_adaptive_fec_over_a_lossy_path() {
    use common::lossy::fec_shapes;
    // Enough segments for a few evidence windows at the residual loss of one parity shard.
    let bytes = 4_000_000;
    for (what, cfg) in adaptive_configs() {
        let ds = cfg.fec.unwrap().data_shards;
        // The kcp-go peers send fixed ds/1 themselves.
        let (from_client, from_server) =
            echo_both_ways_through_a_lossy_relay(&cfg, (ds, 1), (5, 7, 11), bytes, what).await;
        for (side, sent) in [("our client", from_client), ("our server", from_server)] {
            let (copies, runs) = fec_shapes(&sent);
            println!("{what}, {side}: parity copies up to {copies}, parity runs {runs:?}");
            assert!(
                copies >= 2 && runs == [1],
                "{what}, {side}: {copies} {runs:?}"
            );
        }
    }
}

/// The options beyond kcp-go that add segments on the wire, repeated ACKs of out-of-order segments
/// (`ack_repeat`, on with the delivery-rate controller) and redundant bundling (`bundle`), with RACK and TLP:
/// an unmodified kcp-go peer takes the extra ACKs and PUSH copies as duplicates, both ways, through a relay
/// losing 10 % of the datagrams each way (so segments do arrive out of order and get re-acknowledged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_repeated_acks_and_bundling_over_a_lossy_path() {
    let bytes = 1_000_000;
    let mut cfg = KcpConfig::fast3().with_window(128, 128);
    cfg.kcp.congestion = rkcp_session::Congestion::DeliveryRate;
    cfg.kcp.bundle = true;
    cfg.kcp.rack = true;
    cfg.kcp.tlp = true;
    cfg.kcp.mtu = 1350;
    assert_eq!(cfg.engine_config().ack_repeat, None);

    echo_both_ways_through_a_lossy_relay(
        &cfg,
        (0, 0),
        (9, 17, 19),
        bytes,
        "repeated ACKs and bundling",
    )
    .await;
}
