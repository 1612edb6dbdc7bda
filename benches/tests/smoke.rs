//! Smoke tests of kcpbench: a server in process, every client subcommand with tiny sizes over every
//! transport, and the built binary end to end with `--json`. No timing assertions: only that every row
//! measured what was asked and the data checked out.

use std::time::Duration;

use kcpbench::client::{
    self, ClientOpts, GoColumn, latency, latency::LatencyPlan, sessions, sessions::SessionsPlan,
    throughput, throughput::ThroughputPlan,
};
use kcpbench::config::{BenchConfig, FecSpec, Mode, Transport};
use kcpbench::proto::{self, Control, Op};
use kcpbench::results::{Implementation, Measurement, Report};
use kcpbench::serve::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts a server in this runtime; returns its control address.
async fn server() -> String {
    let s = Server::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap().to_string();
    tokio::spawn(s.run());
    addr
}

fn opts(connect: String) -> ClientOpts {
    ClientOpts {
        connect,
        go: GoColumn::Off,
        timeout: Duration::from_secs(60),
        progress: false,
    }
}

fn all_configs() -> Vec<BenchConfig> {
    client::expand_configs(
        &BenchConfig::default(),
        &Transport::ALL,
        &[Mode::Fast3],
        &["none".into(), "aes".into()],
        &[FecSpec::fixed(0, 0), FecSpec::fixed(10, 3)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_rows_over_every_transport() {
    let addr = server().await;
    let bytes = 300_001; // not a multiple of the stream count nor of the chunk size
    let plan = ThroughputPlan {
        configs: all_configs(),
        bytes,
        streams: vec![1, 3],
        ops: vec![Op::Sink, Op::Echo],
    };
    let mut report = Report::default();
    throughput::run(&opts(addr), &plan, &mut report)
        .await
        .unwrap();
    // (4 KCP configs × 2 KCP transports + 2 TCP transports) × 2 stream counts × 2 ops.
    assert_eq!(report.rows.len(), 10 * 2 * 2);
    for r in &report.rows {
        let tcp = r.label.starts_with("tcp") || r.label.contains("/tcp");
        match &r.result {
            Measurement::Throughput {
                bytes: b,
                secs,
                streams,
                wire_bytes,
                ..
            } => {
                assert_eq!(*b, bytes, "{}", r.label);
                // KCP rows count what the client put on the wire: the payload and its headers.
                match wire_bytes {
                    Some(w) => assert!(!tcp && *w > bytes, "{}: {w} wire bytes", r.label),
                    None => assert!(tcp, "{}: no wire count", r.label),
                }
                assert!(*secs > 0.0);
                assert!(
                    r.group.contains(&format!("{streams} stream")),
                    "{}",
                    r.group
                );
            }
            m => panic!("{} {}: {m:?}", r.group, r.label),
        }
        let want = if tcp {
            Implementation::Tcp
        } else {
            Implementation::Rkcp
        };
        assert_eq!(r.implementation, want, "{}", r.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_rows_count_every_message() {
    let addr = server().await;
    let configs = client::expand_configs(
        &BenchConfig::default(),
        &Transport::ALL,
        &[Mode::Fast3],
        &["none".into()],
        &[FecSpec::fixed(0, 0)],
    );
    let plan = LatencyPlan {
        configs,
        size: 64,
        period: Duration::from_millis(5),
        count: 20,
    };
    let mut report = Report::default();
    latency::run(&opts(addr), &plan, &mut report).await.unwrap();
    assert_eq!(report.rows.len(), 4);
    for r in &report.rows {
        match &r.result {
            Measurement::Latency { rtt_us, lost, .. } => {
                assert_eq!(rtt_us.len(), 20, "{}", r.label);
                assert_eq!(*lost, 0);
                assert!(rtt_us.iter().all(|&t| t > 0));
            }
            m => panic!("{}: {m:?}", r.label),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_rows_echo_everything() {
    let addr = server().await;
    let base = BenchConfig {
        mode: Mode::Fast,
        ..BenchConfig::default()
    };
    let plan = SessionsPlan {
        configs: client::expand_configs(
            &base,
            &[Transport::Kcp, Transport::SmuxKcp, Transport::Tcp],
            &[Mode::Fast],
            &["none".into()],
            &[FecSpec::fixed(0, 0)],
        ),
        sessions: 20,
        go_sessions: 20,
        secs: 2.0,
        size: 16,
        rate: 2.0,
    };
    let mut report = Report::default();
    sessions::run(&opts(addr), &plan, &mut report)
        .await
        .unwrap();
    assert_eq!(report.rows.len(), 3);
    for r in &report.rows {
        match &r.result {
            Measurement::Sessions {
                sessions,
                secs,
                server_cpu_secs,
                server_rss_before,
                server_rss_after,
                echoed,
                expected,
            } => {
                assert_eq!(*sessions, 20);
                assert!(*secs > 1.0 && *secs < 10.0);
                assert!(*server_cpu_secs >= 0.0);
                assert!(*server_rss_before > 0 && *server_rss_after > 0);
                // 20 sessions × 2/s × 2 s, give or take the last tick.
                assert!((70..=80).contains(expected), "{expected}");
                assert_eq!(echoed, expected, "{}", r.label);
            }
            m => panic!("{}: {m:?}", r.label),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_protocol_and_failures() {
    let addr = server().await;
    let mut ctl = Control::connect(&addr).await.unwrap();
    // A config the server refuses comes back as an error, and the connection stays usable.
    let bad = BenchConfig {
        mtu: 9000,
        ..BenchConfig::default()
    };
    assert!(ctl.listen(&bad).await.is_err());
    let data = ctl
        .listen(&BenchConfig {
            transport: Transport::Tcp,
            ..BenchConfig::default()
        })
        .await
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(data).await.unwrap();
    s.write_all(&proto::header(Op::Sink, 5)).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack).await.unwrap();
    assert_eq!(u64::from_le_bytes(ack), 5);
    let st = ctl.stats().await.unwrap();
    assert_eq!(st.conns, 1);
    assert!(st.cpu_ns > 0 && st.rss_bytes > 0);
    // Closing the control connection closes the data connection.
    drop(ctl);
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut ack))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    // A server that is not there: every row fails, quickly, without hanging.
    let plan = ThroughputPlan {
        configs: vec![BenchConfig::default()],
        bytes: 1000,
        streams: vec![1],
        ops: vec![Op::Sink],
    };
    let mut report = Report::default();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    throughput::run(&opts(dead_addr), &plan, &mut report)
        .await
        .unwrap();
    assert!(matches!(report.rows[0].result, Measurement::Failed { .. }));
}

#[test]
fn cli_throughput_writes_a_json_report() {
    let dir = std::env::temp_dir().join(format!("kcpbench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kcpbench"))
        .args([
            "throughput",
            "--bytes",
            "1MiB",
            "--go",
            "off",
            "--quiet",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report.command.contains("throughput"));
    assert_eq!(report.rows.len(), 4, "one row per transport");
    for r in &report.rows {
        assert!(
            matches!(r.result, Measurement::Throughput { bytes, .. } if bytes == 1 << 20),
            "{}: {:?}",
            r.label,
            r.result
        );
    }
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("smux/kcp fast3"), "{table}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_congestion_control_reaches_the_socket() {
    let addr = server().await;
    let cfg = BenchConfig {
        transport: Transport::Tcp,
        tcpcc: "reno".into(),
        ..BenchConfig::default()
    };
    assert_eq!(cfg.label(), "tcp reno");
    let mut ctl = Control::connect(&addr).await.unwrap();
    let data = ctl.listen(&cfg).await.unwrap();
    let opened = client::Dialer::new(data, &cfg)
        .unwrap()
        .open(2)
        .await
        .unwrap();
    assert_eq!(opened.probes.len(), 2);
    for p in &opened.probes {
        assert_eq!(p.tcp_congestion().as_deref(), Some("reno"));
    }
    // An algorithm the kernel does not have: the server refuses the listener with the reason.
    let bad = BenchConfig {
        tcpcc: "nosuchcc".into(),
        ..cfg.clone()
    };
    let e = format!("{:#}", ctl.listen(&bad).await.unwrap_err());
    assert!(
        e.contains("nosuchcc") && e.contains("available here"),
        "{e}"
    );
    // And a throughput row over it measures the queue delay from TCP_INFO.
    let plan = ThroughputPlan {
        configs: client::expand_tcp_cc(vec![BenchConfig::default(), cfg], &["reno".into()]),
        bytes: 1 << 20,
        streams: vec![1],
        ops: vec![Op::Sink],
    };
    let mut report = Report::default();
    throughput::run(&opts(addr), &plan, &mut report)
        .await
        .unwrap();
    let labels: Vec<&str> = report.rows.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["kcp fast3", "tcp reno"]);
    // KCP's srtt is whole milliseconds, 0 on loopback (no sample yet, as far as the engine says):
    // only the TCP row is sure to carry the figures here.
    for r in report.rows.iter().filter(|r| r.label.starts_with("tcp")) {
        match r.result {
            Measurement::Throughput {
                rtt_min_ms: Some(min),
                queue_delay_ms: Some(q),
                ..
            } => assert!(min >= 0.0 && q >= 0.0, "{}: {min} {q}", r.label),
            ref m => panic!("{}: no RTT figures in {m:?}", r.label),
        }
    }
}

#[test]
fn cli_tcp_cc_rows_and_errors() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kcpbench"))
        .args([
            "throughput",
            "--bytes",
            "256KiB",
            "--go",
            "off",
            "--quiet",
            "--transport",
            "tcp,smux-tcp",
            "--tcp-cc",
            "reno",
            "--scenario",
            "lo",
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains("== lo: one-way 256 KiB, 1 stream =="),
        "{table}"
    );
    assert!(
        table.contains("tcp reno") && table.contains("smux v2/tcp reno"),
        "{table}"
    );
    assert!(table.contains("queue delay ms"), "{table}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kcpbench"))
        .args([
            "throughput",
            "--bytes",
            "1KiB",
            "--go",
            "off",
            "--quiet",
            "--transport",
            "tcp",
            "--tcp-cc",
            "reno,nosuchcc",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--tcp-cc") && err.contains("\"nosuchcc\""),
        "{err}"
    );
}

/// `kcpbench serve --threads N` runs the server on the runtime asked for: no worker threads with 1 (a
/// current-thread runtime), N workers otherwise (what `--server-threads` passes to the server kcpbench
/// starts).
#[test]
fn serve_threads_picks_the_runtime() {
    use std::io::BufRead;
    for (threads, workers) in [(1, 0), (3, 3)] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kcpbench"))
            .args(["serve", "--listen", "127.0.0.1:0", "--stdin-lifetime"])
            .args(["--threads", &threads.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("READY "), "{line}");
        let tasks = format!("/proc/{}/task", child.id());
        let count = || {
            std::fs::read_dir(&tasks)
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                // tokio's worker threads: "tokio-rt-worker" (older releases: "tokio-runtime-worker").
                .filter(|comm| {
                    comm.starts_with("tokio-rt-worker") || comm.starts_with("tokio-runtime-w")
                })
                .count()
        };
        // Worker threads start (and take their names) a moment after the runtime is built: watch for a
        // while, until the count asked for shows up, and never more.
        let mut named_workers = 0;
        for _ in 0..100 {
            named_workers = count();
            if named_workers > workers || (workers > 0 && named_workers == workers) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(named_workers, workers, "--threads {threads}");
    }
}
