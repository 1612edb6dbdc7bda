//! The kcp-go column: rows run Go↔Go by `kcpbench-go` (server via the same control protocol, client as a
//! `kcpbench-go run '<job>'` subprocess). This module builds the jobs and reads their results; finding,
//! building and spawning the Go peer is [`crate::gopeer`]'s.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::config::BenchConfig;
use crate::gopeer::GoPeer;
use crate::proto::{Control, Op};
use crate::results::Measurement;

/// What `--go` resolved to.
#[derive(Clone, Debug)]
pub enum GoColumn {
    /// `--go off`: no kcp-go rows at all.
    Off,
    /// Wanted but not available: kcp-go rows are [`Measurement::Skipped`] with this reason.
    Unavailable(String),
    /// A `kcpbench-go serve` at `control`, and the peer binary to run the client jobs.
    Peer {
        /// The built peer.
        peer: GoPeer,
        /// Control address of its server.
        control: String,
    },
}

/// Why the column is missing when `go` is not installed (the contract's wording).
pub const INSTALL_HINT: &str = "install golang-go golang-github-xtaci-kcp-dev golang-github-xtaci-smux-dev to get the kcp-go column";

impl GoColumn {
    /// Whether kcp-go rows appear in the tables at all.
    pub fn wanted(&self) -> bool {
        !matches!(self, GoColumn::Off)
    }

    /// The row to record instead of a Go measurement, if the Go peer cannot run.
    pub fn skipped(&self) -> Option<Measurement> {
        match self {
            GoColumn::Off => None,
            GoColumn::Unavailable(why) => Some(Measurement::Skipped { why: why.clone() }),
            GoColumn::Peer { .. } => None,
        }
    }

    /// A sink or echo row: `bytes` in total over `streams` streams, Go↔Go.
    ///
    /// # Errors
    /// The server refused the config, the job failed or timed out.
    pub async fn bulk_row(
        &self,
        cfg: &BenchConfig,
        op: Op,
        bytes: u64,
        streams: u32,
        timeout: Duration,
    ) -> anyhow::Result<Measurement> {
        let (peer, _ctl, addr) = self.listen(cfg).await?;
        let per_stream = bytes / u64::from(streams.max(1));
        let job = bulk_job(&addr, cfg, op == Op::Echo, per_stream, streams);
        let v = peer.run_job(&job, timeout, || {}).await?;
        bulk_result(&v, streams)
    }

    /// A paced-echo latency row, Go↔Go.
    ///
    /// # Errors
    /// As [`GoColumn::bulk_row`].
    pub async fn latency_row(
        &self,
        cfg: &BenchConfig,
        size: u32,
        period: Duration,
        count: u32,
        timeout: Duration,
    ) -> anyhow::Result<Measurement> {
        let (peer, _ctl, addr) = self.listen(cfg).await?;
        let period_ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
        let job = latency_job(&addr, cfg, size, period_ms, count);
        let v = peer.run_job(&job, timeout, || {}).await?;
        latency_result(&v)
    }

    /// A many-sessions row, Go↔Go: server stats before opening, at `OPENED`, and when the job exits.
    ///
    /// # Errors
    /// As [`GoColumn::bulk_row`].
    pub async fn sessions_row(
        &self,
        cfg: &BenchConfig,
        sessions: u32,
        secs: f64,
        size: u32,
        rate_hz: f64,
    ) -> anyhow::Result<Measurement> {
        let (peer, mut ctl, addr) = self.listen(cfg).await?;
        let before = ctl.stats().await?;
        let mut job = peer.start_job(&sessions_job(&addr, cfg, sessions, secs, size, rate_hz))?;
        if !job.opened().await {
            let v = job.finish().await?;
            anyhow::bail!(
                "kcpbench-go: {}",
                job_error(&v).unwrap_or_else(|| "no OPENED line".into())
            );
        }
        let opened = ctl.stats().await?;
        let w0 = Instant::now();
        let v = job.finish().await?;
        let end = ctl.stats().await?;
        let wall = w0.elapsed().as_secs_f64();
        if let Some(e) = job_error(&v) {
            anyhow::bail!("kcpbench-go: {e}");
        }
        Ok(Measurement::Sessions {
            sessions: u64::from(sessions),
            secs: wall,
            server_cpu_secs: end.cpu_ns.saturating_sub(opened.cpu_ns) as f64 / 1e9,
            server_rss_before: before.rss_bytes,
            server_rss_after: opened.rss_bytes,
            echoed: field_u64(&v, "echoed")?,
            expected: field_u64(&v, "expected")?,
        })
    }

    /// Opens a control connection to the Go server and a data listener for `cfg` on it.
    async fn listen(&self, cfg: &BenchConfig) -> anyhow::Result<(&GoPeer, Control, String)> {
        let GoColumn::Peer { peer, control } = self else {
            anyhow::bail!("the Go peer is not available");
        };
        let mut ctl = Control::connect(control)
            .await
            .context("kcpbench-go serve")?;
        let addr = ctl.listen(cfg).await.context("kcpbench-go serve")?;
        Ok((peer, ctl, addr.to_string()))
    }
}

/// A sink or echo job: `bytes` per stream over `streams` streams.
pub fn bulk_job(addr: &str, config: &BenchConfig, echo: bool, bytes: u64, streams: u32) -> Value {
    json!({
        "addr": addr,
        "config": config,
        "test": if echo { "echo" } else { "sink" },
        "bytes": bytes,
        "streams": streams,
    })
}

/// A paced-echo latency job.
pub fn latency_job(
    addr: &str,
    config: &BenchConfig,
    size: u32,
    period_ms: u32,
    count: u32,
) -> Value {
    json!({
        "addr": addr,
        "config": config,
        "test": "latency",
        "size": size,
        "period_ms": period_ms,
        "count": count,
    })
}

/// A many-sessions job.
pub fn sessions_job(
    addr: &str,
    config: &BenchConfig,
    sessions: u32,
    secs: f64,
    size: u32,
    rate_hz: f64,
) -> Value {
    json!({
        "addr": addr,
        "config": config,
        "test": "sessions",
        "sessions": sessions,
        "secs": secs,
        "size": size,
        "rate_hz": rate_hz,
    })
}

/// The job's error, if it reported `ok: false` (or no `ok` at all).
pub fn job_error(v: &Value) -> Option<String> {
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    Some(
        v.get("error")
            .and_then(Value::as_str)
            .unwrap_or("the Go job reported no result")
            .to_string(),
    )
}

fn field_u64(v: &Value, k: &str) -> anyhow::Result<u64> {
    v.get(k)
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow::anyhow!("Go result without {k}: {v}"))
}

fn field_f64(v: &Value, k: &str) -> anyhow::Result<f64> {
    v.get(k)
        .and_then(Value::as_f64)
        .ok_or_else(|| anyhow::anyhow!("Go result without {k}: {v}"))
}

/// Reads a sink/echo result.
///
/// # Errors
/// The job failed or the result lacks a field.
pub fn bulk_result(v: &Value, streams: u32) -> anyhow::Result<Measurement> {
    if let Some(e) = job_error(v) {
        anyhow::bail!("kcpbench-go: {e}");
    }
    Ok(Measurement::Throughput {
        bytes: field_u64(v, "bytes")?,
        secs: field_f64(v, "secs")?,
        streams,
        wire_bytes: None,
        // kcp-go's GetSRTT sampled the same way (KCP transports; absent from older peers).
        rtt_min_ms: v.get("rtt_min_ms").and_then(Value::as_f64),
        queue_delay_ms: v.get("queue_delay_ms").and_then(Value::as_f64),
    })
}

/// Reads a latency result.
///
/// # Errors
/// The job failed or the result lacks a field.
pub fn latency_result(v: &Value) -> anyhow::Result<Measurement> {
    if let Some(e) = job_error(v) {
        anyhow::bail!("kcpbench-go: {e}");
    }
    let rtt_us = v
        .get("rtt_us")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow::anyhow!("Go result without rtt_us"))?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    Ok(Measurement::Latency {
        rtt_us,
        lost: field_u64(v, "lost")?,
        wire_bytes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_follow_the_contract() {
        let c = BenchConfig::default();
        let j = bulk_job("127.0.0.1:1", &c, true, 10, 2);
        assert_eq!(j["test"], "echo");
        assert_eq!(j["config"]["mtu"], 1350);
        let j = sessions_job("127.0.0.1:1", &c, 5, 2.0, 16, 1.0);
        assert_eq!(j["sessions"], 5);
        let m = bulk_result(&json!({"ok":true,"bytes":10,"secs":0.5}), 2).unwrap();
        assert!(matches!(m, Measurement::Throughput { bytes: 10, .. }));
        assert!(bulk_result(&json!({"ok":false,"error":"x"}), 1).is_err());
        let m = latency_result(&json!({"ok":true,"rtt_us":[1,2,3],"lost":0})).unwrap();
        assert!(
            matches!(m, Measurement::Latency { ref rtt_us, lost: 0, wire_bytes: None } if rtt_us.len() == 3)
        );
    }
}
