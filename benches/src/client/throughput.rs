//! `kcpbench throughput`: bulk one-way (op `S`) and echo (op `E`) over N streams, every configuration of
//! the run measured back to back so the ratios hold on a noisy machine.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use indicatif::ProgressBar;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BoxIo, CHUNK, ClientOpts, Dialer, close_mux, guarded, push_row, rust_impl};
use crate::config::BenchConfig;
use crate::proto::{self, Control, Op, Pattern};
use crate::results::{Measurement, Report};

/// What to measure: every config × every stream count × every op.
#[derive(Clone, Debug)]
pub struct ThroughputPlan {
    /// The configurations (see [`super::expand_configs`]).
    pub configs: Vec<BenchConfig>,
    /// Payload bytes per row, split evenly over the streams.
    pub bytes: u64,
    /// Stream counts.
    pub streams: Vec<u32>,
    /// One-way and/or echo.
    pub ops: Vec<Op>,
}

/// The scenario name shared by the rows compared side by side.
pub fn group_name(op: Op, bytes: u64, streams: u32) -> String {
    let what = match op {
        Op::Sink => "one-way",
        Op::Echo => "echo",
    };
    let s = if streams == 1 { "" } else { "s" };
    format!("{what} {}, {streams} stream{s}", human_bytes(bytes))
}

/// `256 MiB`, `1.5 MiB`, `100 B`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (u, n) in UNITS {
        if b >= n {
            return if b.is_multiple_of(n) {
                format!("{} {u}", b / n)
            } else {
                format!("{:.1} {u}", b as f64 / n as f64)
            };
        }
    }
    format!("{b} B")
}

/// Runs the plan, appending one row per (shape, config, implementation).
///
/// # Errors
/// Never for a failing row (that is a [`Measurement::Failed`]); only if the plan is empty.
pub async fn run(
    opts: &ClientOpts,
    plan: &ThroughputPlan,
    report: &mut Report,
) -> anyhow::Result<()> {
    ensure!(
        !plan.configs.is_empty() && !plan.streams.is_empty() && !plan.ops.is_empty(),
        "nothing to measure"
    );
    for &op in &plan.ops {
        for &streams in &plan.streams {
            let streams = streams.max(1);
            let group = group_name(op, plan.bytes, streams);
            eprintln!("{group}");
            for cfg in &plan.configs {
                let label = cfg.label();
                let pb = super::bar(opts, plan.bytes, &format!("{label} ({group})"), true);
                let m = guarded(
                    opts.timeout,
                    rust_row(&opts.connect, cfg, op, plan.bytes, streams, &pb),
                )
                .await;
                pb.finish_and_clear();
                push_row(report, &group, &label, rust_impl(cfg), m);
                super::push_go_row(
                    opts,
                    report,
                    &group,
                    &label,
                    cfg,
                    &format!("kcp-go {label} ({group})"),
                    opts.timeout,
                    opts.go.bulk_row(cfg, op, plan.bytes, streams, opts.timeout),
                )
                .await;
            }
        }
    }
    Ok(())
}

/// One Rust row: listener, streams, transfer, verification.
async fn rust_row(
    control: &str,
    cfg: &BenchConfig,
    op: Op,
    bytes: u64,
    streams: u32,
    pb: &ProgressBar,
) -> anyhow::Result<Measurement> {
    let mut ctl = Control::connect(control).await?;
    let addr = ctl.listen(cfg).await?;
    let dialer = Dialer::new(addr, cfg)?;
    let opened = dialer.open(streams as usize).await?;
    let n = opened.streams.len() as u64;
    let pattern = Arc::new(Pattern::new(CHUNK));
    // Every KCP session of this process is the dialer's (rows run one at a time).
    let kcp = cfg.transport.is_kcp();
    let wire_before = rkcp_session::global_snmp().out_bytes;
    let sampler = super::RttSampler::start(opened.probes);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, s) in opened.streams.into_iter().enumerate() {
        // Spread the remainder so the total is exactly `bytes`.
        let share = bytes / n + u64::from((i as u64) < bytes % n);
        let pattern = Arc::clone(&pattern);
        let pb = pb.clone();
        tasks.push(tokio::spawn(async move {
            match op {
                Op::Sink => sink_stream(s, share, &pattern, &pb).await,
                Op::Echo => echo_stream(s, share, pattern, &pb).await,
            }
        }));
    }
    for t in tasks {
        t.await.context("stream task panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    let wire_bytes = kcp.then(|| rkcp_session::global_snmp().out_bytes - wire_before);
    let rtt = sampler.finish();
    close_mux(opened.mux).await;
    drop(ctl);
    Ok(Measurement::Throughput {
        bytes,
        secs,
        streams,
        wire_bytes,
        rtt_min_ms: rtt.map(|r| r.min_us / 1000.0),
        queue_delay_ms: rtt.map(|r| r.queue_delay_ms()),
    })
}

/// Op `S`: write `len` bytes, then wait for the sink's count and compare.
async fn sink_stream(
    mut s: BoxIo,
    len: u64,
    pattern: &Pattern,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    s.write_all(&proto::header(Op::Sink, len)).await?;
    let mut off = 0u64;
    while off < len {
        let n = CHUNK.min(usize::try_from(len - off).unwrap_or(CHUNK));
        s.write_all(pattern.slice(off, n)).await?;
        off += n as u64;
        pb.inc(n as u64);
    }
    s.flush().await?;
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack)
        .await
        .context("reading the sink's count")?;
    let got = u64::from_le_bytes(ack);
    ensure!(got == len, "the sink counted {got} bytes, {len} were sent");
    let _ = s.shutdown().await;
    Ok(())
}

/// Op `E`: write `len` bytes while reading them back, checking every byte.
async fn echo_stream(
    s: BoxIo,
    len: u64,
    pattern: Arc<Pattern>,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let (mut rd, mut wr) = tokio::io::split(s);
    let p = Arc::clone(&pattern);
    let writer = tokio::spawn(async move {
        wr.write_all(&proto::header(Op::Echo, 0)).await?;
        let mut off = 0u64;
        while off < len {
            let n = CHUNK.min(usize::try_from(len - off).unwrap_or(CHUNK));
            wr.write_all(p.slice(off, n)).await?;
            off += n as u64;
        }
        wr.flush().await?;
        anyhow::Ok(wr)
    });
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while got < len {
        let want = CHUNK.min(usize::try_from(len - got).unwrap_or(CHUNK));
        let n = rd.read(&mut buf[..want]).await?;
        ensure!(n > 0, "echo ended after {got} of {len} bytes");
        ensure!(
            pattern.check(got, &buf[..n]),
            "echoed bytes differ from those sent near offset {got}"
        );
        got += n as u64;
        pb.inc(n as u64);
    }
    let mut wr = writer.await.context("writer panicked")??;
    let _ = wr.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(human_bytes(256 << 20), "256 MiB");
        assert_eq!(human_bytes(1536 << 10), "1.5 MiB");
        assert_eq!(human_bytes(100), "100 B");
        assert_eq!(group_name(Op::Sink, 1 << 20, 1), "one-way 1 MiB, 1 stream");
        assert_eq!(group_name(Op::Echo, 1 << 20, 8), "echo 1 MiB, 8 streams");
    }
}
