//! Smoke test of `kcpbench flood` and `kcpbench relay` against an in-process KcpListener: a few hundred
//! datagrams of each kind, checked through the listener's counters. No timing assertions.

use std::time::Duration;

use kcpbench::flood::{FloodKind, FloodPlan, flood, read_records, relay};
use rkcp_session::{CipherKind, KcpConfig, KcpListener, KcpStream, PacketCrypt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn plan(target: std::net::SocketAddr, kind: FloodKind, crypt: Option<PacketCrypt>) -> FloodPlan {
    FloodPlan {
        target,
        kind,
        count: 300,
        rate: 20_000.0,
        ports: 20,
        src_ips: 1,
        crypt,
        fec: false,
        payload: 32,
        replay: Vec::new(),
        seed: 1,
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_kinds_reach_the_listener_and_are_counted() {
    let crypt = PacketCrypt::from_passphrase(CipherKind::Aes, "flood-smoke");
    let cfg = KcpConfig::fast3().with_crypt(crypt.clone());
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let target = listener.local_addr().unwrap();

    // Garbage fails the cipher check (or is too short).
    let p = plan(target, FloodKind::Garbage, None);
    let r = tokio::task::spawn_blocking(move || flood(&p, |_, _| {}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.sent + r.errors, 300);
    settle().await;
    let st = listener.stats();
    assert!(st.checksum + st.short > 0, "{st:?}");
    assert_eq!(st.created, 0, "{st:?}");

    // Sealed session starts pass it and create (capped) unverified sessions.
    let p = plan(target, FloodKind::Starts, Some(crypt.clone()));
    let r = tokio::task::spawn_blocking(move || flood(&p, |_, _| {}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.sent, 300);
    settle().await;
    let st = listener.stats();
    assert!(st.created > 0, "{st:?}");
    assert_eq!(st.verified, 0, "{st:?}");

    // A real session through the recording relay, then its datagrams replayed from new ports.
    let rec = std::env::temp_dir().join(format!("kcpbench-flood-smoke-{}.rec", std::process::id()));
    let (tx, rx) = std::sync::mpsc::channel();
    let rec2 = rec.clone();
    std::thread::spawn(move || {
        let _ = relay("127.0.0.1:0", target, Some(&rec2), |a| tx.send(a).unwrap());
    });
    let relay_addr = rx.recv().unwrap();
    // Every accepted session (the flood's unverified ones included) echoes what it reads.
    let listener = std::sync::Arc::new(listener);
    let l2 = std::sync::Arc::clone(&listener);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l2.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 64];
                while let Ok(n) = s.read(&mut b).await {
                    if s.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut c = KcpStream::connect(relay_addr, cfg).await.unwrap();
    c.write_all(b"hello").await.unwrap();
    let mut b = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(20), c.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b, b"hello");
    let before = listener.stats();
    let recorded = read_records(&rec).unwrap();
    assert!(!recorded.is_empty());
    let mut p = plan(target, FloodKind::Replay, None);
    p.count = recorded.len() as u64 * 3;
    p.replay = recorded;
    let r = tokio::task::spawn_blocking(move || flood(&p, |_, _| {}))
        .await
        .unwrap()
        .unwrap();
    assert!(r.sent > 0);
    settle().await;
    let after = listener.stats();
    assert_eq!(
        after.created, before.created,
        "a replay created a session: {after:?}"
    );
    assert!(after.stale > before.stale, "{after:?}");
    let _ = std::fs::remove_file(&rec);
}
