//! Many streams at once on one session, Rust client and Rust server over TCP loopback, v1 and
//! v2, default config on both sides: 64 streams x 1 MB, 128 x 64 KB and 1,024 x 16 KB, even
//! streams echo (checked byte for byte), odd streams sink (checked by SHA-256), and 64 x 1 MB with
//! every stream echoing (the smux v2 deadlock's Rust-to-Rust reproduction). The same runs as
//! the Go interop in interop_many.rs (tests/many/mod.rs), without Go, so they run in every
//! `cargo test`. Each case is bounded by a timeout, so a deadlock fails naming the case, the
//! shape and how many streams finished.

mod many;

use std::sync::Arc;
use std::time::Duration;

use many::{Mix, Progress, Shape, cfg, run_client, spawn_server, within};
use rkcp_smux::{Session, Version};
use tokio::net::{TcpListener, TcpStream};

/// Passing cases take a second or two in a debug build; this only bounds a deadlock.
const LIMIT: Duration = Duration::from_secs(30);

async fn rust_rust(v: Version, shape: Shape) {
    let case = format!("TCP smux v{} Rust client -> Rust server", v.byte().unwrap());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let progress = Progress::default();
    within(&case, shape, LIMIT, &progress, async {
        let server = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            spawn_server(Session::server(tcp, cfg(v)).unwrap())
                .await
                .unwrap()
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let sess = Arc::new(Session::client(tcp, cfg(v)).unwrap());
        if let Err(e) = run_client(sess.clone(), shape, progress.clone()).await {
            panic!("{case}: {shape}: {e}");
        }
        sess.close().await.unwrap();
        let srv = server.await.unwrap();
        assert!(srv.is_closed());
    })
    .await;
}

macro_rules! cases {
    ($($name:ident: $v:expr, $streams:expr, $size:expr, $mix:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            rust_rust($v, Shape { streams: $streams, size: $size, mix: Mix::$mix }).await;
        }
    )*};
}

cases! {
    many_streams_tcp_v1_64x1m: Version::V1, 64, 1 << 20, Half;
    many_streams_tcp_v1_128x64k: Version::V1, 128, 64 << 10, Half;
    many_streams_tcp_v1_1024x16k: Version::V1, 1024, 16 << 10, Half;
    many_streams_tcp_v2_64x1m: Version::V2, 64, 1 << 20, Half;
    many_streams_tcp_v2_128x64k: Version::V2, 128, 64 << 10, Half;
    many_streams_tcp_v2_1024x16k: Version::V2, 1024, 16 << 10, Half;
}

// The Rust-to-Rust reproduction: every stream echoes.
cases! {
    many_streams_tcp_v1_64x1m_echo: Version::V1, 64, 1 << 20, Echo;
    many_streams_tcp_v2_64x1m_echo: Version::V2, 64, 1 << 20, Echo;
}
