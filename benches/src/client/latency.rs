//! `kcpbench latency`: paced messages on one stream, echoed; one round-trip time per message.
//!
//! The writer sends message `i` at `start + i × period` whatever happened to earlier messages (a separate
//! reader task collects the echoes), so a retransmission delay shows as the latency it causes and is not
//! hidden by the sender waiting. Each message carries its index in its first 8 bytes; the send time stays
//! local.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use indicatif::ProgressBar;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::MissedTickBehavior;

use super::{ClientOpts, Dialer, close_mux, guarded, push_row, rust_impl};
use crate::config::BenchConfig;
use crate::proto::{self, Control, Op, pattern_byte};
use crate::results::{Measurement, Report};

/// What to measure: every config, one paced stream each.
#[derive(Clone, Debug)]
pub struct LatencyPlan {
    /// The configurations.
    pub configs: Vec<BenchConfig>,
    /// Message size in bytes (at least 8: the index).
    pub size: u32,
    /// Time between two sends.
    pub period: Duration,
    /// Messages per row.
    pub count: u32,
}

/// The scenario name: `echo 64 B every 20 ms × 500`.
pub fn group_name(size: u32, period: Duration, count: u32) -> String {
    format!(
        "echo {size} B every {} ms × {count}",
        period.as_secs_f64() * 1e3
    )
}

/// Runs the plan, appending one row per (config, implementation).
///
/// # Errors
/// An invalid plan (message smaller than its index); failing rows are [`Measurement::Failed`].
pub async fn run(opts: &ClientOpts, plan: &LatencyPlan, report: &mut Report) -> anyhow::Result<()> {
    ensure!(
        plan.size >= 8,
        "--size must be at least 8 (the message index)"
    );
    ensure!(
        !plan.configs.is_empty() && plan.count > 0,
        "nothing to measure"
    );
    let group = group_name(plan.size, plan.period, plan.count);
    eprintln!("{group}");
    // The run itself lasts count × period; the timeout covers what comes after.
    let timeout = opts.timeout + plan.period * plan.count;
    for cfg in &plan.configs {
        let label = cfg.label();
        let pb = super::bar(opts, u64::from(plan.count), &label, false);
        let m = guarded(
            timeout,
            rust_row(&opts.connect, cfg, plan, opts.timeout, &pb),
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
            &format!("kcp-go {label}"),
            timeout,
            opts.go
                .latency_row(cfg, plan.size, plan.period, plan.count, timeout),
        )
        .await;
    }
    Ok(())
}

/// One Rust row.
async fn rust_row(
    control: &str,
    cfg: &BenchConfig,
    plan: &LatencyPlan,
    grace: Duration,
    pb: &ProgressBar,
) -> anyhow::Result<Measurement> {
    let mut ctl = Control::connect(control).await?;
    let addr = ctl.listen(cfg).await?;
    let mut opened = Dialer::new(addr, cfg)?.open(1).await?;
    let s = opened.streams.pop().context("no stream")?;
    let (mut rd, mut wr) = tokio::io::split(s);
    wr.write_all(&proto::header(Op::Echo, 0)).await?;
    wr.flush().await?;

    let count = plan.count as usize;
    let size = plan.size as usize;
    let kcp = cfg.transport.is_kcp();
    let wire_before = rkcp_session::global_snmp().out_bytes;
    let t0 = Instant::now();
    // ns since t0 + 1 at send (0 = not sent yet); below, RTT in µs (at least 1) at receipt (0 = not back).
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let period = plan.period;
    let sent_w = Arc::clone(&sent);
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::from_std(t0), period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut msg = vec![0u8; size];
        for (i, slot) in sent_w.iter().enumerate() {
            tick.tick().await;
            fill_message(&mut msg, i as u64);
            slot.store(t0.elapsed().as_nanos() as u64 + 1, Ordering::Release);
            wr.write_all(&msg).await?;
        }
        wr.flush().await?;
        anyhow::Ok(wr)
    });

    let rtts: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let (sent_r, rtts_r, pb_r) = (Arc::clone(&sent), Arc::clone(&rtts), pb.clone());
    let reader = tokio::spawn(async move {
        let mut msg = vec![0u8; size];
        let mut expect = vec![0u8; size];
        for _ in 0..count {
            rd.read_exact(&mut msg).await.context("reading an echo")?;
            let now = t0.elapsed().as_nanos() as u64 + 1;
            let mut idx = [0u8; 8];
            idx.copy_from_slice(&msg[..8]);
            let i = u64::from_le_bytes(idx);
            let slot = usize::try_from(i)
                .ok()
                .filter(|&i| i < count)
                .with_context(|| format!("echo carries index {i}, beyond {count}"))?;
            fill_message(&mut expect, i);
            ensure!(
                msg == expect,
                "echo of message {slot} differs from what was sent"
            );
            let at = sent_r[slot].load(Ordering::Acquire);
            ensure!(at != 0, "message {slot} echoed before it was sent");
            let rtt = (now.saturating_sub(at) / 1000).max(1);
            ensure!(
                rtts_r[slot].swap(rtt, Ordering::Relaxed) == 0,
                "message {slot} echoed twice"
            );
            pb_r.inc(1);
        }
        anyhow::Ok(())
    });

    let mut wr = writer.await.context("writer panicked")??;
    // Everything is sent; echoes still missing after `grace` count as lost.
    let reader_abort = reader.abort_handle();
    if let Ok(r) = tokio::time::timeout(grace, reader).await {
        r.context("reader panicked")??;
    } else {
        reader_abort.abort();
    }
    let rtt_us: Vec<u64> = rtts
        .iter()
        .map(|r| r.load(Ordering::Relaxed))
        .filter(|&r| r > 0)
        .collect();
    let lost = (count - rtt_us.len()) as u64;
    let _ = wr.shutdown().await;
    close_mux(opened.mux).await;
    drop(ctl);
    let wire_bytes = kcp.then(|| rkcp_session::global_snmp().out_bytes - wire_before);
    Ok(Measurement::Latency {
        rtt_us,
        lost,
        wire_bytes,
    })
}

/// Message `i`: its index, then pattern bytes that depend on it.
fn fill_message(msg: &mut [u8], i: u64) {
    msg[..8].copy_from_slice(&i.to_le_bytes());
    for (k, b) in msg[8..].iter_mut().enumerate() {
        *b = pattern_byte(i.wrapping_add(k as u64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let s = crate::report::summary(&v).unwrap();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_us, 50_000);
        assert_eq!(s.p99_us, 99_000);
        assert_eq!(s.max_us, 100_000);
        assert!((s.avg_us - 50_500.0).abs() < 1e-9);
        assert!(crate::report::summary(&[]).is_none());
        assert_eq!(
            group_name(64, Duration::from_millis(20), 500),
            "echo 64 B every 20 ms × 500"
        );
    }
}
