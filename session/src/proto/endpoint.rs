//! The listening side without IO: open → route → create/replace, with the routing table, the listener's
//! counters and its limits (kcp-go's `Listener.packetInput` rules).
//!
//! A datagram from a known address goes to that address's connection, unless it carries another
//! conversation id: with `sn == 0` it is a new conversation from the same address and replaces the old one
//! (kcp-go does this for a client that restarted), otherwise it is dropped. A datagram with a readable
//! conversation id from a new address creates a connection (any segment type, as in kcp-go), as long as the
//! endpoint accepts, the connection cap and the accept backlog allow. Every drop is counted by reason.
//!
//! The driver owns the [`Connection`]s the endpoint creates; it tells the endpoint when the application
//! took one from the backlog ([`Endpoint::accepted`]) and when one closed ([`Endpoint::forget`]).

use std::collections::HashMap;
use std::net::SocketAddr;

use rkcp_crypt::PacketCrypt;

use crate::config::KcpConfig;
use crate::listener::ListenerStats;
use crate::proto::connection::Connection;
use crate::proto::packet::{DropReason, conv_and_sn, open_datagram};
use crate::proto::time::Timestamp;

/// Identifies a connection of an [`Endpoint`] (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnHandle(pub(crate) u64);

/// What to do with a datagram.
#[derive(Debug)]
pub(crate) enum Action<'a> {
    /// Feed the opened bytes to this existing connection.
    Deliver(ConnHandle, &'a [u8]),
    /// A new connection: queue it for the application, then feed it the opened bytes.
    Accept(ConnHandle, Box<Connection>, &'a [u8]),
    /// Dropped (and counted).
    Drop(DropReason),
}

/// The outcome of [`Endpoint::handle`].
#[derive(Debug)]
pub(crate) struct Routed<'a> {
    /// The connection this datagram replaced (a new conversation from its address): close it.
    pub(crate) replaced: Option<ConnHandle>,
    pub(crate) action: Action<'a>,
}

#[derive(Debug, Clone, Copy)]
struct Route {
    handle: ConnHandle,
    conv: u32,
}

/// Routing table, counters and limits of one listening socket.
#[derive(Debug)]
pub(crate) struct Endpoint {
    config: KcpConfig,
    crypt: Option<PacketCrypt>,
    routes: HashMap<SocketAddr, Route>,
    next_handle: u64,
    /// Connections created and not yet taken by the application.
    unaccepted: usize,
    accepting: bool,
    stats: ListenerStats,
}

impl Endpoint {
    /// An endpoint whose connections start with `config` (validated by the caller).
    pub(crate) fn new(config: KcpConfig) -> Endpoint {
        Endpoint {
            crypt: config.crypt.clone(),
            config,
            routes: HashMap::new(),
            next_handle: 1,
            unaccepted: 0,
            accepting: true,
            stats: ListenerStats::default(),
        }
    }

    /// Opens and routes one received datagram (decrypting it in place).
    pub(crate) fn handle<'a>(
        &mut self,
        _now: Timestamp,
        remote: SocketAddr,
        pkt: &'a mut [u8],
    ) -> Routed<'a> {
        let data = match open_datagram(self.crypt.as_ref(), pkt) {
            Ok(d) => d,
            Err(r) => return self.drop(None, r),
        };
        let existing = self.routes.get(&remote).copied();
        let (conv, replaced) = match (existing, conv_and_sn(data)) {
            (Some(r), None) => return self.deliver(r.handle, data),
            (Some(r), Some((conv, _))) if conv == r.conv => return self.deliver(r.handle, data),
            (Some(r), Some((conv, 0))) => {
                self.routes.remove(&remote);
                self.stats.replaced += 1;
                (conv, Some(r.handle))
            }
            (Some(_), Some(_)) => return self.drop(None, DropReason::ConvMismatch),
            (None, Some((conv, _))) => (conv, None),
            (None, None) => return self.drop(None, DropReason::UnknownPeer),
        };
        if !self.accepting {
            return self.drop(replaced, DropReason::NotAccepting);
        }
        if self.routes.len() >= self.config.max_sessions {
            return self.drop(replaced, DropReason::SessionCap);
        }
        if self.unaccepted >= self.config.accept_backlog {
            return self.drop(replaced, DropReason::BacklogFull);
        }
        let conn = match Connection::new(conv, &self.config) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create KCP session");
                return self.drop(replaced, DropReason::NotAccepting);
            }
        };
        let handle = ConnHandle(self.next_handle);
        self.next_handle += 1;
        self.routes.insert(remote, Route { handle, conv });
        self.unaccepted += 1;
        self.stats.created += 1;
        Routed {
            replaced,
            action: Action::Accept(handle, Box::new(conn), data),
        }
    }

    fn deliver<'a>(&mut self, handle: ConnHandle, data: &'a [u8]) -> Routed<'a> {
        Routed {
            replaced: None,
            action: Action::Deliver(handle, data),
        }
    }

    fn drop<'a>(&mut self, replaced: Option<ConnHandle>, reason: DropReason) -> Routed<'a> {
        let s = &mut self.stats;
        match reason {
            DropReason::Short => s.short += 1,
            DropReason::Checksum => s.checksum += 1,
            DropReason::UnknownPeer => s.unknown_peer += 1,
            DropReason::ConvMismatch => s.conv_mismatch += 1,
            DropReason::BacklogFull => s.backlog_full += 1,
            DropReason::SessionCap => s.session_cap += 1,
            DropReason::NotAccepting => s.not_accepting += 1,
        }
        Routed {
            replaced,
            action: Action::Drop(reason),
        }
    }

    /// The application took a connection from the backlog (or the backlog dropped one).
    pub(crate) fn accepted(&mut self) {
        self.unaccepted = self.unaccepted.saturating_sub(1);
    }

    /// A connection closed: its address no longer routes to it.
    pub(crate) fn forget(&mut self, remote: SocketAddr, handle: ConnHandle) {
        if self.routes.get(&remote).is_some_and(|r| r.handle == handle) {
            self.routes.remove(&remote);
        }
    }

    /// Stops creating connections (existing ones keep being routed).
    pub(crate) fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    /// Live routes (connections not yet closed).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }

    /// Drops counted by reason, connections created and replaced.
    pub(crate) fn stats(&self) -> ListenerStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kcp_pkt(conv: u32, sn: u32) -> Vec<u8> {
        let mut p = vec![0u8; 24];
        p[0..4].copy_from_slice(&conv.to_le_bytes());
        p[4] = 81;
        p[12..16].copy_from_slice(&sn.to_le_bytes());
        p
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn kind(r: &Routed<'_>) -> &'static str {
        match r.action {
            Action::Deliver(..) => "deliver",
            Action::Accept(..) => "accept",
            Action::Drop(_) => "drop",
        }
    }

    #[test]
    fn routes_like_kcp_go_and_counts_every_drop() {
        let mut ep = Endpoint::new(KcpConfig {
            accept_backlog: 2,
            max_sessions: 3,
            ..KcpConfig::default()
        });
        let t = Timestamp::from_millis(0);
        let mut p = kcp_pkt(7, 5);
        let r = ep.handle(t, addr(1), &mut p);
        assert_eq!(kind(&r), "accept");
        let Action::Accept(h1, ..) = r.action else {
            unreachable!()
        };
        ep.accepted();
        assert_eq!(kind(&ep.handle(t, addr(1), &mut kcp_pkt(7, 6))), "deliver");
        // Another conversation from the same address: dropped unless it starts (sn 0).
        assert_eq!(kind(&ep.handle(t, addr(1), &mut kcp_pkt(8, 6))), "drop");
        let mut p = kcp_pkt(8, 0);
        let r = ep.handle(t, addr(1), &mut p);
        assert_eq!(r.replaced, Some(h1));
        assert_eq!(kind(&r), "accept");
        // Backlog of 2: the third new peer waits for an accept.
        assert_eq!(kind(&ep.handle(t, addr(2), &mut kcp_pkt(1, 0))), "accept");
        assert_eq!(kind(&ep.handle(t, addr(3), &mut kcp_pkt(1, 0))), "drop");
        ep.accepted();
        ep.accepted();
        assert_eq!(kind(&ep.handle(t, addr(3), &mut kcp_pkt(1, 0))), "accept");
        ep.accepted();
        // Cap of 3 live connections.
        assert_eq!(kind(&ep.handle(t, addr(4), &mut kcp_pkt(1, 0))), "drop");
        // Too short, and a parity packet from a stranger.
        assert_eq!(kind(&ep.handle(t, addr(5), &mut [0u8; 10])), "drop");
        let mut parity = vec![0u8; 30];
        parity[4] = 0xF2;
        assert_eq!(
            kind(&ep.handle(t, addr(5), &mut { parity }.clone())),
            "drop"
        );
        ep.stop_accepting();
        ep.forget(addr(2), ConnHandle(99)); // not its handle: kept
        assert_eq!(ep.len(), 3);
        assert_eq!(kind(&ep.handle(t, addr(6), &mut kcp_pkt(1, 0))), "drop");
        let s = ep.stats();
        assert_eq!(
            (
                s.created,
                s.replaced,
                s.conv_mismatch,
                s.backlog_full,
                s.session_cap
            ),
            (4, 1, 1, 1, 1)
        );
        assert_eq!(
            (s.short, s.unknown_peer, s.not_accepting, s.checksum),
            (1, 1, 1, 0)
        );
    }
}
