//! End to end: our tunnel-client → our tunnel-server → a TCP echo, over loopback.

mod common;

use std::ffi::OsString;
use std::time::Duration;

use rkcp_examples::tunnel::{Client, ClientConfig, Server, ServerConfig, parse_args};
use tokio::sync::oneshot;

fn args(prog: &str, a: &[String]) -> Vec<OsString> {
    std::iter::once(prog.to_string())
        .chain(a.iter().cloned())
        .map(OsString::from)
        .collect()
}

/// Starts a server and a client in this process with the shared flags `common`; returns the client's TCP
/// address and a guard that stops both.
async fn tunnel(
    common: &[&str],
    client_only: &[&str],
) -> (std::net::SocketAddr, Vec<oneshot::Sender<()>>) {
    let echo = common::echo_server().await;
    let common: Vec<String> = common.iter().map(|s| s.to_string()).collect();
    let mut sa = vec![
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--target".into(),
        echo.to_string(),
        "--quiet".into(),
    ];
    sa.extend(common.iter().cloned());
    let scfg: ServerConfig = parse_args(args("tunnel-server", &sa)).unwrap().unwrap();
    let server = Server::bind(scfg).await.unwrap();
    let saddr = server.local_addr();
    let (stx, srx) = oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = srx.await;
    }));
    let mut ca = vec![
        "--localaddr".to_string(),
        "127.0.0.1:0".into(),
        "--remoteaddr".into(),
        saddr.to_string(),
        "--quiet".into(),
    ];
    ca.extend(common);
    ca.extend(client_only.iter().map(|s| s.to_string()));
    let ccfg: ClientConfig = parse_args(args("tunnel-client", &ca)).unwrap().unwrap();
    let client = Client::bind(ccfg).await.unwrap();
    let caddr = client.local_addr().unwrap();
    let (ctx, crx) = oneshot::channel::<()>();
    tokio::spawn(client.run(async move {
        let _ = crx.await;
    }));
    (caddr, vec![stx, ctx])
}

async fn run_case(flags: &[&str], client_only: &[&str], conns: usize, bytes: usize) {
    let (addr, _guards) = tunnel(flags, client_only).await;
    tokio::time::timeout(Duration::from_secs(120), common::bulk(addr, conns, bytes))
        .await
        .unwrap_or_else(|_| panic!("bulk through tunnel {flags:?} timed out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_aes_fec_comp_smux1() {
    run_case(&["--key", "k1"], &[], 4, 300_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_none_nofec_nocomp_smux2() {
    run_case(
        &[
            "--crypt",
            "none",
            "--nocomp",
            "--ds",
            "0",
            "--ps",
            "0",
            "--smuxver",
            "2",
        ],
        &[],
        4,
        300_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salsa20_comp_nofec_smux2_fast3() {
    run_case(
        &[
            "--crypt",
            "salsa20",
            "--datashard",
            "0",
            "--smuxver",
            "2",
            "--mode",
            "fast3",
        ],
        &[],
        3,
        200_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twofish_nocomp_fec_smux1_conn3() {
    run_case(
        &["--crypt", "twofish", "--nocomp", "--mode", "normal"],
        &["--conn", "3", "--autoexpire", "1", "--scavengettl", "1"],
        5,
        150_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_key_carries_nothing() {
    // Client and server disagree on the key: every packet fails the CRC, nothing comes back.
    let echo = common::echo_server().await;
    let scfg: ServerConfig = parse_args(args(
        "tunnel-server",
        &[
            "-l".into(),
            "127.0.0.1:0".into(),
            "-t".into(),
            echo.to_string(),
            "--key".into(),
            "a".into(),
        ],
    ))
    .unwrap()
    .unwrap();
    let server = Server::bind(scfg).await.unwrap();
    let saddr = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));
    let ccfg: ClientConfig = parse_args(args(
        "tunnel-client",
        &[
            "-l".into(),
            "127.0.0.1:0".into(),
            "-r".into(),
            saddr.to_string(),
            "--key".into(),
            "b".into(),
        ],
    ))
    .unwrap()
    .unwrap();
    let client = Client::bind(ccfg).await.unwrap();
    let caddr = client.local_addr().unwrap();
    tokio::spawn(client.run(std::future::pending()));
    let fut = common::echo_roundtrip(caddr, vec![7u8; 1000]);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), fut)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_target() {
    use tokio::net::UnixListener;
    let dir = std::env::temp_dir().join(format!("rkcp-tunnel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let scfg: ServerConfig = parse_args(args(
        "tunnel-server",
        &[
            "-l".into(),
            "127.0.0.1:0".into(),
            "-t".into(),
            path.display().to_string(),
        ],
    ))
    .unwrap()
    .unwrap();
    let server = Server::bind(scfg).await.unwrap();
    let saddr = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));
    let ccfg: ClientConfig = parse_args(args(
        "tunnel-client",
        &[
            "-l".into(),
            "127.0.0.1:0".into(),
            "-r".into(),
            saddr.to_string(),
        ],
    ))
    .unwrap()
    .unwrap();
    let client = Client::bind(ccfg).await.unwrap();
    let caddr = client.local_addr().unwrap();
    tokio::spawn(client.run(std::future::pending()));
    common::bulk(caddr, 2, 100_000).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The binaries: start both, move data, then SIGTERM them and expect a clean exit; `--tcp` fails clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binaries_run_and_stop_on_sigterm() {
    use std::process::{Command, Stdio};
    let echo = common::echo_server().await;
    let free_udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sport = free_udp.local_addr().unwrap().port();
    drop(free_udp);
    let free_tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cport = free_tcp.local_addr().unwrap().port();
    drop(free_tcp);
    let mut server = Command::new(env!("CARGO_BIN_EXE_tunnel-server"))
        .args(["-l", &format!("127.0.0.1:{sport}"), "-t", &echo.to_string()])
        .args(["-key", "bin", "--smuxver", "2", "--quiet"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut client = Command::new(env!("CARGO_BIN_EXE_tunnel-client"))
        .args(["-l", &format!("127.0.0.1:{cport}")])
        .args(["-r", &format!("127.0.0.1:{sport}")])
        .args(["-key", "bin", "--smuxver", "2", "--quiet"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{cport}").parse().unwrap();
    tokio::time::timeout(Duration::from_secs(60), common::bulk(addr, 3, 200_000))
        .await
        .expect("bulk through the binaries timed out");
    for child in [&mut client, &mut server] {
        // SAFETY: plain kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
    }
    for child in [&mut client, &mut server] {
        let mut status = None;
        for _ in 0..100 {
            if let Some(s) = child.try_wait().unwrap() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = status.expect("did not exit on SIGTERM");
        assert!(status.success(), "exit status {status}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tunnel-client"))
        .args(["--tcp", "-l", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not supported"));
}
