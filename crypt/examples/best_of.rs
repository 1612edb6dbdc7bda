//! kcp-go's `benchCrypt` loop in Rust (bare cipher encrypt then decrypt of 1500 bytes, counted
//! as 3000 bytes), best of 15 rounds of 40 ms per cipher. Throughput is bytes per second of
//! **this thread's CPU time** (Linux `/proc/thread-self/schedstat`), so time the thread spends
//! descheduled on a shared, loaded machine does not count; elsewhere it falls back to wall time. The Go twin is
//! `tests/go/crypt_bench`; run both back to back:
//!
//! ```text
//! cargo run --release -p rkcp-crypt --example best_of
//! (cd crypt/tests/go/crypt_bench && GOPATH=/usr/share/gocode GO111MODULE=off go run ./main.go)
//! ```
//!
//! After the table it prints seal and open of 1350-byte datagrams (nonce, CRC or tag included)
//! for every kind, the same way: `PacketCrypt::seal`/`open` for the kcp-go ciphers, a client
//! `SessionCrypt` sealing and a server one opening for the authenticated kinds (which seal and
//! open per session only). A session's replay window refuses a datagram it has opened, so the
//! AEAD open figure cycles through 512 datagrams sealed beforehand and starts a new server
//! session (two HKDF-Expand, two key schedules) after each pass, under 1% of the time.
//!
//! The criterion bench (`benches/crypt.rs`) is the statistically careful one; this is for the
//! side-by-side table.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rkcp_crypt::{CipherKind, PacketCrypt, SessionId, derive_key, new_block_crypt};

/// Nanoseconds this thread has run on a CPU, if the kernel tells.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Best throughput over 15 rounds of 40 ms of `op`, which processes `bytes` bytes per call.
fn best_of(bytes: u64, mut op: impl FnMut()) -> f64 {
    let mut best = 0f64;
    for _ in 0..15 {
        let start = Instant::now();
        let cpu0 = thread_cpu_ns();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(40) {
            for _ in 0..16 {
                op();
            }
            n += 16;
        }
        let secs = match (cpu0, thread_cpu_ns()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
            _ => start.elapsed().as_secs_f64(),
        };
        best = best.max((n * bytes) as f64 / secs / 1e6);
    }
    best
}

fn main() {
    let key = derive_key(b"it's a secrect");
    // Optional cipher names on the command line restrict the run (handy under a profiler).
    let only: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |k: CipherKind| only.is_empty() || only.iter().any(|n| n == k.name());
    let data: Vec<u8> = (0..1500).map(|i: usize| (i * 131 + 7) as u8).collect();
    for kind in CipherKind::KCPTUN.into_iter().filter(|&k| wanted(k)) {
        let Some(bc) = new_block_crypt(kind, &key) else {
            continue;
        };
        let mut buf = data.clone();
        let mbs = best_of(3000, || {
            bc.encrypt(black_box(&mut buf));
            bc.decrypt(black_box(&mut buf));
        });
        println!("{:<10} {:>10.1} MB/s", kind.name(), mbs);
    }

    println!("\nPacketCrypt (SessionCrypt for the AEAD kinds), 1350-byte datagrams:");
    println!("{:<38} {:>10}   {:>10}", "", "seal MB/s", "open MB/s");
    for kind in CipherKind::ALL.into_iter().filter(|&k| wanted(k)) {
        let pc = PacketCrypt::new(kind, &key);
        let mut buf = data[..1350].to_vec();
        if kind.is_authenticated() {
            let (seal, open) = aead_session(&pc, &data[..1350]);
            println!("{:<38} {:>10.1}   {:>10.1}", kind.name(), seal, open);
            continue;
        }
        let seal = best_of(1350, || pc.seal(black_box(&mut buf)));
        pc.seal(&mut buf);
        let sealed = buf.clone();
        // Includes a 1350-byte copy per open, to start each from the sealed bytes.
        let open = best_of(1350, || {
            buf.copy_from_slice(&sealed);
            black_box(pc.open(black_box(&mut buf)).is_ok());
        });
        println!("{:<38} {:>10.1}   {:>10.1}", kind.name(), seal, open);
    }
}

/// Seal and open MB/s of `datagram`-sized datagrams through one AEAD session.
fn aead_session(pc: &PacketCrypt, datagram: &[u8]) -> (f64, f64) {
    const RING: usize = 512;
    let client = SessionId::now();
    let mut tx = pc.client_session(client);
    let mut buf = datagram.to_vec();
    let seal = best_of(datagram.len() as u64, || tx.seal(black_box(&mut buf)));

    // Counters 0..RING from a fresh client session, opened in order by a server session that is
    // replaced after each pass (its window has seen them all).
    let mut tx = pc.client_session(client);
    let ring: Vec<Vec<u8>> = (0..RING)
        .map(|_| {
            let mut d = datagram.to_vec();
            tx.seal(&mut d);
            d
        })
        .collect();
    let server = SessionId::now();
    let mut rx = pc.server_session(client, server);
    let mut next = 0;
    // Includes a copy per open, as for the kcp-go ciphers.
    let open = best_of(datagram.len() as u64, || {
        if next == RING {
            rx = pc.server_session(client, server);
            next = 0;
        }
        buf.copy_from_slice(&ring[next]);
        next += 1;
        assert!(rx.open(black_box(&mut buf)).is_ok());
    });
    (seal, open)
}
