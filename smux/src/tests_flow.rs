//! Flow-control tests: the many-stream deadlock, the send credit, reading past a full
//! receive buffer within the windows, and quiet streams.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::frame::Frame;
use crate::tests::{cfg, echo_check, echo_server, raw_client, raw_server};
use crate::{Session, Version};

/// Echo through `tokio::io::copy` (as Go's `io.Copy`) on many streams at once over TCP:
/// the shape that deadlocked v2 (every stream pushing Go's initial 256 KiB before the
/// first window update overran the peer's 4 MiB receive buffer, which then stopped
/// reading, stranding the window updates the echo writers waited for).
async fn tcp_echo(v: Version, streams: u64, len: usize) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (t, _) = l.accept().await.unwrap();
        echo_server(Session::server(t, cfg(v)).unwrap()).await;
    });
    let t = tokio::net::TcpStream::connect(addr).await.unwrap();
    let c = Arc::new(Session::client(t, cfg(v)).unwrap());
    let mut tasks = Vec::new();
    for i in 0..streams {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { echo_check(&c, i, len).await }));
    }
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let all = {
        let done = done.clone();
        async move {
            for t in tasks {
                t.await.unwrap();
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    };
    if timeout(Duration::from_secs(120), all).await.is_err() {
        panic!(
            "{v:?}: {streams} x {len} echo hung ({} streams done)",
            done.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_busy_streams_echo_without_deadlock_v2() {
    tcp_echo(Version::V2, 64, 1_000_000).await;
    tcp_echo(Version::V2, 256, 64 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_busy_streams_echo_without_deadlock_v1() {
    tcp_echo(Version::V1, 64, 1_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_streams_echo_v2() {
    tcp_echo(Version::V2, 1024, 16 * 1024).await;
}

/// Counts PSH payload bytes, in all and per stream, until `idle` passes without a frame.
async fn drain_psh(raw: &mut crate::tests::Raw, idle: Duration) -> (usize, Vec<(u32, usize)>) {
    let mut total = 0;
    let mut per: Vec<(u32, usize)> = Vec::new();
    while let Ok(Some(f)) = timeout(idle, raw.recv()).await {
        if let Frame::Psh(sid, d) = f {
            total += d.len();
            match per.iter_mut().find(|(s, _)| *s == sid) {
                Some((_, n)) => *n += d.len(),
                None => per.push((sid, d.len())),
            }
        }
    }
    (total, per)
}

#[tokio::test]
async fn send_credit_keeps_bytes_in_flight_below_the_peer_buffer() {
    let mut c = cfg(Version::V2);
    c.peer_receive_buffer = 1 << 20;
    let (s, mut raw) = raw_server(c, 2);
    let mut writers = Vec::new();
    for _ in 0..16 {
        let mut st = s.open_stream().await.unwrap();
        // Go's initial window would let each stream send 256 KiB: 4 MiB in all.
        writers.push(tokio::spawn(async move {
            st.write_all(&vec![7u8; 256 * 1024]).await.unwrap();
            st
        }));
    }
    let (sent, per) = drain_psh(&mut raw, Duration::from_millis(200)).await;
    assert!(sent < 1 << 20, "{sent}");
    assert!(sent >= (1 << 20) - 32 * 1024, "{sent}");
    // Shared fairly (least sent first).
    assert_eq!(per.len(), 16);
    // The peer reads (and reports) everything it got of one stream: that credit
    // comes back, and no more than that.
    let (sid, n) = per[0];
    raw.send(Frame::Upd {
        stream_id: sid,
        consumed: n as u32,
        window: 1 << 20,
    })
    .await;
    let (more, _) = drain_psh(&mut raw, Duration::from_millis(200)).await;
    assert!(more > 0 && sent + more < (1 << 20) + n, "{more} {n}");
    drop(writers);
}

#[tokio::test]
async fn v2_reads_past_a_full_receive_buffer_within_the_windows() {
    let mut c = cfg(Version::V2);
    c.max_receive_buffer = 1 << 20;
    c.max_stream_buffer = 64 * 1024;
    let (s, mut raw) = raw_client(c, 2);
    // 16 streams, each sending Go's initial 256 KiB before seeing our window: 4 MiB,
    // four times the receive buffer. Nobody reads. We must keep reading anyway, or the
    // UPD frames behind the data would be stuck.
    let chunk = Bytes::from(vec![1u8; 32 * 1024]);
    let mut streams = Vec::new();
    for i in 0..16u32 {
        raw.send(Frame::Syn(3 + 2 * i)).await;
    }
    let flood = tokio::spawn(async move {
        for i in 0..16u32 {
            for _ in 0..8 {
                raw.send(Frame::Psh(3 + 2 * i, chunk.clone())).await;
            }
        }
        raw.send(Frame::Nop(0)).await;
        raw
    });
    for _ in 0..16 {
        streams.push(s.accept_stream().await.unwrap());
    }
    let mut raw = timeout(Duration::from_secs(5), flood)
        .await
        .expect("reading stopped within the windows")
        .unwrap();
    {
        let g = s.shared().lock();
        let held: usize = g.streams.values().map(|st| st.rx.len).sum();
        assert_eq!(held, 4 << 20);
    }
    // Beyond every window we gave (a misbehaving peer): the full buffer pauses reading.
    let extra = tokio::spawn(async move {
        for _ in 0..200 {
            raw.send(Frame::Psh(3, Bytes::from(vec![2u8; 30_000])))
                .await;
        }
        raw
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!extra.is_finished());
    {
        let g = s.shared().lock();
        let held: usize = g.streams.values().map(|st| st.rx.len).sum();
        assert!(held <= (4 << 20) + 30_000, "{held}");
    }
    // Reading resumes the flow.
    let mut st = streams.swap_remove(0);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    while total < 256 * 1024 + 200 * 30_000 {
        total += st.read(&mut buf).await.unwrap();
    }
    extra.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn quiet_streams_release_unreported_credit() {
    // A peer with large windows (kcptun's --streambuf 2 MiB: it reports consumption
    // only every 1 MiB) has read everything of four streams without saying so. Counted
    // at face value they would block the session for good; once no report came for
    // QUIET, they do not.
    let mut c = cfg(Version::V2);
    c.peer_receive_buffer = 1 << 20;
    c.keep_alive_disabled = true;
    let (s, mut raw) = raw_server(c, 2);
    let mut held = Vec::new();
    for _ in 0..4 {
        // Within Go's initial 256 KiB window guess.
        let mut st = s.open_stream().await.unwrap();
        st.write_all(&vec![1u8; 255_000]).await.unwrap();
        st.flush().await.unwrap();
        held.push(st);
    }
    let (sent, per) = drain_psh(&mut raw, Duration::from_millis(100)).await;
    assert_eq!(sent, 1_020_000);
    // The peer's first read reports (as Go does), with its 2 MiB window; then it reads
    // everything and says nothing (less than half its window).
    for (sid, _) in per {
        raw.send(Frame::Upd {
            stream_id: sid,
            consumed: 1,
            window: 2 << 20,
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut c3 = s.open_stream().await.unwrap();
    let w = tokio::spawn(async move {
        c3.write_all(&vec![3u8; 50_000]).await.unwrap();
        c3.flush().await.unwrap();
        c3
    });
    let (early, _) = drain_psh(&mut raw, Duration::from_millis(500)).await;
    assert_eq!(early, 0, "sent while the credit was reserved");
    let start = tokio::time::Instant::now();
    let first = timeout(Duration::from_secs(20), raw.recv_data())
        .await
        .unwrap();
    assert!(matches!(first, Some(Frame::Psh(..))), "{first:?}");
    // Within two quiet periods (the check runs when the wait timer fires).
    assert!(
        start.elapsed() <= 2 * crate::flow::QUIET,
        "{:?}",
        start.elapsed()
    );
    let (late, _) = drain_psh(&mut raw, Duration::from_secs(1)).await;
    assert!(late > 0);
    w.await.unwrap();
    drop(held);
}
