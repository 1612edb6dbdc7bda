//! End-to-end tests of the relay gateway over loopback KCP: two backends, several concurrent clients with
//! checksummed data, wrong key, unknown id, duplicate id, idle backend dropped, and the binaries' --help.

use std::net::SocketAddr;
use std::time::Duration;

use rkcp_examples::relay::{
    Backend, BackendConfig, Client, Relay, RelayConfig, RelayError, kcp_config,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const KEY: &[u8] = b"relay test key";

async fn start_relay(
    idle: Duration,
) -> (
    SocketAddr,
    rkcp_examples::relay::Registry,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), RelayError>>,
) {
    let mut cfg = RelayConfig::new(KEY);
    cfg.idle_timeout = idle;
    let relay = Relay::bind("127.0.0.1:0", kcp_config(None), cfg)
        .await
        .unwrap();
    let addr = relay.local_addr();
    let registry = relay.registry();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(relay.run(async {
        let _ = rx.await;
    }));
    (addr, registry, tx, task)
}

fn backend_cfg(id: &str, key: &[u8], ping: Option<Duration>) -> BackendConfig {
    let mut cfg = BackendConfig::new(id, key);
    cfg.ping_interval = ping;
    cfg
}

/// Serves each stream: reads a u32 length and that many bytes, answers with its id and SHA-256 of the data.
fn serve(backend: Backend, id: &'static str) -> tokio::task::JoinHandle<Backend> {
    tokio::spawn(async move {
        while let Ok(mut s) = backend.accept().await {
            tokio::spawn(async move {
                let len = s.read_u32().await.unwrap() as usize;
                let mut hash = Sha256::new();
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = 0;
                while got < len {
                    let n = s
                        .read(&mut buf[..(len - got).min(16 * 1024)])
                        .await
                        .unwrap();
                    assert!(n > 0, "client stream ended early");
                    hash.update(&buf[..n]);
                    got += n;
                }
                s.write_u8(id.len() as u8).await.unwrap();
                s.write_all(id.as_bytes()).await.unwrap();
                s.write_all(&hash.finalize()).await.unwrap();
                s.shutdown().await.unwrap();
            });
        }
        backend
    })
}

fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn exchange(client: &Client, id: &str, data: &[u8]) {
    let mut s = client.open(id).await.unwrap();
    s.write_u32(data.len() as u32).await.unwrap();
    for chunk in data.chunks(8 * 1024) {
        s.write_all(chunk).await.unwrap();
    }
    let n = s.read_u8().await.unwrap() as usize;
    let mut who = vec![0u8; n];
    s.read_exact(&mut who).await.unwrap();
    assert_eq!(who, id.as_bytes(), "stream reached the wrong backend");
    let mut sum = [0u8; 32];
    s.read_exact(&mut sum).await.unwrap();
    assert_eq!(
        sum[..],
        Sha256::digest(data)[..],
        "checksum mismatch via {id}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_many_clients_and_refusals() {
    let (addr, registry, stop, relay) = start_relay(Duration::from_secs(30)).await;
    let ping = Some(Duration::from_millis(200));
    let a = Backend::register(addr, kcp_config(None), backend_cfg("alpha", KEY, ping))
        .await
        .unwrap();
    let b = Backend::register(addr, kcp_config(None), backend_cfg("beta", KEY, ping))
        .await
        .unwrap();
    assert_eq!(registry.backend_ids(), ["alpha", "beta"]);
    let (a, b) = (serve(a, "alpha"), serve(b, "beta"));

    // Wrong key: refused with a message naming the cause; not registered.
    let err = Backend::register(
        addr,
        kcp_config(None),
        backend_cfg("gamma", b"not the key", ping),
    )
    .await
    .unwrap_err();
    match err {
        RelayError::Refused(m) => assert!(m.contains("wrong key"), "{m}"),
        e => panic!("expected a refusal, got {e}"),
    }
    // A taken id is refused too.
    let err = Backend::register(addr, kcp_config(None), backend_cfg("alpha", KEY, ping))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RelayError::Refused(m) if m.contains("already registered")),
        "{err}"
    );
    assert_eq!(registry.backend_ids(), ["alpha", "beta"]);

    // Several clients (separate sessions), each with concurrent streams to both backends.
    let mut tasks = Vec::new();
    for c in 0..3u64 {
        let client = Client::connect(addr, kcp_config(None), rkcp_smux::Config::default())
            .await
            .unwrap();
        for (k, id) in ["alpha", "beta", "alpha", "beta"].into_iter().enumerate() {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let data = payload(c * 10 + k as u64, 96 * 1024 + 333 * k);
                exchange(&client, id, &data).await;
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }

    // Unknown id: refused with the message.
    let client = Client::connect(addr, kcp_config(None), rkcp_smux::Config::default())
        .await
        .unwrap();
    match client.open("nobody").await {
        Err(RelayError::Refused(m)) => assert_eq!(m, "unknown backend id \"nobody\""),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("unknown id was accepted"),
    }
    // The session is still usable after a refusal.
    exchange(&client, "beta", b"after a refusal").await;

    stop.send(()).unwrap();
    relay.await.unwrap().unwrap();
    // The relay closed the backends' sessions on shutdown, so their accept loops end.
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(a.is_closed() && b.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_backend_is_dropped() {
    let (addr, registry, stop, relay) = start_relay(Duration::from_millis(300)).await;
    let quiet = Backend::register(addr, kcp_config(None), backend_cfg("quiet", KEY, None))
        .await
        .unwrap();
    let lively = Backend::register(
        addr,
        kcp_config(None),
        backend_cfg("lively", KEY, Some(Duration::from_millis(50))),
    )
    .await
    .unwrap();
    let client = Client::connect(addr, kcp_config(None), rkcp_smux::Config::default())
        .await
        .unwrap();
    // The quiet backend stops being reachable: wait (bounded) for the refusal.
    let mut refused = None;
    for _ in 0..200 {
        match client.open("quiet").await {
            Err(RelayError::Refused(m)) => {
                refused = Some(m);
                break;
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(refused.as_deref(), Some("unknown backend id \"quiet\""));
    // Its session was closed by the relay.
    // (Streams the relay opened before the drop are still queued; after them, accept fails.)
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        while quiet.accept().await.is_ok() {}
    });
    assert!(
        drained.await.is_ok(),
        "the quiet backend's session stayed open"
    );
    assert!(quiet.is_closed());
    // The pinging one survived several idle periods.
    assert_eq!(registry.backend_ids(), ["lively"]);
    let lively = serve(lively, "lively");
    exchange(&client, "lively", &payload(7, 10_000)).await;
    stop.send(()).unwrap();
    relay.await.unwrap().unwrap();
    assert!(lively.await.unwrap().is_closed());
}

#[test]
fn binaries_have_help() {
    for (exe, flag) in [
        (env!("CARGO_BIN_EXE_relay"), "--idle-timeout"),
        (env!("CARGO_BIN_EXE_relay-backend"), "--forward"),
        (env!("CARGO_BIN_EXE_relay-client"), "--listen"),
    ] {
        let out = std::process::Command::new(exe)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{exe} --help failed");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(flag),
            "{exe} --help lacks {flag}"
        );
    }
}
