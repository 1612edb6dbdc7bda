//! The kcp-go column: rows run Go↔Go by `kcpbench-go` (server via the same control protocol, client as a
//! `kcpbench-go run '<job>'` subprocess). This module builds the jobs and reads their results; finding,
//! building and spawning the Go peer is [`crate::gopeer`]'s.

use serde_json::{Value, json};

use crate::config::BenchConfig;
use crate::results::Measurement;

/// What `--go` resolved to.
#[derive(Clone, Debug)]
pub enum GoColumn {
    /// `--go off`: no kcp-go rows at all.
    Off,
    /// Wanted but not available: kcp-go rows are [`Measurement::Skipped`] with this reason.
    Unavailable(String),
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
        }
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
        assert!(matches!(m, Measurement::Latency { ref rtt_us, lost: 0 } if rtt_us.len() == 3));
    }
}
