//! One-way bulk over one KCP session on loopback: plain, and aes + FEC 10/3 (kcp-go's usual kcptun setup).
//! Each iteration moves 32 MiB from a client to a listener's session and waits for the receiver's 8-byte ack.
//!
//! `cargo bench -p rkcp-session --bench loopback -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rkcp_session::{CipherKind, KcpConfig, KcpListener, KcpStream, PacketCrypt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

const CHUNK: usize = 32 << 20;

fn config(crypt_fec: bool) -> KcpConfig {
    let cfg = KcpConfig::fast3().with_window(4096, 4096).with_mtu(1400);
    if crypt_fec {
        cfg.with_crypt(PacketCrypt::from_passphrase(CipherKind::Aes, "bench"))
            .with_fec(10, 3)
    } else {
        cfg
    }
}

/// A connected pair: the client stream and the accepted server stream.
async fn pair(cfg: KcpConfig) -> (KcpStream, KcpStream) {
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let mut c = KcpStream::connect(listener.local_addr().unwrap(), cfg)
        .await
        .unwrap();
    c.write_all(b"hi").await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).await.unwrap();
    (c, s)
}

async fn transfer(c: &mut KcpStream, s: KcpStream, data: &[u8]) -> (Duration, KcpStream) {
    let start = Instant::now();
    let len = data.len();
    // The receiver runs as its own task, as a server would.
    let recv = tokio::spawn(async move {
        let mut s = s;
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0;
        while got < len {
            got += s.read(&mut buf).await.unwrap();
        }
        s.write_all(&(got as u64).to_le_bytes()).await.unwrap();
        s
    });
    c.write_all(data).await.unwrap();
    let mut ack = [0u8; 8];
    c.read_exact(&mut ack).await.unwrap();
    let elapsed = start.elapsed();
    (elapsed, recv.await.unwrap())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = vec![0x5au8; CHUNK];
    let mut g = c.benchmark_group("kcp_loopback_bulk");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    g.sample_size(10);
    for (name, cf) in [("plain", false), ("aes_fec_10_3", true)] {
        let (mut cl, sv) = rt.block_on(pair(config(cf)));
        let mut sv = Some(sv);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| run(&rt, iters, &mut cl, &mut sv, &data))
        });
    }
    g.finish();
}

fn run(
    rt: &Runtime,
    iters: u64,
    c: &mut KcpStream,
    s: &mut Option<KcpStream>,
    data: &[u8],
) -> Duration {
    rt.block_on(async {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let (d, back) = transfer(c, s.take().expect("server stream"), data).await;
            *s = Some(back);
            total += d;
        }
        total
    })
}

criterion_group!(benches, bench);
criterion_main!(benches);
