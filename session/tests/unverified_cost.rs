//! What one unverified session holds (issue 12: ≤ 8 KB), counted exactly rather than read off RSS.
//!
//! A global allocator counts the bytes allocated and not yet freed *on the current thread*; the listener runs
//! on a current-thread runtime, so everything it does lands in the count. Forged session starts (KCP PUSH,
//! sn 0, a 32-byte payload, sealed with kcp-go's `aes` as `kcpbench flood --kind starts` sends them) arrive
//! from distinct source ports; the peers never answer the echo request, so every session stays unverified.
//! Each is accepted and its payload read, as a server would, and the stream kept. The first sessions pay for
//! first-use allocations (tables, the socket's batch buffers) and are left out: the figure is the growth over
//! the next ones, divided by their number, so table growth on the way is charged to them.

use std::net::UdpSocket;
use std::time::Duration;

use rkcp_session::{
    Admission, CipherKind, KcpConfig, KcpListener, KcpStream, ListenerConfig, PacketCrypt,
};
use tokio::io::AsyncReadExt;

#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

/// A kcp-go session start for a fresh conversation, sealed with `crypt`.
fn start(crypt: &PacketCrypt, conv: u32) -> Vec<u8> {
    let mut b = vec![0u8; crypt.header_len()];
    b.extend_from_slice(&conv.to_le_bytes());
    b.push(81); // PUSH
    b.push(0); // frg
    b.extend_from_slice(&128u16.to_le_bytes()); // wnd
    b.extend_from_slice(&12345u32.to_le_bytes()); // ts
    b.extend_from_slice(&0u32.to_le_bytes()); // sn
    b.extend_from_slice(&0u32.to_le_bytes()); // una
    b.extend_from_slice(&32u32.to_le_bytes()); // len
    b.extend_from_slice(&[7u8; 32]);
    b.resize(b.len() + crypt.trailer_len(), 0);
    crypt.seal(&mut b);
    b
}

/// Opens `n` unverified sessions from fresh source ports, accepts each and reads its payload.
async fn open_unverified(
    listener: &KcpListener,
    crypt: &PacketCrypt,
    conv0: u32,
    n: usize,
    keep: &mut Vec<(KcpStream, UdpSocket)>,
) {
    let to = listener.local_addr().unwrap();
    for i in 0..n {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(&start(crypt, conv0 + i as u32), to).unwrap();
        let (mut s, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the start creates a session")
            .unwrap();
        let mut b = [0u8; 64];
        let got = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("its payload is readable")
            .unwrap();
        assert_eq!(got, 32);
        keep.push((s, peer));
    }
}

#[tokio::test]
async fn an_unverified_session_holds_at_most_8_kb() {
    const WARM: usize = 32;
    const N: usize = 200;
    let crypt = PacketCrypt::from_passphrase(CipherKind::Aes, "k");
    let cfg = KcpConfig {
        listener: ListenerConfig {
            accept_backlog: 1024,
            admission: Admission {
                max_unverified_per_ip: 10_000,
                unverified_budget: 64 << 20,
                ..Admission::default()
            },
            ..ListenerConfig::default()
        },
        ..KcpConfig::fast3()
    }
    .with_crypt(crypt.clone());
    let listener = KcpListener::bind("127.0.0.1:0", cfg).await.unwrap();
    let mut keep = Vec::with_capacity(WARM + N);
    open_unverified(&listener, &crypt, 1_000, WARM, &mut keep).await;
    let before = counting::live();
    open_unverified(&listener, &crypt, 100_000, N, &mut keep).await;
    // Let every session's first flush (ACK, echo request) go out and its timer settle.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let per = (counting::live() - before) / N as isize;
    let st = listener.stats();
    assert_eq!(st.unverified as usize, WARM + N, "{st:?}");
    assert_eq!(st.verified, 0);
    println!("bytes held per unverified session: {per}");
    assert!(per <= 8 * 1024, "{per} bytes per unverified session");
}
