//! Interop with the Go kcptun 20210922 binaries (Debian package `kcptun`), both directions:
//! Go `kcptun-client` → our tunnel-server → TCP echo, and our tunnel-client → Go `kcptun-server` → TCP echo.
//!
//! Matrix: every cipher once per direction, with compression, FEC (10/3 or 0/0) and smux version rotating so
//! each value of each dimension occurs in both directions; plus the full compression × FEC × smux cross with
//! aes. Each case moves several concurrent bulk transfers with SHA-256 checks. These tests fail (not skip) when
//! the Go binaries are missing.

mod common;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rkcp_examples::tunnel::{Client, ClientConfig, Server, ServerConfig, parse_args};
use tokio::sync::oneshot;

const CIPHERS: [&str; 13] = [
    "aes", "aes-128", "aes-192", "salsa20", "blowfish", "twofish", "cast5", "3des", "tea", "xtea",
    "xor", "sm4", "none",
];

/// One configuration of the tunnel.
#[derive(Debug, Clone, Copy)]
struct Case {
    crypt: &'static str,
    comp: bool,
    fec: bool,
    smux: u8,
}

impl Case {
    fn flags(&self, key: &str) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "--key".into(),
            key.into(),
            "--crypt".into(),
            self.crypt.into(),
        ];
        if !self.comp {
            v.push("--nocomp".into());
        }
        let (ds, ps) = if self.fec { (10, 3) } else { (0, 0) };
        v.extend([
            "--datashard".into(),
            ds.to_string(),
            "--parityshard".into(),
            ps.to_string(),
            "--smuxver".into(),
            self.smux.to_string(),
        ]);
        v
    }
}

/// The cipher sweep: cipher i gets compression, FEC and smux version from i, covering both values of each.
fn cipher_cases() -> Vec<Case> {
    CIPHERS
        .iter()
        .enumerate()
        .map(|(i, &crypt)| Case {
            crypt,
            comp: i % 2 == 0,
            fec: (i / 2) % 2 == 0,
            smux: if (i / 4) % 2 == 0 { 1 } else { 2 },
        })
        .collect()
}

/// The full compression × FEC × smux cross with aes.
fn aes_cross() -> Vec<Case> {
    let mut v = Vec::new();
    for comp in [true, false] {
        for fec in [true, false] {
            for smux in [1, 2] {
                v.push(Case {
                    crypt: "aes",
                    comp,
                    fec,
                    smux,
                });
            }
        }
    }
    v
}

/// Kills the Go process when the case ends (also on panic).
struct GoProcess(Child);

impl Drop for GoProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_go(bin: &str, args: &[String]) -> GoProcess {
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {bin} ({e}): install the Debian package `kcptun` (see README)")
        });
    GoProcess(child)
}

fn free_port_udp() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

fn free_port_tcp() -> u16 {
    let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

fn argv(prog: &str, a: Vec<String>) -> Vec<OsString> {
    std::iter::once(prog.to_string())
        .chain(a)
        .map(OsString::from)
        .collect()
}

/// Go kcptun-client → our tunnel-server → echo.
async fn go_client_our_server(case: Case, conns: usize, bytes: usize) {
    let echo = common::echo_server().await;
    let key = format!("interop-{}", case.crypt);
    let mut sa = vec![
        "-l".to_string(),
        "127.0.0.1:0".into(),
        "-t".into(),
        echo.to_string(),
        "--quiet".into(),
    ];
    sa.extend(case.flags(&key));
    let scfg: ServerConfig = parse_args(argv("tunnel-server", sa)).unwrap().unwrap();
    let server = Server::bind(scfg).await.unwrap();
    let saddr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let cport = free_port_tcp();
    let mut ga = vec![
        "--localaddr".to_string(),
        format!("127.0.0.1:{cport}"),
        "--remoteaddr".into(),
        saddr.to_string(),
        "--quiet".into(),
    ];
    ga.extend(case.flags(&key));
    let _go = spawn_go("kcptun-client", &ga);
    let addr: SocketAddr = format!("127.0.0.1:{cport}").parse().unwrap();
    tokio::time::timeout(Duration::from_secs(120), common::bulk(addr, conns, bytes))
        .await
        .unwrap_or_else(|_| panic!("Go client -> our server {case:?} timed out"));
    let _ = stop.send(());
}

/// Our tunnel-client → Go kcptun-server → echo.
async fn our_client_go_server(case: Case, conns: usize, bytes: usize) {
    let echo = common::echo_server().await;
    let key = format!("interop-{}", case.crypt);
    let sport = free_port_udp();
    let mut ga = vec![
        "--listen".to_string(),
        format!("127.0.0.1:{sport}"),
        "--target".into(),
        echo.to_string(),
        "--quiet".into(),
    ];
    ga.extend(case.flags(&key));
    let _go = spawn_go("kcptun-server", &ga);
    let mut ca = vec![
        "-l".to_string(),
        "127.0.0.1:0".into(),
        "-r".into(),
        format!("127.0.0.1:{sport}"),
        "--quiet".into(),
    ];
    ca.extend(case.flags(&key));
    let ccfg: ClientConfig = parse_args(argv("tunnel-client", ca)).unwrap().unwrap();
    let client = Client::bind(ccfg).await.unwrap();
    let caddr = client.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(client.run(async move {
        let _ = stopped.await;
    }));
    tokio::time::timeout(Duration::from_secs(120), common::bulk(caddr, conns, bytes))
        .await
        .unwrap_or_else(|_| panic!("our client -> Go server {case:?} timed out"));
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_go_client_to_our_server_every_cipher() {
    for case in cipher_cases() {
        eprintln!("Go client -> our server: {case:?}");
        go_client_our_server(case, 3, 500_000).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_our_client_to_go_server_every_cipher() {
    for case in cipher_cases() {
        eprintln!("our client -> Go server: {case:?}");
        our_client_go_server(case, 3, 500_000).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_go_client_to_our_server_aes_cross() {
    for case in aes_cross() {
        eprintln!("Go client -> our server: {case:?}");
        go_client_our_server(case, 4, 2_000_000).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_our_client_to_go_server_aes_cross() {
    for case in aes_cross() {
        eprintln!("our client -> Go server: {case:?}");
        our_client_go_server(case, 4, 2_000_000).await;
    }
}

#[test]
fn matrix_covers_every_value() {
    let c = cipher_cases();
    assert_eq!(c.len(), 13);
    assert!(c.iter().any(|x| x.comp) && c.iter().any(|x| !x.comp));
    assert!(c.iter().any(|x| x.fec) && c.iter().any(|x| !x.fec));
    assert!(c.iter().any(|x| x.smux == 1) && c.iter().any(|x| x.smux == 2));
    assert_eq!(aes_cross().len(), 8);
}
