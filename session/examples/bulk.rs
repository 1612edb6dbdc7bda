//! One-way bulk throughput over one KCP session on loopback, plain and with aes + FEC 10/3, and the same with
//! kcp-go (the Go peer in interop/go/kcppeer) when `go` is installed. A last row runs one smux v1 stream
//! (kcptun's smuxbuf 4 MiB) over the aes + FEC session, so the cost of the mux shows in the same run.
//!
//! `cargo run --release -p rkcp-session --example bulk [MiB]`

use std::time::Instant;

use rkcp_session::{CipherKind, KcpConfig, KcpListener, KcpStream, PacketCrypt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(crypt_fec: bool) -> KcpConfig {
    let wnd: u32 = std::env::var("BULK_WND")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let ack_nodelay = std::env::var_os("BULK_ACKNODELAY").is_some();
    let mut cfg = KcpConfig::fast3().with_window(wnd, wnd).with_mtu(1400);
    cfg.kcp.ack_nodelay = ack_nodelay;
    if crypt_fec {
        cfg.with_crypt(PacketCrypt::from_passphrase(CipherKind::Aes, "bench"))
            .with_fec(10, 3)
    } else {
        cfg
    }
}

async fn rust_bulk(cfg: KcpConfig, total: usize) -> anyhow::Result<f64> {
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await?;
    let addr = listener.local_addr().unwrap();
    let sink = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0usize;
        while got < total {
            got += s.read(&mut buf).await?;
        }
        s.write_all(&(got as u64).to_le_bytes()).await?;
        s.shutdown().await?;
        anyhow::Ok(())
    });
    let mut c = KcpStream::connect(addr, cfg).await?;
    let chunk = vec![0x5au8; 1 << 16];
    let start = Instant::now();
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        c.write_all(&chunk[..n]).await?;
        sent += n;
    }
    let mut ack = [0u8; 8];
    c.read_exact(&mut ack).await?;
    let secs = start.elapsed().as_secs_f64();
    if std::env::var_os("BULK_STATS").is_some() {
        eprintln!("sender: {}", c.snmp());
    }
    sink.await??;
    anyhow::ensure!(
        u64::from_le_bytes(ack) == total as u64,
        "sink got a different byte count"
    );
    Ok(total as f64 / secs / 1e6)
}

/// The same transfer through one smux stream over the KCP session (kcptun's stack: smux v1, 4 MiB smuxbuf).
async fn smux_bulk(cfg: KcpConfig, total: usize) -> anyhow::Result<f64> {
    let mut smux_cfg = rkcp_smux::Config::default();
    smux_cfg.max_receive_buffer = 4 << 20;
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await?;
    let addr = listener.local_addr().unwrap();
    let scfg = smux_cfg.clone();
    let sink = tokio::spawn(async move {
        let (kcp, _) = listener.accept().await?;
        let mux = rkcp_smux::Session::server(kcp, scfg)?;
        let mut s = mux.accept_stream().await?;
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0usize;
        while got < total {
            let n = s.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "stream ended early");
            got += n;
        }
        s.write_all(&(got as u64).to_le_bytes()).await?;
        s.flush().await?;
        anyhow::Ok((mux, listener))
    });
    let kcp = KcpStream::connect(addr, cfg).await?;
    let mux = rkcp_smux::Session::client(kcp, smux_cfg)?;
    let mut c = mux.open_stream().await?;
    let chunk = vec![0x5au8; 1 << 16];
    let start = Instant::now();
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        c.write_all(&chunk[..n]).await?;
        sent += n;
    }
    let mut ack = [0u8; 8];
    c.read_exact(&mut ack).await?;
    let secs = start.elapsed().as_secs_f64();
    let (server_mux, _listener) = sink.await??;
    anyhow::ensure!(
        u64::from_le_bytes(ack) == total as u64,
        "sink got a different byte count"
    );
    let _ = mux.close().await;
    let _ = server_mux.close().await;
    Ok(total as f64 / secs / 1e6)
}

fn go_bulk(crypt_fec: bool, total: usize) -> anyhow::Result<f64> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let bin = std::env::temp_dir().join("kcppeer-bench");
    let ok = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg("./interop/go/kcppeer/main.go")
        .current_dir(root)
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .status()?
        .success();
    anyhow::ensure!(ok, "go build failed");
    let (crypt, ds, ps) = if crypt_fec {
        ("aes", 10, 3)
    } else {
        ("plain", 0, 0)
    };
    let common = |role: &str, addr: &str| {
        vec![
            format!("-role={role}"),
            format!("-addr={addr}"),
            format!("-crypt={crypt}"),
            "-key=bench".into(),
            format!("-ds={ds}"),
            format!("-ps={ps}"),
            format!("-bytes={total}"),
            "-mtu=1400".into(),
        ]
    };
    let mut sink = Command::new(&bin)
        .args(common("sink", "127.0.0.1:0"))
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(sink.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line)?;
    let addr = line.trim().trim_start_matches("READY ").to_string();
    let src = Command::new(&bin).args(common("source", &addr)).output()?;
    let _ = sink.kill();
    let _ = sink.wait();
    let text = String::from_utf8_lossy(&src.stdout);
    let mbps = text
        .split_whitespace()
        .rev()
        .nth(1)
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("unexpected Go output {text:?}"))?;
    Ok(mbps)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let total = mib << 20;
    let wnd = std::env::var("BULK_WND").unwrap_or_else(|_| "1024".into());
    println!(
        "one-way bulk over one KCP session on 127.0.0.1, {mib} MiB, fast3, wnd {wnd} (kcp-go 1024), mtu 1400"
    );
    for (label, cf) in [("plain", false), ("aes + FEC 10/3", true)] {
        let r = rust_bulk(config(cf), total).await?;
        let g = if std::env::var_os("BULK_NO_GO").is_some() {
            "skipped".to_string()
        } else {
            match go_bulk(cf, total) {
                Ok(v) => format!("{v:.1} MB/s"),
                Err(e) => format!("n/a ({e})"),
            }
        };
        println!("{label:16} rust {r:7.1} MB/s    kcp-go {g}");
    }
    let r = smux_bulk(config(true), total).await?;
    println!("{:16} rust {r:7.1} MB/s", "aes+FEC + smux");
    Ok(())
}
