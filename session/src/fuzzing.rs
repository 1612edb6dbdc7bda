//! The listener's packet path without sockets, for `cargo fuzz` (built only with `--cfg fuzzing`).

use std::collections::HashMap;

use crate::config::KcpConfig;
use crate::conn::Conn;
use crate::listener::{Route, route};
use crate::session::open_datagram;
use crate::snmp::Snmp;

/// Feeds fuzz input through open → route → session creation → FEC + KCP input → flush, as the listener task
/// does for every datagram.
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
    let snmp = Snmp::default();
    let mut sessions: HashMap<u8, Conn> = HashMap::new();
    let mut now: u32 = 1;
    while rest.len() >= 3 {
        let peer = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(crate::udp::MAX_DATAGRAM);
        let end = (3 + len).min(rest.len());
        let mut pkt = rest[3..end].to_vec();
        rest = &rest[end..];
        now = now.wrapping_add(7);
        let Ok(data) = open_datagram(cfg.crypt.as_ref(), &mut pkt) else {
            continue;
        };
        let existing = sessions.get(&peer).map(|c| c.kcp.conv());
        match route(existing, data) {
            Route::Deliver => {}
            Route::ConvMismatch | Route::UnknownPeer => continue,
            Route::Replace(conv) | Route::Create(conv) => {
                sessions.remove(&peer);
                if sessions.len() >= 16 {
                    continue;
                }
                let Ok(c) = Conn::new(conv, &cfg) else {
                    continue;
                };
                sessions.insert(peer, c);
            }
        }
        if let Some(c) = sessions.get_mut(&peer) {
            c.input(now, data, &snmp);
            c.update(now);
            let mut buf = [0u8; 4096];
            while let Ok(n) = c.kcp.recv(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            c.tx.clear();
        }
    }
}
