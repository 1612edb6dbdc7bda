//! End to end: the `rand-service` binary behind an in-process `api-gateway` (pool + axum router), driven by
//! raw HTTP/1.1 GETs: many concurrent requests with pools of 1 and of several sessions, a service restart
//! that the pool must survive by reconnecting, and SIGTERM shutdown of the service.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rkcp_examples::randsvc::{self, Pool};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// A free UDP port on loopback (bound then released).
fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// Starts the service binary on `port` and waits for its "listening" line.
async fn start_service(port: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rand-service"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rand-service");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("rand-service did not start")
        .unwrap()
        .expect("rand-service exited");
    assert!(line.contains("listening on"), "{line}");
    child
}

/// SIGTERM, then the exit status must be success (clean shutdown).
async fn stop_service(mut child: Child) {
    let pid = i32::try_from(child.id().unwrap()).unwrap();
    // SAFETY: kill(2) on a child process id we own; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("rand-service ignored SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Runs the gateway in-process on an ephemeral port.
async fn start_gateway(service_port: u16, pool: usize, timeout: Duration) -> SocketAddr {
    let target: SocketAddr = ([127, 0, 0, 1], service_port).into();
    let pool = Pool::new(
        target,
        pool,
        randsvc::kcp_config(),
        rkcp_smux::Config::default(),
        timeout,
    )
    .unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(http, randsvc::router(Arc::new(pool))).await });
    addr
}

/// One `GET /rand`; returns (status, body).
async fn get(addr: SocketAddr) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /rand HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response {resp:?}"));
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// `n` concurrent GETs; asserts each is 200 with 16 hex digits, and returns the distinct values.
async fn many_gets(addr: SocketAddr, n: usize) -> HashSet<String> {
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(get(addr))).collect();
    let mut seen = HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body.len(), 16, "{body:?}");
        assert!(body.bytes().all(|b| b.is_ascii_hexdigit()), "{body:?}");
        seen.insert(body);
    }
    seen
}

async fn concurrent(pool: usize) {
    let port = free_udp_port();
    let svc = start_service(port).await;
    let gw = start_gateway(port, pool, Duration::from_secs(10)).await;
    let seen = many_gets(gw, 300).await;
    // 64-bit random values: any repeat among 300 means the answers are not per-request.
    assert_eq!(seen.len(), 300);
    stop_service(svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_pool_of_one() {
    concurrent(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_pool_of_eight() {
    concurrent(8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_reconnects_after_service_restart() {
    let port = free_udp_port();
    let svc = start_service(port).await;
    // A short timeout: after the restart each stale session costs one timeout before it is replaced.
    let gw = start_gateway(port, 3, Duration::from_millis(700)).await;
    many_gets(gw, 30).await;
    stop_service(svc).await;

    // While the service is down the gateway answers 502, not a hang.
    let (status, body) = get(gw).await;
    assert_eq!(status, 502, "{body}");

    let svc = start_service(port).await;
    for _ in 0..6 {
        let (status, body) = get(gw).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body.len(), 16);
    }
    many_gets(gw, 60).await;
    stop_service(svc).await;
}

#[tokio::test]
async fn service_ignores_a_bad_request() {
    let port = free_udp_port();
    let svc = start_service(port).await;
    let kcp = rkcp_session::KcpStream::connect(("127.0.0.1", port), randsvc::kcp_config())
        .await
        .unwrap();
    let sess = rkcp_smux::Session::client(kcp, rkcp_smux::Config::default()).unwrap();
    let mut bad = sess.open_stream().await.unwrap();
    bad.write_all(b"NOPE").await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(20), bad.read_to_end(&mut buf))
        .await
        .expect("service did not close the bad stream");
    assert!(buf.is_empty(), "answered a bad request: {n:?} {buf:?}");
    // The same session still serves good requests.
    let mut good = sess.open_stream().await.unwrap();
    good.write_all(randsvc::REQUEST).await.unwrap();
    let mut answer = [0u8; 8];
    good.read_exact(&mut answer).await.unwrap();
    stop_service(svc).await;
}

#[test]
fn binaries_have_help() {
    for bin in [
        env!("CARGO_BIN_EXE_rand-service"),
        env!("CARGO_BIN_EXE_api-gateway"),
    ] {
        let out = std::process::Command::new(bin)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("--listen"), "{text}");
    }
}
