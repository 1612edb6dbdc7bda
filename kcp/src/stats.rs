//! Per-engine counters.

/// Counters of one engine, the per-connection share of kcp-go's global SNMP block
/// (docs/wire-format.md#session-snmp). The session layer sums them into its own SNMP view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KcpStats {
    /// Segments accepted by `input` (every command, counted like kcp-go `InSegs`).
    pub in_segs: u64,
    /// Segments written into output datagrams (PUSH, ACK, WASK, WINS), like kcp-go `OutSegs`.
    pub out_segs: u64,
    /// Retransmissions of every kind: `fast_retrans_segs + early_retrans_segs + lost_segs`.
    pub retrans_segs: u64,
    /// Retransmissions triggered by `fastack >= resend` (docs/wire-format.md#kcp-flush-fast-resend),
    /// and by RACK loss detection when it is on ([`KcpConfig::rack`](crate::KcpConfig::rack)).
    pub fast_retrans_segs: u64,
    /// Early retransmissions: `fastack > 0` on a flush that moved no new segment (A.7 step 9.3),
    /// and tail loss probes when they are on ([`KcpConfig::tlp`](crate::KcpConfig::tlp)).
    pub early_retrans_segs: u64,
    /// Retransmissions after an RTO expiry (A.7 step 9.4).
    pub lost_segs: u64,
    /// PUSH segments received as duplicates or outside the receive window (regular packets only).
    pub repeat_segs: u64,
}
