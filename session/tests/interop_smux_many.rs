//! Many-stream smux interop over KCP with Go (github.com/xtaci/smux 1.5.16 over kcp-go 5.6.1 from
//! Debian), both directions, smux v1 and v2 with Go's default smux config on both sides, and KCP
//! set up as kcptun does: fast3 (nodelay 1, interval 10, resend 2, nc 1), windows 1024/1024, MTU
//! 1350, stream mode, ACK nodelay off, 4 MB socket buffers, aes (PBKDF2-SHA1 key), FEC 10/3.
//! Shapes: 256 streams x 64 KB, 1,024 x 16 KB and 32 x 1 MB at once on one session, even streams
//! echo (checked byte for byte), odd streams sink (checked by SHA-256); and the all-echo
//! runs, 256 x 64 KB and 1,024 x 16 KB. The peer is interop/go/smuxpeer with `-transport kcp`;
//! the runs are in smux/tests/many/mod.rs.
//!
//! Run with `cargo test -p rkcp-session --test interop_smux_many -- --ignored interop_`. Needs `go`,
//! golang-github-xtaci-smux-dev and golang-github-xtaci-kcp-dev; fails (does not skip) without
//! them. Each case is bounded by a timeout, so a deadlock fails naming the case, the shape and how
//! many streams finished.

#[path = "../../smux/tests/many/mod.rs"]
mod many;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use many::{Mix, Progress, Shape, cfg, go_client, go_server, run_client, spawn_server, within};
use rkcp_session::{CipherKind, KcpConfig, KcpListener, KcpStream, PacketCrypt};
use rkcp_smux::{Session, Version};

const KEY: &str = "many streams";

/// Passing cases take a few seconds each; this only bounds a deadlock.
const LIMIT: Duration = Duration::from_secs(60);

fn vnum(v: Version) -> u8 {
    v.byte().unwrap()
}

/// kcptun's session setup (fast3 presets mtu 1350, windows 1024 and 4 MB socket buffers), aes, FEC 10/3.
fn kcp_config() -> KcpConfig {
    KcpConfig::fast3()
        .with_crypt(PacketCrypt::from_passphrase(CipherKind::Aes, KEY))
        .with_fec(10, 3)
}

/// The same on the Go side (smuxpeer's -transport kcp defaults are kcptun's, spelled out here).
fn go_args(v: Version) -> Vec<String> {
    [
        "-ver",
        &vnum(v).to_string(),
        "-transport",
        "kcp",
        "-crypt",
        "aes",
        "-key",
        KEY,
        "-fec",
        "10/3",
        "-kcpmode",
        "fast3",
        "-mtu",
        "1350",
        "-sndwnd",
        "1024",
        "-rcvwnd",
        "1024",
    ]
    .map(String::from)
    .to_vec()
}

async fn rust_client_go_server(v: Version, shape: Shape) {
    let case = format!(
        "KCP (fast3, aes, FEC 10/3) smux v{} Rust client -> Go server",
        vnum(v)
    );
    let (_go, addr) = go_server(&go_args(v)).await;
    let addr: SocketAddr = addr.parse().unwrap();
    let progress = Progress::default();
    within(&case, shape, LIMIT, &progress, async {
        let kcp = KcpStream::connect(addr, kcp_config()).await.unwrap();
        let sess = Arc::new(Session::client(kcp, cfg(v)).unwrap());
        if let Err(e) = run_client(sess.clone(), shape, progress.clone()).await {
            panic!("{case}: {shape}: {e}");
        }
        sess.close().await.unwrap();
    })
    .await;
}

async fn go_client_rust_server(v: Version, shape: Shape) {
    let case = format!(
        "KCP (fast3, aes, FEC 10/3) smux v{} Go client -> Rust server",
        vnum(v)
    );
    let listener = KcpListener::bind("127.0.0.1:0", kcp_config())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let progress = Progress::default();
    // KCP has no FIN, so our session outlives the Go client's (until keepalive): the Go
    // client's OK (every stream checked) is the verdict; the server is dropped with the test.
    let server = tokio::spawn(async move {
        let (kcp, _) = listener.accept().await.unwrap();
        let sess = spawn_server(Session::server(kcp, cfg(v)).unwrap())
            .await
            .unwrap();
        drop(listener);
        sess
    });
    within(&case, shape, LIMIT, &progress, async {
        let mut args = go_args(v);
        args.extend(["-connect".into(), addr]);
        if let Err(e) = go_client(&args, shape, progress.clone()).await {
            panic!("{case}: {shape}: {e}");
        }
    })
    .await;
    server.abort();
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
    interop_many_kcp_rust_client_go_server_v1_256x64k: rust_client_go_server, Version::V1, 256, 64 << 10, Half;
    interop_many_kcp_rust_client_go_server_v1_1024x16k: rust_client_go_server, Version::V1, 1024, 16 << 10, Half;
    interop_many_kcp_rust_client_go_server_v1_32x1m: rust_client_go_server, Version::V1, 32, 1 << 20, Half;
    interop_many_kcp_rust_client_go_server_v2_256x64k: rust_client_go_server, Version::V2, 256, 64 << 10, Half;
    interop_many_kcp_rust_client_go_server_v2_1024x16k: rust_client_go_server, Version::V2, 1024, 16 << 10, Half;
    interop_many_kcp_rust_client_go_server_v2_32x1m: rust_client_go_server, Version::V2, 32, 1 << 20, Half;
    interop_many_kcp_go_client_rust_server_v1_256x64k: go_client_rust_server, Version::V1, 256, 64 << 10, Half;
    interop_many_kcp_go_client_rust_server_v1_1024x16k: go_client_rust_server, Version::V1, 1024, 16 << 10, Half;
    interop_many_kcp_go_client_rust_server_v1_32x1m: go_client_rust_server, Version::V1, 32, 1 << 20, Half;
    interop_many_kcp_go_client_rust_server_v2_256x64k: go_client_rust_server, Version::V2, 256, 64 << 10, Half;
    interop_many_kcp_go_client_rust_server_v2_1024x16k: go_client_rust_server, Version::V2, 1024, 16 << 10, Half;
    interop_many_kcp_go_client_rust_server_v2_32x1m: go_client_rust_server, Version::V2, 32, 1 << 20, Half;
}

// The issue's own reproductions: every stream echoes.
cases! {
    interop_many_kcp_rust_client_go_server_v1_256x64k_echo: rust_client_go_server, Version::V1, 256, 64 << 10, Echo;
    interop_many_kcp_rust_client_go_server_v1_1024x16k_echo: rust_client_go_server, Version::V1, 1024, 16 << 10, Echo;
    interop_many_kcp_rust_client_go_server_v2_256x64k_echo: rust_client_go_server, Version::V2, 256, 64 << 10, Echo;
    interop_many_kcp_rust_client_go_server_v2_1024x16k_echo: rust_client_go_server, Version::V2, 1024, 16 << 10, Echo;
    interop_many_kcp_go_client_rust_server_v1_256x64k_echo: go_client_rust_server, Version::V1, 256, 64 << 10, Echo;
    interop_many_kcp_go_client_rust_server_v1_1024x16k_echo: go_client_rust_server, Version::V1, 1024, 16 << 10, Echo;
    interop_many_kcp_go_client_rust_server_v2_256x64k_echo: go_client_rust_server, Version::V2, 256, 64 << 10, Echo;
    interop_many_kcp_go_client_rust_server_v2_1024x16k_echo: go_client_rust_server, Version::V2, 1024, 16 << 10, Echo;
}
