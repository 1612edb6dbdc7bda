//! A bulk transfer A -> B on `rkcp_engine::sim`, one millisecond at a time, every byte checked
//! (shared by the congestion, recovery and kcp-go-window tests).

use rkcp_engine::sim::{Network, Side};

/// The sender's queue is kept topped up from this pattern: byte `i` of the stream is `i % 65,536 % 251`.
pub(crate) struct Bulk {
    chunk: Vec<u8>,
    buf: Vec<u8>,
    /// Stream offset of the next byte B should deliver.
    expect: usize,
}

impl Bulk {
    pub(crate) fn new() -> Bulk {
        Bulk {
            chunk: (0..65_536u32).map(|i| (i % 251) as u8).collect(),
            buf: vec![0u8; 1 << 16],
            expect: 0,
        }
    }

    /// Tops A's send queue up to 2,048 segments, runs the network for 1 ms and drains B, checking
    /// that the stream arrives intact and in order. Returns the bytes B delivered in that millisecond.
    pub(crate) fn step(&mut self, net: &mut Network) -> u64 {
        while net.kcp(Side::A).wait_snd() < 2048 {
            net.send(Side::A, &self.chunk).unwrap();
        }
        net.run_for(1);
        let mut got = 0;
        while let Ok(n @ 1..) = net.recv(Side::B, &mut self.buf) {
            for &b in &self.buf[..n] {
                assert_eq!(b, (self.expect % 65_536 % 251) as u8, "stream corrupted");
                self.expect += 1;
            }
            got += n as u64;
        }
        got
    }
}
