//! The results of a run: what every subcommand produces, what the table, the plots and
//! `benches/RESULTS.md` are made from. Serialised as JSON (`kcpbench ... --json FILE`) so a run can
//! be rendered again, or several runs merged, without measuring again.

use serde::{Deserialize, Serialize};

/// Everything one `kcpbench` invocation measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// The command line that produced it, as typed (for the "exact commands" of RESULTS.md).
    pub command: String,
    /// One line about the machine: CPU model, core count, kernel (from /proc).
    pub machine: String,
    /// UTC time the run started, RFC 3339.
    pub started: String,
    /// The measurements, in the order they were taken.
    pub rows: Vec<Row>,
}

/// One measurement: one scenario (`group`) run by one implementation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// The scenario, shared by the rows compared side by side, e.g.
    /// `"one-way 256 MiB, 1 stream"` or `"echo 64 B every 20 ms × 500"`.
    pub group: String,
    /// The configuration within the scenario, e.g. `"smux/kcp fast3 wnd 1024 aes fec 10/3"` or `"tcp"`.
    pub label: String,
    /// Who ran both ends.
    pub implementation: Implementation,
    /// What was measured.
    pub result: Measurement,
}

/// The code that ran both ends of a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Implementation {
    /// This repository's crates (session, smux) at both ends.
    Rkcp,
    /// The Go originals (xtaci/kcp-go, xtaci/smux) at both ends, driven through `kcpbench-go`.
    KcpGo,
    /// The kernel's TCP (plain, or with our smux on top).
    Tcp,
}

/// The figures of one measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Measurement {
    /// Bulk transfer: `bytes` of payload delivered (one-way) or echoed (round trip) in `secs`.
    Throughput {
        /// Payload bytes delivered (one-way) or sent and received back (echo, counted once).
        bytes: u64,
        /// Wall time from the first byte written to the last byte confirmed.
        secs: f64,
        /// Number of concurrent streams.
        streams: u32,
        /// Bytes the client's KCP sessions put on the wire during the row (UDP payloads: KCP headers,
        /// ACKs, FEC parity, crypto headers; the session SNMP `OutBytes`), for rkcp rows; `None` for TCP
        /// and kcp-go rows. One-way, the client sends the payload, so `wire_bytes ÷ bytes` is the
        /// sender's wire overhead (retransmissions included); for echo it is the client's half.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wire_bytes: Option<u64>,
        /// The path's minimum RTT as the client (the sender, one-way) saw it during the row, ms: the
        /// smallest smoothed RTT sampled every 50 ms (KCP: the session's `srtt`; TCP: `TCP_INFO`'s
        /// `tcpi_rtt`, or its `tcpi_min_rtt` when smaller). `None` for kcp-go rows and older reports.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rtt_min_ms: Option<f64>,
        /// Queue delay, ms: the mean of those RTT samples (averaged over the row's connections) minus
        /// `rtt_min_ms`, i.e. how much the transfer's own traffic delayed it in the bottleneck queue.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue_delay_ms: Option<f64>,
    },
    /// Paced echo: one round-trip time per message, in microseconds, in send order.
    Latency {
        /// Round-trip time of each message, µs.
        rtt_us: Vec<u64>,
        /// Messages that never came back before the run ended.
        lost: u64,
        /// Bytes the client's KCP sessions put on the wire during the row (as for throughput), for rkcp
        /// rows; `None` for TCP and kcp-go rows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wire_bytes: Option<u64>,
    },
    /// Many mostly idle sessions: what they cost the server process.
    Sessions {
        /// Sessions that were open during the measurement window.
        sessions: u64,
        /// Length of the measurement window.
        secs: f64,
        /// Server CPU time (user + system) spent during the window.
        server_cpu_secs: f64,
        /// Server resident memory before the sessions were opened.
        server_rss_before: u64,
        /// Server resident memory with all sessions open.
        server_rss_after: u64,
        /// Echo replies received during the window.
        echoed: u64,
        /// Echo replies expected during the window.
        expected: u64,
    },
    /// Not run, and why (e.g. Go is not installed).
    Skipped {
        /// What the user can do to get this measurement.
        why: String,
    },
    /// Run, but it failed.
    Failed {
        /// The error, as reported.
        error: String,
    },
}
