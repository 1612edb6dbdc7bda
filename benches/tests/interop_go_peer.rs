//! The Go peer (`kcpbench-go`) against the benchmark contract: its server and its client jobs for
//! every transport, and crossed with kcpbench's own side (Rust client → Go server, Go client → Rust
//! server), which proves both speak the same protocol with the same KCP configuration.
//!
//! Needs Go and Debian's golang-github-xtaci-kcp-dev / golang-github-xtaci-smux-dev; run with
//! `cargo test -p kcpbench -- --ignored interop_`. They fail (not skip) when Go is missing.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use kcpbench::gopeer::{GoPeer, GoServer};
use serde_json::{Value, json};

/// Longest any single job may take here (loopback; generous for a loaded CI machine).
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

fn peer() -> GoPeer {
    GoPeer::locate_or_build_in(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .unwrap_or_else(|e| panic!("the Go peer is needed for this test: {e}"))
}

/// A blocking client of the control protocol (one JSON object per line).
struct Control {
    rd: BufReader<TcpStream>,
    wr: TcpStream,
    peer: SocketAddr,
}

impl Control {
    fn connect(addr: &str) -> Control {
        let s = TcpStream::connect(addr).expect("control connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let peer = s.peer_addr().unwrap();
        Control {
            rd: BufReader::new(s.try_clone().unwrap()),
            wr: s,
            peer,
        }
    }

    fn call(&mut self, req: &Value) -> Value {
        let mut line = req.to_string();
        line.push('\n');
        self.wr.write_all(line.as_bytes()).unwrap();
        let mut reply = String::new();
        assert!(self.rd.read_line(&mut reply).unwrap() > 0, "server hung up");
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("bad reply {reply:?}: {e}"))
    }

    /// Starts a data listener; returns the data address.
    fn listen(&mut self, config: &Value) -> String {
        let r = self.call(&json!({"cmd": "listen", "config": config}));
        assert_eq!(r["ok"], true, "listen {config} refused: {r}");
        let port = r["port"].as_u64().expect("listen reply has a port");
        assert!(port > 0 && port <= 65535, "port {port}");
        format!("{}:{port}", self.peer.ip())
    }

    /// (cpu_ns, rss_bytes, conns).
    fn stats(&mut self) -> (u64, u64, u64) {
        let r = self.call(&json!({"cmd": "stats"}));
        assert_eq!(r["ok"], true, "stats refused: {r}");
        let f = |k: &str| {
            r[k].as_u64()
                .unwrap_or_else(|| panic!("stats without {k}: {r}"))
        };
        (f("cpu_ns"), f("rss_bytes"), f("conns"))
    }
}

fn spawn(peer: &GoPeer) -> GoServer {
    peer.spawn_server("127.0.0.1:0")
        .expect("kcpbench-go serve starts")
}

async fn run(peer: &GoPeer, job: Value) -> Value {
    let v = peer
        .run_job(&job, JOB_TIMEOUT, || {})
        .await
        .unwrap_or_else(|e| panic!("job {job}: {e:#}"));
    assert_eq!(v["ok"], true, "job {job} failed: {v}");
    v
}

/// Sink 4 MiB, echo 1 MiB on 2 streams, 20 paced echoes: every figure the contract promises.
async fn bulk_and_latency(peer: &GoPeer, ctl: &mut Control, config: &Value) {
    let addr = ctl.listen(config);

    let v = run(
        peer,
        json!({"addr": addr, "config": config, "test": "sink", "bytes": 4 << 20}),
    )
    .await;
    assert_eq!(v["bytes"], 4u64 << 20, "{config}: {v}");
    assert!(v["secs"].as_f64().unwrap() > 0.0, "{config}: {v}");
    // The sender's RTT figures: KCP sessions only (GetSRTT), never negative.
    let kcp = config["transport"]
        .as_str()
        .is_some_and(|t| t.ends_with("kcp"));
    for k in ["rtt_min_ms", "queue_delay_ms"] {
        match v.get(k) {
            Some(x) => assert!(kcp && x.as_f64().unwrap() >= 0.0, "{config}: {v}"),
            None => assert!(!kcp || v.get("rtt_min_ms").is_none(), "{config}: {v}"),
        }
    }

    let v = run(
        peer,
        json!({"addr": addr, "config": config, "test": "echo", "bytes": 1 << 20, "streams": 2}),
    )
    .await;
    assert_eq!(v["bytes"], 2u64 << 20, "{config}: {v}");
    assert!(v["secs"].as_f64().unwrap() > 0.0, "{config}: {v}");

    let v = run(
        peer,
        json!({"addr": addr, "config": config, "test": "latency", "count": 20, "period_ms": 10, "size": 64}),
    )
    .await;
    let rtts = v["rtt_us"].as_array().expect("rtt_us");
    assert_eq!(rtts.len(), 20, "{config}: {v}");
    assert_eq!(v["lost"], 0, "{config}: {v}");
    assert!(
        rtts.iter().all(|r| r.as_u64().is_some_and(|r| r > 0)),
        "{v}"
    );
}

/// 20 sessions for 2 s at 1 Hz: all open at OPENED (the server counts them), every echo back.
async fn sessions(peer: &GoPeer, ctl: &mut Control, config: &Value) {
    let addr = ctl.listen(config);
    let (cpu0, rss0, conns0) = ctl.stats();
    assert_eq!(conns0, 0, "{config}: no data connection yet");
    assert!(rss0 > 0);
    let mut at_opened = None;
    let job = json!({"addr": addr, "config": config, "test": "sessions", "sessions": 20,
                     "secs": 2.0, "size": 16, "rate_hz": 1.0});
    let v = peer
        .run_job(&job, JOB_TIMEOUT, || at_opened = Some(ctl.stats()))
        .await
        .unwrap_or_else(|e| panic!("job {job}: {e:#}"));
    assert_eq!(v["ok"], true, "{config}: {v}");
    let (cpu1, _, conns1) = at_opened.expect("the sessions job said OPENED");
    assert_eq!(
        conns1, 20,
        "{config}: the server holds every session at OPENED"
    );
    assert!(cpu1 >= cpu0);
    assert_eq!(v["expected"], 40, "{config}: {v}");
    assert_eq!(v["echoed"], v["expected"], "{config}: {v}");
    assert!(v["secs"].as_f64().unwrap() >= 2.0, "{config}: {v}");
    assert!(v["open_secs"].as_f64().unwrap() > 0.0, "{config}: {v}");
}

fn configs() -> Vec<Value> {
    vec![
        json!({"transport": "kcp"}),
        json!({"transport": "smux-kcp"}),
        json!({"transport": "smux-kcp", "crypt": "aes", "datashard": 10, "parityshard": 3}),
        json!({"transport": "kcp", "mode": "normal", "crypt": "salsa20", "mtu": 1400, "smuxver": 1}),
        json!({"transport": "smux-kcp", "mode": "manual", "nodelay": 0, "interval": 20, "resend": 0,
               "nc": 0, "sndwnd": 128, "rcvwnd": 256, "smuxver": 1, "crypt": "xor",
               "datashard": 4, "parityshard": 2}),
        json!({"transport": "tcp"}),
        json!({"transport": "smux-tcp"}),
        json!({"transport": "smux-tcp", "smuxver": 1, "framesize": 4096}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_go_peer_bulk_and_latency_every_transport() {
    let peer = peer();
    let server = spawn(&peer);
    for config in configs() {
        let mut ctl = Control::connect(server.control_addr());
        bulk_and_latency(&peer, &mut ctl, &config).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_go_peer_sessions_every_transport() {
    let peer = peer();
    let server = spawn(&peer);
    for transport in ["kcp", "smux-kcp", "tcp", "smux-tcp"] {
        let mut ctl = Control::connect(server.control_addr());
        sessions(&peer, &mut ctl, &json!({"transport": transport})).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_go_peer_control_errors_and_teardown() {
    let peer = peer();
    let server = spawn(&peer);
    let mut ctl = Control::connect(server.control_addr());
    for bad in [
        json!({"cmd": "listen", "config": {"transport": "udp"}}),
        json!({"cmd": "listen", "config": {"transport": "kcp", "mode": "turbo"}}),
        json!({"cmd": "listen", "config": {"transport": "kcp", "crypt": "rot13"}}),
        json!({"cmd": "listen", "config": {"transport": "smux-kcp", "smuxver": 3}}),
        json!({"cmd": "dance"}),
    ] {
        let r = ctl.call(&bad);
        assert_eq!(r["ok"], false, "{bad} must be refused: {r}");
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    }
    // A job that cannot run still prints one result line, with ok false.
    let v = peer
        .run_job(
            &json!({"addr": "127.0.0.1:9", "config": {"transport": "kcp"}, "test": "fly"}),
            JOB_TIMEOUT,
            || {},
        )
        .await
        .unwrap();
    assert_eq!(v["ok"], false, "{v}");

    // Closing the control connection closes its data listener and connections.
    let addr = ctl.listen(&json!({"transport": "tcp"}));
    let data = TcpStream::connect(&addr).expect("the data listener is up");
    let ctl2 = Control::connect(server.control_addr());
    drop(ctl);
    data.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 1];
    match std::io::Read::read(&mut &data, &mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the accepted data connection must be closed, read gave {other:?}"),
    }
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(&addr).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        refused,
        "the data listener is closed with its control connection"
    );
    drop(ctl2);
}

/// The configurations crossed between the two implementations: plain KCP, and kcptun's usual
/// smux over KCP with aes and FEC 10/3.
fn cross_configs() -> [(Value, &'static [&'static str]); 2] {
    [
        (json!({"transport": "kcp"}), &["--transport", "kcp"]),
        (
            json!({"transport": "smux-kcp", "crypt": "aes", "datashard": 10, "parityshard": 3}),
            &["--transport", "smux-kcp", "--crypt", "aes", "--fec", "10/3"],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_cross_go_client_rust_server() {
    let peer = peer();
    let server =
        kcpbench::client::ServerProc::spawn(Path::new(env!("CARGO_BIN_EXE_kcpbench")), &[])
            .expect("kcpbench serve starts");
    for (config, _) in cross_configs() {
        let mut ctl = Control::connect(&server.addr);
        bulk_and_latency(&peer, &mut ctl, &config).await;
        let mut ctl = Control::connect(&server.addr);
        sessions(&peer, &mut ctl, &config).await;
    }
}

/// Runs a kcpbench client subcommand against `connect` and returns its report's rows.
fn kcpbench_rows(connect: &str, args: &[&str]) -> Vec<Value> {
    let json_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "interop-cross-{}-{}.json",
        std::process::id(),
        args.join("_").replace('/', "-")
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kcpbench"))
        .args(args)
        .args([
            "--connect",
            connect,
            "--go",
            "off",
            "--quiet",
            "--timeout",
            "60s",
        ])
        .arg("--json")
        .arg(&json_path)
        .output()
        .expect("kcpbench runs");
    assert!(
        out.status.success(),
        "kcpbench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap())
        .expect("kcpbench writes a JSON report");
    let _ = std::fs::remove_file(&json_path);
    let rows = report["rows"].as_array().expect("report rows").clone();
    assert!(!rows.is_empty(), "kcpbench {args:?} measured nothing");
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
async fn interop_cross_rust_client_go_server() {
    let peer = peer();
    let server = spawn(&peer);
    for (_, flags) in cross_configs() {
        let mut args = vec!["throughput", "--bytes", "4MiB", "--op", "oneway,echo"];
        args.extend_from_slice(flags);
        let rows = kcpbench_rows(server.control_addr(), &args);
        assert_eq!(rows.len(), 2, "{rows:?}");
        for r in &rows {
            let m = &r["result"];
            assert_eq!(m["kind"], "throughput", "{args:?}: {r}");
            assert_eq!(m["bytes"], 4u64 << 20, "{args:?}: {r}");
            assert!(m["secs"].as_f64().unwrap() > 0.0, "{r}");
        }

        let mut args = vec!["latency", "--count", "20", "--period", "10ms"];
        args.extend_from_slice(flags);
        let rows = kcpbench_rows(server.control_addr(), &args);
        assert_eq!(rows.len(), 1, "{rows:?}");
        let m = &rows[0]["result"];
        assert_eq!(m["kind"], "latency", "{args:?}: {m}");
        assert_eq!(m["rtt_us"].as_array().map(Vec::len), Some(20), "{m}");
        assert_eq!(m["lost"], 0, "{m}");

        let mut args = vec!["sessions", "--sessions", "20", "--secs", "2"];
        args.extend_from_slice(flags);
        let rows = kcpbench_rows(server.control_addr(), &args);
        assert_eq!(rows.len(), 1, "{rows:?}");
        let m = &rows[0]["result"];
        assert_eq!(m["kind"], "sessions", "{args:?}: {m}");
        assert_eq!(m["sessions"], 20, "{m}");
        assert_eq!(m["expected"], 40, "{m}");
        assert_eq!(m["echoed"], m["expected"], "{m}");
        assert!(m["server_rss_after"].as_u64().unwrap() > 0, "{m}");
    }
}
