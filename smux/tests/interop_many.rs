//! Many-stream interop with Go smux (github.com/xtaci/smux 1.5.16 from Debian) over TCP, both
//! directions, v1 and v2, Go's default config on both sides: 32 streams x 1 MB, 128 x 64 KB and
//! 1,024 x 16 KB at once on one session, even streams echo (checked byte for byte), odd streams
//! sink (checked by SHA-256); and the all-echo runs, 32 x 1 MB and 128 x 64 KB. The peer
//! is interop/go/smuxpeer; the runs are in tests/many/mod.rs.
//!
//! Run with `cargo test -p rkcp-smux --test interop_many -- --ignored interop_`. Needs `go`,
//! golang-github-xtaci-smux-dev and golang-github-xtaci-kcp-dev (the peer also speaks KCP); every
//! test fails (does not skip) when they are missing. Each case is bounded by a timeout, so a
//! deadlock fails naming the case, the shape and how many streams finished.

mod many;

use std::sync::Arc;
use std::time::Duration;

use many::{Mix, Progress, Shape, cfg, go_client, go_server, run_client, spawn_server, within};
use rkcp_smux::{Session, Version};
use tokio::net::{TcpListener, TcpStream};

/// Passing cases take well under a second each; this only bounds a deadlock.
const LIMIT: Duration = Duration::from_secs(30);

fn vnum(v: Version) -> u8 {
    v.byte().unwrap()
}

async fn rust_client_go_server(v: Version, shape: Shape) {
    let case = format!("TCP smux v{} Rust client -> Go server", vnum(v));
    let (_go, addr) = go_server(&["-ver".into(), vnum(v).to_string()]).await;
    let progress = Progress::default();
    within(&case, shape, LIMIT, &progress, async {
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let sess = Arc::new(Session::client(tcp, cfg(v)).unwrap());
        if let Err(e) = run_client(sess.clone(), shape, progress.clone()).await {
            panic!("{case}: {shape}: {e}");
        }
        sess.close().await.unwrap();
    })
    .await;
}

async fn go_client_rust_server(v: Version, shape: Shape) {
    let case = format!("TCP smux v{} Go client -> Rust server", vnum(v));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let progress = Progress::default();
    within(&case, shape, LIMIT, &progress, async {
        let server = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            spawn_server(Session::server(tcp, cfg(v)).unwrap())
                .await
                .unwrap()
        });
        let args = ["-ver".into(), vnum(v).to_string(), "-connect".into(), addr];
        if let Err(e) = go_client(&args, shape, progress.clone()).await {
            panic!("{case}: {shape}: {e}");
        }
        let sess = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap_or_else(|_| {
                panic!("{case}: {shape}: the Go client finished but our session did not end")
            })
            .unwrap();
        assert!(sess.is_closed());
    })
    .await;
}

macro_rules! cases {
    ($($name:ident: $run:ident, $v:expr, $streams:expr, $size:expr, $mix:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs Go and the xtaci Debian packages; see README"]
        async fn $name() {
            $run($v, Shape { streams: $streams, size: $size, mix: Mix::$mix }).await;
        }
    )*};
}

cases! {
    interop_many_tcp_rust_client_go_server_v1_32x1m: rust_client_go_server, Version::V1, 32, 1 << 20, Half;
    interop_many_tcp_rust_client_go_server_v1_128x64k: rust_client_go_server, Version::V1, 128, 64 << 10, Half;
    interop_many_tcp_rust_client_go_server_v1_1024x16k: rust_client_go_server, Version::V1, 1024, 16 << 10, Half;
    interop_many_tcp_rust_client_go_server_v2_32x1m: rust_client_go_server, Version::V2, 32, 1 << 20, Half;
    interop_many_tcp_rust_client_go_server_v2_128x64k: rust_client_go_server, Version::V2, 128, 64 << 10, Half;
    interop_many_tcp_rust_client_go_server_v2_1024x16k: rust_client_go_server, Version::V2, 1024, 16 << 10, Half;
    interop_many_tcp_go_client_rust_server_v1_32x1m: go_client_rust_server, Version::V1, 32, 1 << 20, Half;
    interop_many_tcp_go_client_rust_server_v1_128x64k: go_client_rust_server, Version::V1, 128, 64 << 10, Half;
    interop_many_tcp_go_client_rust_server_v1_1024x16k: go_client_rust_server, Version::V1, 1024, 16 << 10, Half;
    interop_many_tcp_go_client_rust_server_v2_32x1m: go_client_rust_server, Version::V2, 32, 1 << 20, Half;
    interop_many_tcp_go_client_rust_server_v2_128x64k: go_client_rust_server, Version::V2, 128, 64 << 10, Half;
    interop_many_tcp_go_client_rust_server_v2_1024x16k: go_client_rust_server, Version::V2, 1024, 16 << 10, Half;
}

// The issue's own reproductions: every stream echoes.
cases! {
    interop_many_tcp_rust_client_go_server_v1_32x1m_echo: rust_client_go_server, Version::V1, 32, 1 << 20, Echo;
    interop_many_tcp_rust_client_go_server_v1_128x64k_echo: rust_client_go_server, Version::V1, 128, 64 << 10, Echo;
    interop_many_tcp_rust_client_go_server_v2_32x1m_echo: rust_client_go_server, Version::V2, 32, 1 << 20, Echo;
    interop_many_tcp_rust_client_go_server_v2_128x64k_echo: rust_client_go_server, Version::V2, 128, 64 << 10, Echo;
    interop_many_tcp_go_client_rust_server_v1_32x1m_echo: go_client_rust_server, Version::V1, 32, 1 << 20, Echo;
    interop_many_tcp_go_client_rust_server_v1_128x64k_echo: go_client_rust_server, Version::V1, 128, 64 << 10, Echo;
    interop_many_tcp_go_client_rust_server_v2_32x1m_echo: go_client_rust_server, Version::V2, 32, 1 << 20, Echo;
    interop_many_tcp_go_client_rust_server_v2_128x64k_echo: go_client_rust_server, Version::V2, 128, 64 << 10, Echo;
}
