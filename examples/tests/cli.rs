//! What every program promises on its command line: errors printed once, `--help`/`--version` the same way
//! everywhere (with the SIGUSR1 dump documented), default ports that do not collide, dual-stack `:port`,
//! host names in `-r`/`--relay`, and the tunnel server's Prometheus endpoint.

mod common;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rkcp_examples::relay::{Relay, RelayConfig, kcp_config};
use rkcp_examples::tunnel::{Client, ClientConfig, Server, ServerConfig, parse_args};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BINS: [(&str, &str); 8] = [
    ("tunnel-client", env!("CARGO_BIN_EXE_tunnel-client")),
    ("tunnel-server", env!("CARGO_BIN_EXE_tunnel-server")),
    ("rand-service", env!("CARGO_BIN_EXE_rand-service")),
    ("api-gateway", env!("CARGO_BIN_EXE_api-gateway")),
    ("rpc-demo", env!("CARGO_BIN_EXE_rpc-demo")),
    ("relay", env!("CARGO_BIN_EXE_relay")),
    ("relay-backend", env!("CARGO_BIN_EXE_relay-backend")),
    ("relay-client", env!("CARGO_BIN_EXE_relay-client")),
];

fn run(exe: &str, args: &[&str]) -> std::process::Output {
    Command::new(exe)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("KCPTUN_KEY")
        .output()
        .unwrap()
}

#[test]
fn help_and_version_read_the_same_everywhere() {
    for (name, exe) in BINS {
        let help = run(exe, &["--help"]);
        assert!(help.status.success(), "{name} --help failed");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(
            text.contains("SIGUSR1"),
            "{name} --help does not document SIGUSR1:\n{text}"
        );
        // Every document the help names is in the repository (no path outside it).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for word in text.split(|c: char| c.is_whitespace() || "()`,;'\"".contains(c)) {
            let doc = word.split('#').next().unwrap_or(word).trim_end_matches('.');
            if doc.ends_with(".md") {
                assert!(
                    !doc.starts_with("../") && root.join(doc).exists(),
                    "{name} --help names {doc}, not a file of this repository"
                );
            }
        }
        for flag in ["-V", "--version"] {
            let v = run(exe, &[flag]);
            assert!(v.status.success(), "{name} {flag} failed");
            assert_eq!(
                String::from_utf8_lossy(&v.stdout).trim(),
                format!("{name} {}", env!("CARGO_PKG_VERSION")),
                "{name} {flag}"
            );
        }
    }
}

/// The `[default: …]` of `flag` in `--help` (clap's format).
fn default_of(help: &str, flag: &str) -> Option<String> {
    let line = help.lines().skip_while(|l| !l.contains(flag)).take(4);
    let text: String = line.collect::<Vec<_>>().join(" ");
    let start = text.find("[default: ")? + "[default: ".len();
    Some(text[start..].split(']').next()?.to_string())
}

#[test]
fn default_udp_ports_do_not_collide() {
    let mut ports: HashMap<u16, &str> = HashMap::new();
    for (name, exe, sub, flag) in [
        ("tunnel-server", BINS[1].1, None, "--listen"),
        ("rand-service", BINS[2].1, None, "--listen"),
        ("rpc-demo", BINS[4].1, Some("public"), "--listen"),
        ("relay", BINS[5].1, None, "--listen"),
    ] {
        let mut args: Vec<&str> = sub.into_iter().collect();
        args.push("--help");
        let help = String::from_utf8_lossy(&run(exe, &args).stdout).into_owned();
        let def = default_of(&help, flag).unwrap_or_else(|| panic!("{name}: no default\n{help}"));
        let port: u16 = def.rsplit(':').next().unwrap().parse().unwrap();
        if let Some(other) = ports.insert(port, name) {
            panic!("{name} and {other} both default to UDP port {port}");
        }
    }
    // The gateway's default target is rand-service's default address.
    let help = String::from_utf8_lossy(&run(BINS[3].1, &["--help"]).stdout).into_owned();
    let rand_help = String::from_utf8_lossy(&run(BINS[2].1, &["--help"]).stdout).into_owned();
    assert_eq!(
        default_of(&help, "--target"),
        default_of(&rand_help, "--listen")
    );
}

#[test]
fn a_fatal_error_is_printed_once_with_its_cause() {
    let exe = BINS[1].1;
    let out = run(exe, &["-l", "no-such-host.invalid:1", "--key", "k"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let fatal: Vec<&str> = err.lines().filter(|l| l.contains("no-such-host")).collect();
    assert_eq!(fatal.len(), 1, "printed more than once:\n{err}");
    assert!(fatal[0].starts_with("tunnel-server: "), "{err}");
    // Every part of the chain once: no phrase repeated.
    let line = fatal[0];
    for part in line.split(": ").filter(|p| p.len() > 8) {
        assert_eq!(line.matches(part).count(), 1, "{part:?} repeated in {line}");
    }
    // Logging to a file: the file gets it once, stderr once.
    let dir = std::env::temp_dir().join(format!("rkcp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("server.log");
    let out = run(
        exe,
        &[
            "-l",
            "no-such-host.invalid:1",
            "--key",
            "k",
            "--log",
            log.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("no-such-host").count(), 1, "{err}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.matches("no-such-host").count(), 1, "{logged}");
    // No colours outside a terminal, in the file or on a piped stderr.
    assert!(!logged.contains('\u{1b}'), "{logged:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn warnings_for_silent_fallbacks_reach_the_log_without_colour() {
    // The server binds, logs its startup lines and warnings, and is then stopped.
    let mut child = Command::new(BINS[1].1)
        .args(["-l", "127.0.0.1:0", "--crypt", "rot13", "--mode", "fast4"])
        .env_remove("RUST_LOG")
        .env_remove("KCPTUN_KEY")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("listening on");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    assert!(!text.contains('\u{1b}'), "ANSI colours on a pipe:\n{text}");
    for want in [
        "\"rot13\" is not a kcptun cipher: using aes",
        "--mode \"fast4\" is not one of",
        "published default",
    ] {
        assert!(
            seen.iter().any(|l| l.contains("WARN") && l.contains(want)),
            "no warning {want:?} in:\n{text}"
        );
    }
}

fn args(prog: &str, a: &[&str]) -> Vec<OsString> {
    std::iter::once(prog)
        .chain(a.iter().copied())
        .map(OsString::from)
        .collect()
}

#[tokio::test]
async fn colon_port_tunnel_server_serves_ipv4_and_ipv6_clients() {
    let echo = common::echo_server().await;
    let echo = echo.to_string();
    let scfg: ServerConfig = parse_args(args(
        "tunnel-server",
        &["-l", ":0", "-t", &echo, "--key", "k", "--quiet"],
    ))
    .unwrap()
    .unwrap();
    let server = Server::bind(scfg).await.unwrap();
    let local = server.local_addr().unwrap();
    assert!(local.ip().is_unspecified(), "{local}");
    let port = local.port();
    tokio::spawn(server.run(std::future::pending()));
    let mut remotes = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")];
    if local.is_ipv6() {
        remotes.push(format!("[::1]:{port}"));
    } else {
        eprintln!("no IPv6 on this host: only IPv4 clients checked");
    }
    for remote in remotes {
        let ccfg: ClientConfig = parse_args(args(
            "tunnel-client",
            &["-l", "127.0.0.1:0", "-r", &remote, "--key", "k", "--quiet"],
        ))
        .unwrap()
        .unwrap();
        let client = Client::bind(ccfg).await.unwrap();
        let caddr = client.local_addr().unwrap();
        tokio::spawn(client.run(std::future::pending()));
        tokio::time::timeout(
            Duration::from_secs(30),
            common::echo_roundtrip(caddr, common::payload(100_000, 7, false)),
        )
        .await
        .unwrap_or_else(|_| panic!("no echo through a server reached at {remote}"));
    }
}

#[tokio::test]
async fn metrics_endpoint_serves_the_counters_for_prometheus() {
    let echo = common::echo_server().await.to_string();
    let scfg: ServerConfig = parse_args(args(
        "tunnel-server",
        &[
            "-l",
            "127.0.0.1:0",
            "-t",
            &echo,
            "--key",
            "k",
            "--quiet",
            "--metrics",
            "127.0.0.1:0",
        ],
    ))
    .unwrap()
    .unwrap();
    let server = Server::bind(scfg).await.unwrap();
    let metrics = server.metrics_addr().expect("metrics endpoint");
    let saddr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run(std::future::pending()));
    // Move some bytes so the counters are not all zero.
    let ccfg: ClientConfig = parse_args(args(
        "tunnel-client",
        &["-l", "127.0.0.1:0", "-r", &saddr, "--key", "k", "--quiet"],
    ))
    .unwrap()
    .unwrap();
    let client = Client::bind(ccfg).await.unwrap();
    let caddr = client.local_addr().unwrap();
    tokio::spawn(client.run(std::future::pending()));
    common::echo_roundtrip(caddr, common::payload(50_000, 3, false)).await;

    let scrape = |path: &'static str| async move {
        let mut c = tokio::net::TcpStream::connect(metrics).await.unwrap();
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut body = String::new();
        c.read_to_string(&mut body).await.unwrap();
        body
    };
    let resp = scrape("/metrics").await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(
        resp.contains("Content-Type: text/plain; version=0.0.4"),
        "{resp}"
    );
    let body = resp.split("\r\n\r\n").nth(1).unwrap();
    let value = |name: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{body}"))
            .parse()
            .unwrap()
    };
    assert!(
        body.contains("# TYPE kcp_bytes_sent_total counter"),
        "{body}"
    );
    assert!(body.contains("# TYPE kcp_curr_estab gauge"), "{body}");
    assert!(value("kcp_bytes_sent_total") >= 50_000, "{body}");
    assert!(value("kcp_out_pkts_total") > 0, "{body}");
    assert!(value("kcp_curr_estab") >= 2, "{body}");
    assert_eq!(
        body.lines().filter(|l| !l.starts_with('#')).count(),
        24,
        "{body}"
    );
    let resp = scrape("/").await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
}

/// Reads the child's stdout until a line contains `want`; returns that line.
fn wait_line(child: &mut std::process::Child, want: &str) -> String {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let want = want.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(&want) {
                let _ = tx.send(line);
                return;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the program did not print its ready line")
}

// Multi-threaded: the test thread blocks reading the children's stdout while the relay runs on the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_backend_and_client_take_host_names() {
    let relay = Relay::bind("127.0.0.1:0", kcp_config(None), RelayConfig::new("k"))
        .await
        .unwrap();
    let port = relay.local_addr().unwrap().port();
    tokio::spawn(relay.run(std::future::pending()));
    let at = format!("localhost:{port}");
    let mut backend = Command::new(BINS[6].1)
        .args(["-r", &at, "-i", "web", "-k", "k", "-q"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line = wait_line(&mut backend, "registered as");
    assert!(line.contains(&at), "{line}");
    let mut client = Command::new(BINS[7].1)
        .args(["-r", &at, "-i", "web", "-k", "k", "-l", "127.0.0.1:0", "-q"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line = wait_line(&mut client, "forwarding");
    let listen: std::net::SocketAddr = line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    // relay-backend echoes; relay-client forwards local TCP through the relay to it.
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        common::echo_roundtrip(listen, common::payload(20_000, 9, true)),
    )
    .await;
    let _ = backend.kill();
    let _ = client.kill();
    let _ = backend.wait();
    let _ = client.wait();
    res.expect("no echo through relay-client -> relay -> relay-backend");
}
