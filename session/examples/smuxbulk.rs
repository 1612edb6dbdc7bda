//! One-way bulk through one smux v2 stream over one KCP session on loopback, with the sink in a separate
//! process: kcptun's stack (fast3, wnd 1024, smuxbuf 4 MiB, streambuf 2 MiB, frame 32768, 4 MiB socket
//! buffers). This is the scenario of the performance targets in issue 7.
//!
//! ```text
//! cargo run --release -p rkcp-session --example smuxbulk -- [--cf] [--mtu 1350] [--mib 256] [--wnd 1024]
//!     # spawns itself as the sink (--serve) and prints the client's MB/s
//! cargo run --release -p rkcp-session --example smuxbulk -- --serve 127.0.0.1:0 [--cf] [--mtu N]
//! cargo run --release -p rkcp-session --example smuxbulk -- --connect ADDR [--cf] [--mtu N] [--mib N]
//! ```
//! `--cf` adds aes (passphrase "bench") and FEC 10/3. `SMUXBULK_STATS=1` prints both ends' SNMP counters.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use rkcp_session::{CipherKind, KcpConfig, KcpListener, KcpStream, PacketCrypt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args {
    serve: Option<String>,
    connect: Option<String>,
    cf: bool,
    mtu: usize,
    mib: u64,
    wnd: u32,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        serve: None,
        connect: None,
        cf: false,
        mtu: 1350,
        mib: 256,
        wnd: 1024,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{k} needs a value"))
        };
        match k.as_str() {
            "--serve" => a.serve = Some(val()?),
            "--connect" => a.connect = Some(val()?),
            "--cf" => a.cf = true,
            "--mtu" => a.mtu = val()?.parse()?,
            "--mib" => a.mib = val()?.parse()?,
            "--wnd" => a.wnd = val()?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn kcp_config(a: &Args) -> KcpConfig {
    let cfg = KcpConfig::fast3().with_mtu(a.mtu).with_window(a.wnd, a.wnd);
    if a.cf {
        cfg.with_crypt(PacketCrypt::from_passphrase(CipherKind::Aes, "bench"))
            .with_fec(10, 3)
    } else {
        cfg
    }
}

fn smux_config() -> rkcp_smux::Config {
    let mut c = rkcp_smux::Config::default();
    c.version = rkcp_smux::Version::V2;
    c.max_receive_buffer = 4 << 20;
    c.max_stream_buffer = 2 << 20;
    c.max_frame_size = 32768;
    c
}

/// Sink: accepts sessions forever; each stream is read to the end of `mib` MiB and answered with the count.
async fn serve(a: &Args, addr: &str) -> anyhow::Result<()> {
    let listener = KcpListener::bind(addr, kcp_config(a)).await?;
    println!("READY {}", listener.local_addr().unwrap());
    let total = a.mib << 20;
    loop {
        let (kcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mux = rkcp_smux::Session::server(kcp, smux_config())?;
            while let Ok(mut s) = mux.accept_stream().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 << 16];
                    let mut got = 0u64;
                    while got < total {
                        let n = s.read(&mut buf).await?;
                        anyhow::ensure!(n > 0, "stream ended early");
                        got += n as u64;
                    }
                    s.write_all(&got.to_le_bytes()).await?;
                    s.flush().await?;
                    if std::env::var_os("SMUXBULK_STATS").is_some() {
                        eprintln!("sink: {}", rkcp_session::global_snmp());
                    }
                    // Keep the stream until the client has read the answer and closes.
                    let _ = s.read(&mut buf).await;
                    anyhow::Ok(())
                });
            }
            anyhow::Ok(())
        });
    }
}

async fn client(a: &Args, addr: &str) -> anyhow::Result<f64> {
    let total = a.mib << 20;
    let kcp = KcpStream::connect(addr, kcp_config(a)).await?;
    let mux = rkcp_smux::Session::client(kcp, smux_config())?;
    let mut c = mux.open_stream().await?;
    let chunk = vec![0x5au8; 1 << 16];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let n = (chunk.len() as u64).min(total - sent) as usize;
        c.write_all(&chunk[..n]).await?;
        sent += n as u64;
    }
    let mut ack = [0u8; 8];
    c.read_exact(&mut ack).await?;
    let secs = start.elapsed().as_secs_f64();
    if std::env::var_os("SMUXBULK_STATS").is_some() {
        eprintln!("source: {}", rkcp_session::global_snmp());
    }
    anyhow::ensure!(
        u64::from_le_bytes(ack) == total,
        "sink got a different byte count"
    );
    let _ = mux.close().await;
    Ok(total as f64 / secs / 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    if let Some(addr) = a.serve.clone() {
        return serve(&a, &addr).await;
    }
    if let Some(addr) = a.connect.clone() {
        let r = client(&a, &addr).await?;
        println!("RESULT {r:.1} MB/s");
        return Ok(());
    }
    // Self-driving: the sink is this program in another process.
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["--serve", "127.0.0.1:0", "--mtu", &a.mtu.to_string()])
        .args(["--mib", &a.mib.to_string(), "--wnd", &a.wnd.to_string()]);
    if a.cf {
        cmd.arg("--cf");
    }
    let mut sink = cmd.stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(sink.stdout.take().expect("piped")).read_line(&mut line)?;
    let addr = line.trim().trim_start_matches("READY ").to_string();
    let r = client(&a, &addr).await;
    let _ = sink.kill();
    let _ = sink.wait();
    let r = r?;
    println!(
        "smux v2 over KCP, {} MiB, fast3, wnd 1024, mtu {}, {}: {r:.1} MB/s",
        a.mib,
        a.mtu,
        if a.cf { "aes + FEC 10/3" } else { "plain" }
    );
    Ok(())
}
