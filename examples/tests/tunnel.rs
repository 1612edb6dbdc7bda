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
    let saddr = server.local_addr().unwrap();
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
    let saddr = server.local_addr().unwrap();
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
    let saddr = server.local_addr().unwrap();
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

fn client_cfg(remote: &str, extra: &[&str]) -> ClientConfig {
    let mut a: Vec<String> = ["-l", "127.0.0.1:0", "-r", remote, "--quiet"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    parse_args(args("tunnel-client", &a)).unwrap().unwrap()
}

/// The tunnel fails mid-transfer (the far side's smux session breaks): the application's connection to the
/// client is reset, so it cannot mistake the truncated data for a complete transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tunnel_resets_the_local_connection() {
    use rkcp_session::KcpListener;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let flags = ["--crypt", "none", "--nocomp", "--ds", "0", "--ps", "0"];
    // A "server" that sends part of an answer on the first stream, then breaks the smux session.
    let scfg: ServerConfig = parse_args(args(
        "tunnel-server",
        &flags
            .iter()
            .map(|s| s.to_string())
            .chain(["-t".to_string(), "127.0.0.1:1".into()])
            .collect::<Vec<_>>(),
    ))
    .unwrap()
    .unwrap();
    let fake = KcpListener::bind("127.0.0.1:0", scfg.params().unwrap().kcp)
        .await
        .unwrap();
    let remote = fake.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut kcp, _) = fake.accept().await.unwrap();
        // smux v1 header: ver, cmd, len (LE u16), stream id (LE u32); the client's first frame is the SYN.
        let mut syn = [0u8; 8];
        kcp.read_exact(&mut syn).await.unwrap();
        assert_eq!(&syn[..2], &[1, 0], "expected a SYN");
        let sid = &syn[4..8];
        // Then the request, as one PSH.
        let mut head = [0u8; 8];
        kcp.read_exact(&mut head).await.unwrap();
        assert_eq!(&head[..2], &[1, 2], "expected a PSH");
        let mut req = vec![0u8; usize::from(u16::from_le_bytes([head[2], head[3]]))];
        kcp.read_exact(&mut req).await.unwrap();
        assert_eq!(req, b"request");
        let mut psh = vec![1u8, 2, 7, 0];
        psh.extend_from_slice(sid);
        psh.extend_from_slice(b"partial");
        kcp.write_all(&psh).await.unwrap();
        // Let the application read it first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Not a smux frame: the client's session dies with a protocol error.
        kcp.write_all(&[0xff; 8]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let client = Client::bind(client_cfg(&remote, &flags)).await.unwrap();
    let caddr = client.local_addr().unwrap();
    tokio::spawn(client.run(std::future::pending()));
    let mut conn = tokio::net::TcpStream::connect(caddr).await.unwrap();
    conn.write_all(b"request").await.unwrap();
    let mut got = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 64];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the local connection stayed open");
    assert_eq!(got, b"partial");
    let err = end.expect_err("a failed tunnel ended with a clean EOF");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
}

/// A transfer that ends normally (the target closes) ends with a clean EOF, after all the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_end_closes_the_local_connection_cleanly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A target that sends 100 kB and closes.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taddr = target.local_addr().unwrap();
    let data = common::payload(100_000, 5, false);
    let sent = data.clone();
    tokio::spawn(async move {
        let (mut s, _) = target.accept().await.unwrap();
        s.write_all(&sent).await.unwrap();
        s.shutdown().await.unwrap();
        // Wait for the tunnel to close its side, so nothing is reset on our side.
        let mut buf = [0u8; 16];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    let flags = ["--crypt", "none", "--nocomp"];
    let mut sa: Vec<String> = ["-l", "127.0.0.1:0", "-t", &taddr.to_string(), "--quiet"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    sa.extend(flags.iter().map(|s| s.to_string()));
    let server = Server::bind(parse_args(args("tunnel-server", &sa)).unwrap().unwrap())
        .await
        .unwrap();
    let saddr = server.local_addr().unwrap();
    tokio::spawn(server.run(std::future::pending()));
    let client = Client::bind(client_cfg(&saddr.to_string(), &flags))
        .await
        .unwrap();
    let caddr = client.local_addr().unwrap();
    tokio::spawn(client.run(std::future::pending()));
    let mut conn = tokio::net::TcpStream::connect(caddr).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut got))
        .await
        .expect("no end of the transfer")
        .expect("a clean end was not a clean EOF");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the data differs");
}

fn spawn_logged(exe: &str, a: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(exe)
        .args(a)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

fn wait_for(
    rx: &std::sync::mpsc::Receiver<String>,
    want: &[&str],
    within: Duration,
) -> Option<String> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(std::time::Instant::now())?;
        match rx.recv_timeout(left) {
            Ok(line) if want.iter().all(|w| line.contains(w)) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Different keys: the server logs that packets fail authentication; the client, which hears nothing back,
/// says so within seconds instead of hanging silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_diagnosed_on_both_sides() {
    let echo = common::echo_server().await;
    let sport = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cport = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (saddr, caddr) = (format!("127.0.0.1:{sport}"), format!("127.0.0.1:{cport}"));
    let (mut server, slog) = spawn_logged(
        env!("CARGO_BIN_EXE_tunnel-server"),
        &[
            "-l",
            &saddr,
            "-t",
            &echo.to_string(),
            "--key",
            "a",
            "--quiet",
        ],
    );
    let (mut client, clog) = spawn_logged(
        env!("CARGO_BIN_EXE_tunnel-client"),
        &["-l", &caddr, "-r", &saddr, "--key", "b", "--quiet"],
    );
    let mut conn = None;
    for _ in 0..100 {
        if let Ok(c) = std::net::TcpStream::connect(&caddr) {
            conn = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut conn = conn.expect("the client does not listen");
    std::io::Write::write_all(&mut conn, b"hello").unwrap();
    let s = wait_for(&slog, &["wrong key or cipher?"], Duration::from_secs(10));
    let c = wait_for(&clog, &["no answer from", "--key"], Duration::from_secs(15));
    for p in [&mut server, &mut client] {
        let _ = p.kill();
        let _ = p.wait();
    }
    assert!(
        s.is_some(),
        "the server did not warn about failing authentication"
    );
    assert!(
        c.is_some(),
        "the client did not warn that nothing authentic came back"
    );
}

/// A remote address that does not resolve: the client exits at once with one message.
#[test]
fn unresolvable_remote_fails_fast_with_one_message() {
    let (mut client, log) = spawn_logged(
        env!("CARGO_BIN_EXE_tunnel-client"),
        &["-l", "127.0.0.1:0", "-r", "no-such-host.invalid:4000"],
    );
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = client.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = client.kill();
            let _ = client.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = status.expect("tunnel-client kept running with an unresolvable --remoteaddr");
    assert!(!status.success());
    std::thread::sleep(Duration::from_millis(100));
    let lines: Vec<String> = log.try_iter().collect();
    let about: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("no-such-host.invalid"))
        .collect();
    assert_eq!(about.len(), 1, "{lines:#?}");
    assert!(about[0].contains("cannot resolve"), "{}", about[0]);
}

/// The server side too: when the client's smux session breaks mid-transfer, the server resets its connection
/// to the target instead of closing it as if the transfer were complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tunnel_resets_the_target_connection() {
    use rkcp_session::KcpStream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taddr = target.local_addr().unwrap();
    let flags = ["--crypt", "none", "--nocomp", "--ds", "0", "--ps", "0"];
    let mut sa: Vec<String> = ["-l", "127.0.0.1:0", "-t", &taddr.to_string(), "--quiet"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    sa.extend(flags.iter().map(|s| s.to_string()));
    let scfg: ServerConfig = parse_args(args("tunnel-server", &sa)).unwrap().unwrap();
    let kcp_cfg = scfg.params().unwrap().kcp;
    let server = Server::bind(scfg).await.unwrap();
    let saddr = server.local_addr().unwrap();
    tokio::spawn(server.run(std::future::pending()));
    // A "client" speaking smux v1 by hand: SYN and PSH("partial") on stream 3, then bytes that are no frame.
    let mut kcp = KcpStream::connect(saddr, kcp_cfg).await.unwrap();
    let mut frames = vec![1u8, 0, 0, 0, 3, 0, 0, 0];
    frames.extend_from_slice(&[1, 2, 7, 0, 3, 0, 0, 0]);
    frames.extend_from_slice(b"partial");
    kcp.write_all(&frames).await.unwrap();
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), target.accept())
        .await
        .expect("the server did not dial the target")
        .unwrap();
    let mut got = [0u8; 7];
    conn.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"partial");
    kcp.write_all(&[0xff; 8]).await.unwrap();
    let mut buf = [0u8; 16];
    let end = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("the target connection stayed open");
    let err = end.expect_err("a failed tunnel closed the target connection cleanly");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
}
