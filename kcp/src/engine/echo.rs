//! Address validation with nothing but KCP's own rules (beyond kcp-go; the wire is unchanged).
//!
//! A server that creates state for any datagram can be made to hold state for spoofed addresses. To
//! learn that a peer really receives at its address, the engine can send an **echo request**: a
//! zero-length PUSH segment numbered [`ECHO_SN`] (`snd_una - 1` of a fresh engine, i.e. a segment the
//! peer takes for one it already has). Every KCP implementation (kcp-go, ikcp, this engine) answers
//! such a segment with an ACK that echoes its `ts` and does not deliver it (kcp-go `Input`: an in-window
//! PUSH is always acknowledged; one below `rcv_nxt` is not parsed). The answer is proof of a round trip.
//! Any acknowledgement of data this engine sent proves the same, so [`Kcp::peer_proven`] is set by
//! either.
//!
//! A request carries the engine's clock as `ts`, so its answer is an ordinary RTT sample and needs no
//! special handling in the engine. [`encode_echo_request`] builds one without an engine, for a server
//! that answers a datagram before it keeps any state for it (a stateless cookie in `ts`; its echo must
//! then be fed as `Freshness::Stale` (kcp-go `regular = false`) so the cookie is not taken for an RTT sample).

use super::Kcp;
use crate::segment::{RawHeader, encode_raw};
use crate::{Command, OVERHEAD};

/// The sequence number of an echo request: one below a fresh engine's first segment.
pub const ECHO_SN: u32 = u32::MAX;

/// Writes an echo request for conversation `conv` into the first [`OVERHEAD`] bytes of `out`: a
/// zero-length PUSH numbered [`ECHO_SN`] with `ts`, advertising `wnd` and `una`.
///
/// # Panics
/// If `out` is shorter than [`OVERHEAD`] (a caller bug).
pub fn encode_echo_request(out: &mut [u8], conv: u32, ts: u32, wnd: u16, una: u32) {
    encode_raw(out, conv, Command::Push as u8, 0, wnd, ts, ECHO_SN, una, 0);
}

/// The `ts` of the first answer to an echo request in a datagram (an ACK of [`ECHO_SN`]) for `conv`,
/// if it holds one. Reads headers only; never panics.
pub fn find_echo_reply(datagram: &[u8], conv: u32) -> Option<u32> {
    let mut rest = datagram;
    while let Some(h) = RawHeader::read(rest) {
        if h.conv != conv {
            return None;
        }
        if h.cmd == Command::Ack as u8 && h.sn == ECHO_SN {
            return Some(h.ts);
        }
        rest = rest.get(OVERHEAD + h.len as usize..)?;
    }
    None
}

impl Kcp {
    /// Sends an echo request now (one datagram of its own through `out`, `reserved` bytes in front
    /// as with every output). Does nothing once the peer is proven or while this engine has sent
    /// data (an acknowledgement of that will do).
    pub fn send_echo_request<F: FnMut(&mut [u8])>(&mut self, now: u32, out: &mut F) {
        if self.peer_proven || self.snd_nxt != 0 {
            return;
        }
        let at = self.reserved;
        let wnd = self.wnd_unused();
        self.adv_wnd = wnd;
        // The flush's scratch datagram (at least `mtu` bytes, which exceed `reserved + OVERHEAD`).
        let mut scratch = self.take_scratch();
        let buf = &mut scratch[..at + OVERHEAD];
        encode_echo_request(&mut buf[at..], self.conv, now, wnd, self.rcv_nxt);
        self.echo_ts = Some(now);
        self.stats.out_segs += 1;
        out(buf);
        self.buffer = scratch;
    }

    /// Whether the peer has acknowledged something this engine sent: data, or an echo request. A
    /// peer that has is known to receive at the address it sends from.
    pub fn peer_proven(&self) -> bool {
        self.peer_proven
    }

    /// Whether `ts` is the `ts` of this engine's outstanding echo request. Any other answer to an echo
    /// request (one a server sent without state, carrying a cookie rather than a clock reading) must be fed
    /// as `Freshness::Stale`, or its `ts` would be taken for an RTT sample.
    pub fn awaits_echo(&self, ts: u32) -> bool {
        self.echo_ts == Some(ts)
    }

    /// Holds at most `limit` out-of-order segments (`None`, the default: as many as the receive
    /// window). In-order segments are never refused. For a peer not yet proven, so that it cannot make
    /// the engine hold a window's worth of data; segments refused are resent by the peer.
    pub fn set_out_of_order_limit(&mut self, limit: Option<usize>) {
        self.ooo_limit = limit.map(|l| u32::try_from(l).unwrap_or(u32::MAX));
    }

    /// A new out-of-order segment `sn` beyond the out-of-order limit: neither held nor acknowledged, so
    /// that the peer sends it again.
    pub(super) fn refuses_out_of_order(&self, sn: u32) -> bool {
        self.ooo_limit
            .is_some_and(|l| self.rcv_buf.len() >= l as usize)
            && super::diff(sn, self.rcv_nxt) > 0
            && !self.rcv_buf.iter().any(|s| s.sn == sn)
    }

    /// An ACK of `sn` with `ts` arrived: the answer to our echo request?
    pub(super) fn note_echo(&mut self, sn: u32, ts: u32) {
        if sn == ECHO_SN && self.echo_ts == Some(ts) {
            self.echo_ts = None;
            self.peer_proven = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Freshness;

    fn pump(to: &mut Kcp, now: u32, datagrams: Vec<Vec<u8>>) {
        for d in datagrams {
            to.input(now, &d, Freshness::Fresh).unwrap();
        }
    }

    #[test]
    fn an_echo_request_is_acknowledged_not_delivered_and_proves_the_peer() {
        let mut server = Kcp::fast3(9);
        let mut client = Kcp::fast3(9);
        client.send(b"hello").unwrap();
        let mut wire = Vec::new();
        client.flush(0, &mut |d: &mut [u8]| wire.push(d.to_vec()));
        pump(&mut server, 1, wire);
        assert!(!server.peer_proven());

        let mut req = Vec::new();
        server.send_echo_request(5, &mut |d: &mut [u8]| req.push(d.to_vec()));
        assert_eq!(req.len(), 1);
        assert_eq!(req[0].len(), OVERHEAD);
        pump(&mut client, 6, req);
        let mut buf = [0u8; 16];
        assert_eq!(
            client.recv(&mut buf).unwrap(),
            0,
            "the request must not be delivered"
        );
        let mut reply = Vec::new();
        client.flush(7, &mut |d: &mut [u8]| reply.push(d.to_vec()));
        assert_eq!(find_echo_reply(&reply[0], 9), Some(5));
        pump(&mut server, 9, reply);
        assert!(server.peer_proven());
        // The answer was an RTT sample of 4 ms, nothing stranger.
        assert!(
            server.srtt() > 0 && server.srtt() <= 4,
            "srtt {}",
            server.srtt()
        );
    }

    #[test]
    fn only_the_answer_to_our_request_proves_the_peer() {
        let mut server = Kcp::fast3(9);
        let mut req = Vec::new();
        server.send_echo_request(100, &mut |d: &mut [u8]| req.push(d.to_vec()));
        // A forged answer with another ts.
        let mut forged = vec![0u8; OVERHEAD];
        encode_raw(&mut forged, 9, Command::Ack as u8, 0, 32, 99, ECHO_SN, 0, 0);
        server.input(101, &forged, Freshness::Fresh).unwrap();
        assert!(!server.peer_proven());
        assert_eq!(find_echo_reply(&forged, 8), None, "other conversation");
        encode_raw(
            &mut forged,
            9,
            Command::Ack as u8,
            0,
            32,
            100,
            ECHO_SN,
            0,
            0,
        );
        server.input(102, &forged, Freshness::Fresh).unwrap();
        assert!(server.peer_proven());
    }

    #[test]
    fn acknowledged_data_proves_the_peer_too() {
        let mut a = Kcp::fast3(3);
        let mut b = Kcp::fast3(3);
        a.send(b"x").unwrap();
        let mut wire = Vec::new();
        a.flush(0, &mut |d: &mut [u8]| wire.push(d.to_vec()));
        pump(&mut b, 1, wire);
        let mut back = Vec::new();
        b.flush(2, &mut |d: &mut [u8]| back.push(d.to_vec()));
        assert!(!a.peer_proven());
        pump(&mut a, 3, back);
        assert!(a.peer_proven());
        // A prover no longer asks.
        let mut req = Vec::new();
        a.send_echo_request(4, &mut |d: &mut [u8]| req.push(d.to_vec()));
        assert!(req.is_empty());
    }

    #[test]
    fn out_of_order_segments_beyond_the_limit_are_not_held() {
        let mut tx = Kcp::fast3(4);
        let mut rx = Kcp::fast3(4);
        rx.set_out_of_order_limit(Some(2));
        for i in 0..6u8 {
            tx.send(&[i; 100]).unwrap();
        }
        let mut wire = Vec::new();
        tx.set_mtu(200).unwrap();
        tx.flush(0, &mut |d: &mut [u8]| wire.push(d.to_vec()));
        assert_eq!(wire.len(), 6);
        // Everything but the first arrives: only 2 are held, and only those are acknowledged.
        for d in &wire[1..] {
            rx.input(1, d, Freshness::Fresh).unwrap();
        }
        assert_eq!(rx.rcv_buf.len(), 2);
        assert_eq!(rx.acklist.len(), 2);
        // The first arrives: in order is always taken, and the held ones follow it.
        rx.input(2, &wire[0], Freshness::Fresh).unwrap();
        assert_eq!(rx.rcv_nxt(), 3);
    }
}
