//! The listener's packet path without sockets, for `cargo fuzz` (built only with `--cfg fuzzing`): the real
//! [`Endpoint`](crate::proto::endpoint::Endpoint) and [`Connection`](crate::proto::connection::Connection).

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::config::KcpConfig;
use crate::proto::connection::Connection;
use crate::proto::endpoint::{Action, ConnHandle, Endpoint};
use crate::proto::time::Timestamp;

/// Feeds fuzz input through the endpoint (open → route → admit, replay and roaming rules) and the connections (FEC + KCP
/// input, flush, reads), as the listener task does for every datagram.
///
/// Input layout: byte 0 picks the pipeline (bit 0: kcp-go AES cipher, bit 1: AES-256-GCM, bit 2: FEC 10/3);
/// then records of `[peer: u8][len: u16 LE][datagram]` until the input ends. Time advances 7 ms per datagram.
pub fn listener_packet_input(input: &[u8]) {
    let Some((&mode, mut rest)) = input.split_first() else {
        return;
    };
    let key = [0x42u8; 32];
    let mut cfg = KcpConfig::default();
    if mode & 1 != 0 {
        cfg.crypt = Some(rkcp_crypt::PacketCrypt::new(
            rkcp_crypt::CipherKind::Aes,
            &key,
        ));
    } else if mode & 2 != 0 {
        cfg.crypt = Some(rkcp_crypt::PacketCrypt::new(
            rkcp_crypt::CipherKind::Aes256Gcm,
            &key,
        ));
    }
    if mode & 4 != 0 {
        cfg = cfg.with_fec(10, 3);
    }
    cfg.listener.max_sessions = 16;
    let mut ep = Endpoint::new(cfg);
    let mut conns: HashMap<ConnHandle, Box<Connection>> = HashMap::new();
    let mut now = Timestamp::from_millis(1);
    while rest.len() >= 3 {
        let peer = SocketAddr::from(([127, 0, 0, 1], u16::from(rest[0])));
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(crate::udp::MAX_DATAGRAM);
        let end = (3 + len).min(rest.len());
        let mut pkt = rest[3..end].to_vec();
        rest = &rest[end..];
        now = now.add_millis(7);
        let mut expired = Vec::new();
        ep.handle_timeout(now, &mut expired);
        for h in expired {
            conns.remove(&h);
            ep.forget(h, now);
        }
        let routed = ep.handle(now, peer, &mut pkt);
        let h = match routed.action {
            Action::Drop(_) | Action::Respond(_) | Action::Forward(_) => continue,
            Action::Deliver(h, data) => {
                if let Some(c) = conns.get_mut(&h) {
                    c.handle_datagram(now, data);
                }
                h
            }
            Action::Accept(h, mut c, data) => {
                ep.accepted();
                c.handle_datagram(now, data);
                conns.insert(h, c);
                h
            }
        };
        if let Some(c) = conns.get_mut(&h) {
            c.finish_input(now);
            c.handle_timeout(now);
            if c.take_verified() {
                ep.verified(h);
            }
            let mut buf = [0u8; 4096];
            while let Ok(Some(n)) = c.read(now, &mut buf) {
                if n == 0 {
                    break;
                }
            }
            let n = c.transmits().len();
            c.transmitted(n);
        }
    }
}
