//! The KCP listener's packet path: decrypt, demultiplex, create sessions, FEC + KCP input, flush.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rkcp_session::fuzzing::listener_packet_input(data);
});
