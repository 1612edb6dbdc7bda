//! Throughput of every cipher on whole packets (criterion, `Throughput::Bytes`).
//!
//! * `seal/<cipher>`: sealing a 1350-byte datagram (kcptun's default MTU), header, CRC or tag
//!   and encryption included: [`PacketCrypt::seal`] for the kcp-go ciphers, a client
//!   [`SessionCrypt::seal`] for the authenticated kinds (which seal per session only).
//! * `open/<cipher>`: opening the same datagram with [`PacketCrypt::open`]; each iteration first
//!   copies the sealed bytes back into the buffer (a 1350-byte memcpy, included in the figure).
//!   For the authenticated kinds a server [`SessionCrypt`] opens, and since its replay window
//!   would refuse a copied-back datagram before any cryptography, each iteration opens a datagram
//!   freshly sealed by the client outside the timed part (criterion's `iter_batched`).
//! * `kcp_go_equiv/<cipher>`: exactly what kcp-go's `benchCrypt` measures (`crypt_test.go`):
//!   bare cipher encrypt then decrypt of 1500 bytes, counted as 3000 bytes, so its MB/s sit
//!   beside `go test -bench` figures.
//!
//! * `aead_seal_open/session-<cipher>`: one 1400-byte datagram sealed by a client
//!   [`SessionCrypt`] then opened by the server one (24-byte header, counter nonce, replay
//!   window).
//! * `aead_session_new/<cipher>`: [`PacketCrypt::server_session`], what a listener pays per new
//!   session (key derivation and key schedules).
//!
//! Run: `cargo bench -p rkcp-crypt --bench crypt -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput};
use rkcp_crypt::{CipherKind, PacketCrypt, SessionCrypt, SessionId, derive_key, new_block_crypt};

const PACKET: usize = 1350;
const GO_BENCH_LEN: usize = 1500;

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 + 7) as u8).collect()
}

fn seal_open(c: &mut Criterion) {
    let key = derive_key(b"it's a secrect");
    let mut seal = c.benchmark_group("seal");
    seal.throughput(Throughput::Bytes(PACKET as u64));
    for kind in CipherKind::ALL {
        let pc = PacketCrypt::new(kind, &key);
        let mut buf = payload(PACKET);
        if kind.is_authenticated() {
            let mut tx = pc.client_session(SessionId::now());
            seal.bench_function(kind.name(), |b| b.iter(|| tx.seal(black_box(&mut buf))));
        } else {
            seal.bench_function(kind.name(), |b| b.iter(|| pc.seal(black_box(&mut buf))));
        }
    }
    seal.finish();

    let mut open = c.benchmark_group("open");
    open.throughput(Throughput::Bytes(PACKET as u64));
    for kind in CipherKind::ALL {
        let pc = PacketCrypt::new(kind, &key);
        if kind.is_authenticated() {
            let id = SessionId::now();
            let mut tx = pc.client_session(id);
            let mut rx = pc.server_session(id, SessionId::now());
            open.bench_function(kind.name(), |b| {
                b.iter_batched(
                    || {
                        let mut d = payload(PACKET);
                        tx.seal(&mut d);
                        d
                    },
                    |mut d| assert!(rx.open(black_box(&mut d)).is_ok()),
                    BatchSize::SmallInput,
                )
            });
            continue;
        }
        let mut sealed = payload(PACKET);
        pc.seal(&mut sealed);
        let mut buf = sealed.clone();
        open.bench_function(kind.name(), |b| {
            b.iter(|| {
                buf.copy_from_slice(&sealed);
                black_box(pc.open(black_box(&mut buf)).is_ok())
            })
        });
    }
    open.finish();
}

fn kcp_go_equivalent(c: &mut Criterion) {
    let key = derive_key(b"it's a secrect");
    let mut g = c.benchmark_group("kcp_go_equiv");
    g.throughput(Throughput::Bytes(2 * GO_BENCH_LEN as u64));
    for kind in CipherKind::KCPTUN {
        let Some(bc) = new_block_crypt(kind, &key) else {
            continue;
        };
        let mut buf = payload(GO_BENCH_LEN);
        g.bench_function(kind.name(), |b| {
            b.iter(|| {
                bc.encrypt(black_box(&mut buf));
                bc.decrypt(black_box(&mut buf));
            })
        });
    }
    g.finish();
}

const AEAD_DATAGRAM: usize = 1400;

fn aead_layouts(c: &mut Criterion) {
    let key = derive_key(b"it's a secrect");
    let mut g = c.benchmark_group("aead_seal_open");
    g.throughput(Throughput::Bytes(AEAD_DATAGRAM as u64));
    for kind in CipherKind::AUTHENTICATED {
        let pc = PacketCrypt::new(kind, &key);
        let mut buf = payload(AEAD_DATAGRAM);
        let id = SessionId::now();
        let mut tx: SessionCrypt = pc.client_session(id);
        let mut rx = pc.server_session(id, SessionId::now());
        g.bench_function(format!("session-{}", kind.name()), |b| {
            b.iter(|| {
                tx.seal(black_box(&mut buf));
                assert!(rx.open(black_box(&mut buf)).is_ok());
            })
        });
    }
    g.finish();

    // What a listener pays per new session: two HKDF-Expand and two AEAD key schedules.
    let mut g = c.benchmark_group("aead_session_new");
    for kind in CipherKind::AUTHENTICATED {
        let pc = PacketCrypt::new(kind, &key);
        let (client, server) = (SessionId::now(), SessionId::now());
        g.bench_function(kind.name(), |b| {
            b.iter(|| black_box(pc.server_session(black_box(client), server)))
        });
    }
    g.finish();
}

// Hand-written `main` instead of `criterion_group!`, whose generated `pub fn` trips `missing_docs`.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    seal_open(&mut c);
    kcp_go_equivalent(&mut c);
    aead_layouts(&mut c);
    c.final_summary();
}
