//! Maps the FEC decoder's per-call outcome onto the SNMP counters (PROTOCOL.md B.10).

use std::sync::atomic::Ordering;

use crate::snmp::Snmp;

/// Adds `FECErrs` and `FECShortShards` from one `decode` call.
pub(crate) fn count_outcome(o: &rkcp_fec::DecodeOutcome, snmp: &Snmp) {
    if o.fec_errs > 0 {
        snmp.fec_errs
            .fetch_add(o.fec_errs as u64, Ordering::Relaxed);
    }
    if o.short_shards > 0 {
        snmp.fec_short_shards
            .fetch_add(o.short_shards as u64, Ordering::Relaxed);
    }
}
