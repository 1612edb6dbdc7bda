//! The 24 kcp-go SNMP counters (docs/wire-format.md#session-snmp), per session and summed for the process.
//!
//! Every session keeps its counters as plain integers in its connection. The process-wide view
//! ([`global_snmp`](crate::global_snmp)) is [`GLOBAL`], one set of atomics: each session adds what its
//! counters gained since it last did so whenever it does work (only the fields that changed), and the
//! events that belong to no session (a listener dropping a datagram before it found a session, opens and
//! closes) are counted there directly. Nothing keeps a list of sessions.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! snmp_fields {
    ($($(#[$doc:meta])* $field:ident => $name:literal,)*) => {
        /// Live counters: atomics, updated with relaxed ordering (they are statistics, not synchronisation).
        #[derive(Debug, Default)]
        pub(crate) struct Snmp {
            $(pub(crate) $field: AtomicU64,)*
        }

        /// A snapshot of the 24 kcp-go counters (docs/wire-format.md#session-snmp), in kcp-go's `Header()` order.
        ///
        /// Field meanings follow kcp-go's `Snmp` struct exactly, so a kcptun `--snmplog` file and ours line up
        /// column for column.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct SnmpSnapshot {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl Snmp {
            /// All zero.
            pub(crate) const fn new() -> Snmp {
                Snmp { $($field: AtomicU64::new(0),)* }
            }

            /// Adds `new - old`, field by field (counters only grow), touching only the fields that changed.
            pub(crate) fn add_delta(&self, old: &SnmpSnapshot, new: &SnmpSnapshot) {
                $(
                    let d = new.$field.wrapping_sub(old.$field);
                    if d != 0 {
                        self.$field.fetch_add(d, Ordering::Relaxed);
                    }
                )*
            }

            /// Reads every counter.
            pub(crate) fn snapshot(&self) -> SnmpSnapshot {
                SnmpSnapshot { $($field: self.$field.load(Ordering::Relaxed),)* }
            }
        }

        impl SnmpSnapshot {
            /// kcp-go's `Snmp.Header()` names, in CSV column order.
            pub const HEADER: [&'static str; 24] = [$($name,)*];

            /// The values in [`SnmpSnapshot::HEADER`] order.
            pub fn to_array(&self) -> [u64; 24] {
                [$(self.$field,)*]
            }

            /// Field-wise sum (saturating), used to add per-session snapshots together.
            pub fn add(&mut self, other: &SnmpSnapshot) {
                $(self.$field = self.$field.saturating_add(other.$field);)*
            }
        }
    };
}

/// The process-wide counters behind [`global_snmp`](crate::global_snmp).
pub(crate) static GLOBAL: Snmp = Snmp::new();

snmp_fields! {
    /// User bytes accepted by writes.
    bytes_sent => "BytesSent",
    /// User bytes returned by reads.
    bytes_received => "BytesReceived",
    /// Peak of `curr_estab` (process-wide only; 0 in a per-session snapshot).
    max_conn => "MaxConn",
    /// Client sessions created (process-wide only).
    active_opens => "ActiveOpens",
    /// Listener sessions created (process-wide only).
    passive_opens => "PassiveOpens",
    /// Sessions currently open (process-wide only).
    curr_estab => "CurrEstab",
    /// Datagrams from an unexpected source (client side), or FEC packets shorter than their header.
    in_errs => "InErrs",
    /// Datagrams whose CRC32 did not match after decryption (wrong key, corruption, foreign traffic).
    in_csum_errors => "InCsumErrors",
    /// Datagrams the KCP engine rejected (conv mismatch, bad length, bad command, truncated).
    kcp_in_errors => "KCPInErrors",
    /// Datagrams that reached the KCP/FEC input.
    in_pkts => "InPkts",
    /// Datagrams sent.
    out_pkts => "OutPkts",
    /// KCP segments parsed.
    in_segs => "InSegs",
    /// KCP segments emitted (data, retransmissions, ACKs, probes).
    out_segs => "OutSegs",
    /// Bytes of datagrams that reached the KCP/FEC input (after the crypt header is removed).
    in_bytes => "InBytes",
    /// Bytes of datagrams sent (whole UDP payloads).
    out_bytes => "OutBytes",
    /// `lost_segs + fast_retrans_segs + early_retrans_segs`.
    retrans_segs => "RetransSegs",
    /// Fast retransmissions (duplicate-ACK threshold reached).
    fast_retrans_segs => "FastRetransSegs",
    /// Early retransmissions.
    early_retrans_segs => "EarlyRetransSegs",
    /// Retransmissions after an RTO expiry.
    lost_segs => "LostSegs",
    /// Duplicate or out-of-window data segments received.
    repeat_segs => "RepeatSegs",
    /// FEC parity packets received.
    fec_parity_shards => "FECParityShards",
    /// FEC-rebuilt packets with an invalid size field.
    fec_errs => "FECErrs",
    /// FEC-rebuilt packets accepted by KCP.
    fec_recovered => "FECRecovered",
    /// Data shards evicted from the FEC receive queue before their group could be used.
    fec_short_shards => "FECShortShards",
}

impl SnmpSnapshot {
    /// kcptun's `--snmplog` CSV header line: `Unix` followed by the 24 counter names (no trailing newline).
    pub fn csv_header() -> String {
        let mut s = String::from("Unix");
        for name in Self::HEADER {
            s.push(',');
            s.push_str(name);
        }
        s
    }

    /// kcptun's `--snmplog` CSV row: the Unix timestamp, then the 24 values (no trailing newline).
    pub fn csv_row(&self, unix_secs: u64) -> String {
        use fmt::Write as _;
        let mut s = unix_secs.to_string();
        for v in self.to_array() {
            let _ = write!(s, ",{v}");
        }
        s
    }
}

impl fmt::Display for SnmpSnapshot {
    /// `Name: value` pairs on one line, in header order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, v)) in Self::HEADER.iter().zip(self.to_array()).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}:{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_header_matches_kcptun() {
        assert_eq!(
            SnmpSnapshot::csv_header(),
            "Unix,BytesSent,BytesReceived,MaxConn,ActiveOpens,PassiveOpens,CurrEstab,InErrs,InCsumErrors,\
             KCPInErrors,InPkts,OutPkts,InSegs,OutSegs,InBytes,OutBytes,RetransSegs,FastRetransSegs,\
             EarlyRetransSegs,LostSegs,RepeatSegs,FECParityShards,FECErrs,FECRecovered,FECShortShards"
        );
    }

    #[test]
    fn csv_row_in_header_order() {
        let s = SnmpSnapshot {
            bytes_sent: 1,
            fec_short_shards: 24,
            in_pkts: 10,
            ..Default::default()
        };
        let row = s.csv_row(1_700_000_000);
        let cols: Vec<&str> = row.split(',').collect();
        assert_eq!(cols.len(), 25);
        assert_eq!(cols[0], "1700000000");
        assert_eq!(cols[1], "1");
        assert_eq!(cols[10], "10");
        assert_eq!(cols[24], "24");
    }

    #[test]
    fn snapshot_and_add() {
        let live = Snmp::default();
        live.in_pkts.fetch_add(3, Ordering::Relaxed);
        let mut a = live.snapshot();
        assert_eq!(a.in_pkts, 3);
        a.add(&SnmpSnapshot {
            in_pkts: 4,
            ..Default::default()
        });
        assert_eq!(a.in_pkts, 7);
    }

    #[test]
    fn deltas_add_up_to_the_latest_snapshot() {
        let g = Snmp::new();
        let mut published = SnmpSnapshot::default();
        for step in 1..=3u64 {
            let cur = SnmpSnapshot {
                in_pkts: step * 10,
                out_bytes: step * 1000,
                ..Default::default()
            };
            g.add_delta(&published, &cur);
            published = cur;
        }
        let s = g.snapshot();
        assert_eq!((s.in_pkts, s.out_bytes, s.bytes_sent), (30, 3000, 0));
    }
}
