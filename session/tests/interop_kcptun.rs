//! Interop with the real kcptun binaries (`--nocomp`): our KcpStream + our smux client through
//! `kcptun-server` to a TCP echo, and `kcptun-client` into our KcpListener + smux server, for every kcptun
//! cipher, FEC 10/3 and 0/0, smux v1 and v2.
//!
//! Run with `cargo test -p rkcp-session --release -- --ignored interop_`. Needs the `kcptun` Debian package; fails
//! (does not skip) without it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rkcp_session::{CipherKind, KcpConfig, KcpListener, KcpStream, PacketCrypt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "kcptun interop";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(bin: &str, args: &[String]) -> Proc {
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin} must be installed (apt-get install kcptun): {e}"));
    Proc(child)
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
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

fn kcp_config(kind: CipherKind, fec: (usize, usize)) -> KcpConfig {
    // kcptun's session setup (F.3): stream mode, mtu 1350, fast3 here, windows as kcptun's server defaults.
    KcpConfig::fast3()
        .with_mtu(1350)
        .with_crypt(PacketCrypt::from_passphrase(kind, KEY))
        .with_fec(fec.0, fec.1)
}

fn smux_config(version: u8) -> rkcp_smux::Config {
    let mut c = rkcp_smux::Config::default();
    c.version = if version == 1 {
        rkcp_smux::Version::V1
    } else {
        rkcp_smux::Version::V2
    };
    c.max_stream_buffer = 2 << 20; // kcptun --streambuf default
    c
}

fn kcptun_args(kind: CipherKind, fec: (usize, usize), smuxver: u8) -> Vec<String> {
    vec![
        "--key".into(),
        KEY.into(),
        "--crypt".into(),
        kind.name().into(),
        "--nocomp".into(),
        "--mode".into(),
        "fast3".into(),
        "--mtu".into(),
        "1350".into(),
        "--datashard".into(),
        fec.0.to_string(),
        "--parityshard".into(),
        fec.1.to_string(),
        "--smuxver".into(),
        smuxver.to_string(),
        "--quiet".into(),
    ]
}

async fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Writes `data` and reads the echo on a duplex stream.
async fn echo_check<S>(s: S, data: &[u8], what: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut r, mut w) = tokio::io::split(s);
    let owned = data.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&owned).await.unwrap();
        w
    });
    let mut got = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(60), r.read_exact(&mut got))
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(got == data, "{what}: echo differs");
    let _ = writer.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_rust_smux_client_through_kcptun_server() {
    let echo = tcp_echo().await;
    for kind in CipherKind::KCPTUN {
        for fec in [(10, 3), (0, 0)] {
            for smuxver in [1u8, 2] {
                let what = format!("kcptun-server cipher {kind} fec {fec:?} smux v{smuxver}");
                let port = free_udp_port();
                let mut args = kcptun_args(kind, fec, smuxver);
                args.extend([
                    "--listen".into(),
                    format!("127.0.0.1:{port}"),
                    "--target".into(),
                    echo.to_string(),
                ]);
                let _srv = spawn("kcptun-server", &args);
                let kcp = KcpStream::connect(("127.0.0.1", port), kcp_config(kind, fec))
                    .await
                    .unwrap();
                let mux = rkcp_smux::Session::client(kcp, smux_config(smuxver)).unwrap();
                for i in 0..2u64 {
                    let st = mux.open_stream().await.unwrap();
                    echo_check(st, &pattern(i + 1, 150_000), &what).await;
                }
                let _ = mux.close().await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_kcptun_client_into_rust_listener() {
    for kind in CipherKind::KCPTUN {
        for fec in [(10, 3), (0, 0)] {
            for smuxver in [1u8, 2] {
                let what = format!("kcptun-client cipher {kind} fec {fec:?} smux v{smuxver}");
                let listener = KcpListener::bind("127.0.0.1:0", kcp_config(kind, fec))
                    .await
                    .unwrap();
                let kaddr = listener.local_addr().unwrap();
                let server = tokio::spawn(async move {
                    let Ok((kcp, _)) = listener.accept().await else {
                        return;
                    };
                    let mux = rkcp_smux::Session::server(kcp, smux_config(smuxver)).unwrap();
                    while let Ok(st) = mux.accept_stream().await {
                        tokio::spawn(async move {
                            let (mut r, mut w) = tokio::io::split(st);
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                        });
                    }
                    drop(listener);
                });
                let lport = free_tcp_port();
                let mut args = kcptun_args(kind, fec, smuxver);
                args.extend([
                    "--localaddr".into(),
                    format!("127.0.0.1:{lport}"),
                    "--remoteaddr".into(),
                    kaddr.to_string(),
                    "--conn".into(),
                    "1".into(),
                ]);
                let _cli = spawn("kcptun-client", &args);
                let mut tcp = None;
                for _ in 0..200 {
                    if let Ok(s) = TcpStream::connect(("127.0.0.1", lport)).await {
                        tcp = Some(s);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                let tcp = tcp.unwrap_or_else(|| panic!("{what}: kcptun-client did not listen"));
                echo_check(tcp, &pattern(9, 150_000), &what).await;
                let tcp2 = TcpStream::connect(("127.0.0.1", lport)).await.unwrap();
                echo_check(tcp2, &pattern(10, 50_000), &what).await;
                server.abort();
            }
        }
    }
}
