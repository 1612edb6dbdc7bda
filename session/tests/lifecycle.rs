//! Lifecycle a user can rely on: idle timeout, bounded shutdown, `closed()`, and sessions (with their timer
//! tasks and read loops) that really go away.

mod common;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rkcp_session::{KcpListener, KcpStream, SessionError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

fn session_error(e: &io::Error) -> &SessionError {
    e.get_ref()
        .and_then(|e| e.downcast_ref::<SessionError>())
        .expect("a SessionError inside")
}

/// A server that only reads learns that its peer went silent: the read fails with `IdleTimeout` about
/// `idle_timeout` after the last datagram, `closed()` says the same, and the listener forgets the route (the
/// peer's next datagram is refused: its conversation is remembered against replays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_learns_its_peer_is_gone_within_the_idle_timeout() {
    let idle = Duration::from_millis(400);
    let listener = KcpListener::bind("127.0.0.1:0", fast().with_idle_timeout(Some(idle)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    // The client never times out and goes silent after its first write (as a frozen peer would).
    let mut c = KcpStream::connect(addr, fast().with_idle_timeout(None))
        .await
        .unwrap();
    c.write_all(b"hi").await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).await.unwrap();
    let start = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
        .await
        .expect("the read ends within the idle timeout")
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(
        matches!(session_error(&e), SessionError::IdleTimeout(d) if *d == idle),
        "{e:?}"
    );
    assert!(took >= Duration::from_millis(250), "{took:?}");
    // Generous: the bound is what matters, and CI machines are busy.
    assert!(took < idle + Duration::from_secs(3), "{took:?}");
    assert!(matches!(s.closed().await, SessionError::IdleTimeout(_)));
    // The route is gone, and the closed conversation creates nothing.
    c.write_all(b"again").await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await;
    assert!(r.is_err(), "a closed conversation came back");
    let st = listener.stats();
    assert_eq!(st.created, 1);
    assert!(st.stale >= 1, "{st:?}");
}

/// Steady traffic keeps a short idle timeout from firing on both ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_keeps_the_idle_timeout_away() {
    let cfg = fast().with_idle_timeout(Some(Duration::from_millis(500)));
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _srv = spawn_echo(listener);
    let mut c = KcpStream::connect(addr, cfg).await.unwrap();
    for i in 0..20u8 {
        c.write_all(&[i; 100]).await.unwrap();
        let mut b = [0u8; 100];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(b, [i; 100]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `shutdown` against a peer that never answers returns `CloseTimeout` after `close_timeout`, long before
/// the dead-link check would end it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_within_close_timeout_when_the_peer_is_gone() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = fast();
    cfg.kcp.dead_link = 10_000;
    let cfg = cfg
        .with_idle_timeout(None)
        .with_close_timeout(Duration::from_millis(300));
    let mut c = KcpStream::connect(silent.local_addr().unwrap(), cfg)
        .await
        .unwrap();
    c.write_all(&[5u8; 10_000]).await.unwrap();
    let start = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(5), c.shutdown())
        .await
        .expect("shutdown is bounded")
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(
        matches!(session_error(&e), SessionError::CloseTimeout(d) if *d == Duration::from_millis(300)),
        "{e:?}"
    );
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(matches!(c.closed().await, SessionError::CloseTimeout(_)));
}

/// `closed()` resolves in every waiting task with the reason: a local close from another handle, and a
/// dead link seen through the split halves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_resolves_with_the_reason_everywhere() {
    let listener = KcpListener::bind("127.0.0.1:0", fast()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _srv = spawn_echo(listener);
    let c = Arc::new(KcpStream::connect(addr, fast()).await.unwrap());
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.closed().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "not before the close"
    );
    c.close();
    for w in waiters {
        let r = tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(r, SessionError::Closed), "{r:?}");
    }

    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = fast();
    cfg.kcp.dead_link = 3;
    let c = KcpStream::connect(silent.local_addr().unwrap(), cfg)
        .await
        .unwrap();
    let (r, mut w) = c.into_split();
    let watcher = tokio::spawn(async move { r.closed().await });
    w.write_all(b"anyone?").await.unwrap();
    let why = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(why, SessionError::DeadLink(3)), "{why:?}");
    assert!(matches!(w.closed().await, SessionError::DeadLink(3)));
}

/// Every task a session or socket needs (read loops, timers, send retries) ends once the sessions closed
/// and the listener is gone: nothing is left behind on the runtime.
#[test]
fn closed_sessions_leave_no_task_behind() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let metrics = rt.metrics();
    rt.block_on(async {
        let base = metrics.num_alive_tasks();
        let listener = KcpListener::bind("127.0.0.1:0", fast()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut pairs = Vec::new();
        for i in 0..20u8 {
            let mut c = KcpStream::connect(addr, fast()).await.unwrap();
            c.write_all(&[i; 10]).await.unwrap();
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 10];
            s.read_exact(&mut b).await.unwrap();
            pairs.push((c, s));
        }
        // 21 read loops (the listener's and 20 clients'), which also run the sessions' timers: no task per
        // session.
        let alive = metrics.num_alive_tasks();
        assert!(
            alive >= base + 21 && alive < base + 41,
            "{alive} tasks over {base}"
        );
        drop(pairs);
        drop(listener);
        let start = Instant::now();
        while metrics.num_alive_tasks() > base && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.num_alive_tasks(), base);
    });
}

/// The idle timeout can be changed per session at run time: an accepted session of a listener with the
/// timeout off gets one and ends; a zero timeout is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_can_be_set_per_session() {
    let listener = KcpListener::bind("127.0.0.1:0", fast().with_idle_timeout(None))
        .await
        .unwrap();
    let mut c = KcpStream::connect(
        listener.local_addr().unwrap(),
        fast().with_idle_timeout(None),
    )
    .await
    .unwrap();
    c.write_all(b"hi").await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).await.unwrap();
    assert!(s.set_idle_timeout(Some(Duration::ZERO)).is_err());
    assert!(s.set_close_timeout(Duration::ZERO).is_err());
    s.set_close_timeout(Duration::from_secs(1)).unwrap();
    s.set_idle_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let why = tokio::time::timeout(Duration::from_secs(5), s.closed())
        .await
        .expect("the new timeout applies");
    assert!(matches!(why, SessionError::IdleTimeout(d) if d == Duration::from_millis(200)));
    // The client, with none, is still open.
    c.set_idle_timeout(None).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), c.closed())
            .await
            .is_err()
    );
}
