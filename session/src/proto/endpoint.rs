//! The listening side without IO: open → route → admit, with the routing table, the listener's counters and
//! its limits. This is where a listener meets the internet; the threat model is in the crate docs
//! (`## Threat model`), the rules are these:
//!
//! - **Routing by path.** A datagram goes to the connection of its peer address *and* conversation id (FEC
//!   parity, which has no conversation id, to the connection that address created or moved last). A new
//!   conversation from a known address is a new connection beside the old one, never a replacement: kcp-go
//!   replaced the old session on a datagram with `sn == 0`, so one replayed or forged datagram could kill a
//!   live session. The old one ends by its idle timeout if its client really restarted.
//! - **Following a moved peer (roaming).** A datagram of a known conversation from a new address moves that
//!   connection there if it shows progress beyond anything the connection has seen (newer data by the
//!   peer's clock, or an acknowledgement of something we sent later, with a cumulative acknowledgement that
//!   did not go back). A NAT that rebinds its port thus keeps the session, for unmodified kcp-go clients
//!   too; a replayed datagram never shows new progress, so it never moves anything. A datagram that shows
//!   nothing newer gets a path check (a stateless echo request with a cookie, to that address); the answer
//!   from there moves the connection. A replaying stranger cannot answer (with a cipher). For 1 s after a move
//!   ([`RETURN_HOLD_MS`](crate::proto::routes::RETURN_HOLD_MS)) progress alone does not take a connection back to
//!   the address it left: a datagram sent there just before the move can arrive late and look newer in one
//!   respect; a peer that really returns answers the path check.
//! - **Creating only on fresh starts.** A connection is created only by a datagram whose cumulative
//!   acknowledgement is 0 (its peer has received nothing from us: a session start), for a conversation id
//!   that is neither live nor remembered from the last [`Admission::replay_window`]. Replays of a live or
//!   recently closed session therefore create nothing, wherever they come from. One exception keeps peers
//!   that picked the same random id apart: a start of a live or remembered id that none of its connections
//!   received (the record fingerprints each start they got) is another peer, and gets a connection of its
//!   own; it is never taken for the first peer moving (that would hand one peer's session to the other).
//! - **Admission.** See [`admission`](crate::proto::admission): unverified connections are budgeted, capped
//!   per source IP and expire; beyond the limits new peers must pass a stateless address check first.
//!
//! - **Shards.** In a sharded listener ([`Endpoint::with_shard`]) a conversation belongs to one shard's
//!   endpoint ([`shard`](crate::proto::shard)): a datagram of a conversation this endpoint does not know
//!   but another shard owns is handed over ([`Action::Forward`]) and judged there by the rules above; a
//!   connection is created only after its conversation is claimed, so never on two shards.
//!
//! Every datagram that reaches no connection is counted by reason ([`ListenerStats`]).
//!
//! The driver owns the [`Connection`]s the endpoint creates. It tells the endpoint when the application took
//! one from the backlog ([`Endpoint::accepted`]), when one proved its peer's address
//! ([`Endpoint::verified`], after [`Connection::take_verified`]) and when one closed ([`Endpoint::forget`]);
//! it closes what [`Endpoint::handle_timeout`] returns.

use std::net::SocketAddr;

use rkcp_crypt::PacketCrypt;
use rkcp_fec::Classified;

use crate::config::KcpConfig;
use crate::listener::ListenerStats;
use crate::proto::admission::{Bucket, CookieKey, Unverified};
use crate::proto::connection::Connection;
use crate::proto::keyed::{Keyed, KeyedOpen};
use crate::proto::packet::{DropReason, kcp_go_halves, open_with, seal_echo_request};
use crate::proto::replay::ConvRecord;
use crate::proto::routes::{Progress, Routes};
use crate::proto::shard::ShardLink;
use crate::proto::time::Timestamp;

#[cfg(doc)]
use crate::proto::admission::Admission;

/// Identifies a connection of an [`Endpoint`] (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnHandle(pub(crate) u64);

/// Handles are our own sequential counters, nothing a peer picks: maps keyed by them hash with the identity.
impl nohash_hasher::IsEnabled for ConnHandle {}

/// A map keyed by connection handle (identity hashing: see [`ConnHandle`]).
pub(crate) type HandleMap<V> =
    std::collections::HashMap<ConnHandle, V, nohash_hasher::BuildNoHashHasher<ConnHandle>>;

/// A map keyed by what a remote peer picks (its address, a conversation id): keyed hashing with a random
/// seed per map, so a peer cannot aim collisions at a table (ahash; SipHash would cost several times more on
/// every datagram's lookup).
pub(crate) type PeerMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// What to do with a datagram.
#[derive(Debug)]
pub(crate) enum Action<'a> {
    /// Feed the opened bytes to this existing connection.
    Deliver(ConnHandle, &'a [u8]),
    /// A new connection: queue it for the application, then feed it the opened bytes.
    Accept(ConnHandle, Box<Connection>, &'a [u8]),
    /// Send this datagram back to the sender (a stateless address check; never larger than what came in).
    Respond(&'a [u8]),
    /// Dropped (and counted).
    Drop(DropReason),
    /// Sharded listener: the conversation belongs to this other shard; hand it the datagram as received
    /// (unopened), to be routed there with [`Endpoint::handle_forwarded`].
    Forward(usize),
}

/// The outcome of [`Endpoint::handle`].
#[derive(Debug)]
pub(crate) struct Routed<'a> {
    /// This connection's peer moved to the datagram's address: send to it there from now on.
    pub(crate) moved: Option<ConnHandle>,
    pub(crate) action: Action<'a>,
}

/// Routing table, counters and limits of one listening socket.
#[derive(Debug)]
pub(crate) struct Endpoint {
    config: KcpConfig,
    crypt: Option<PacketCrypt>,
    /// Opens every datagram of a kcp-go cipher (the AEAD kinds open per session, in `keyed`).
    opener: Option<rkcp_crypt::SessionOpener>,
    routes: Routes,
    next_handle: u64,
    /// Connections created and not yet taken by the application.
    unaccepted: usize,
    accepting: bool,
    unverified: Unverified,
    max_unverified: usize,
    unverified_timeout_ms: u64,
    convs: ConvRecord,
    /// Keys the fingerprints of session starts kept in `convs` (random per endpoint).
    start_prints: ahash::RandomState,
    cookies: CookieKey,
    /// Rate limit of stateless replies (address and path checks).
    checks: Bucket,
    /// AEAD kinds: sessions by session id, with their openers (`None`: kcp-go ciphers or none).
    keyed: Option<Keyed>,
    /// Sharded listener: this endpoint's shard and the shared conversation owners (`None`: not sharded).
    shard: Option<ShardLink>,
    stats: ListenerStats,
}

impl Endpoint {
    /// An endpoint whose connections start with `config` (validated by the caller).
    pub(crate) fn new(config: KcpConfig) -> Endpoint {
        let a = &config.listener.admission;
        Endpoint {
            crypt: config.crypt.clone(),
            opener: config
                .crypt
                .as_ref()
                .filter(|c| !c.kind().is_authenticated())
                .map(|c| kcp_go_halves(c).1),
            routes: Routes::default(),
            next_handle: 1,
            unaccepted: 0,
            accepting: true,
            unverified: Unverified::default(),
            max_unverified: a.max_unverified(config.kcp.mtu),
            unverified_timeout_ms: a.unverified_timeout.as_millis() as u64,
            convs: ConvRecord::new(a.replay_window.as_millis() as u64, a.replay_record),
            start_prints: ahash::RandomState::new(),
            cookies: CookieKey::new(),
            checks: Bucket::new(a.max_address_checks_per_sec),
            keyed: config
                .crypt
                .as_ref()
                .and_then(|c| Keyed::new(c, rkcp_crypt::unix_time_ms())),
            shard: None,
            stats: ListenerStats::default(),
            config,
        }
    }

    /// Makes this endpoint one shard of a sharded listener.
    pub(crate) fn with_shard(mut self, link: ShardLink) -> Endpoint {
        self.shard = Some(link);
        self
    }

    /// The other shard that owns `conv`, if this endpoint is a shard and may forward.
    fn owner_elsewhere(&self, conv: u32, now: Timestamp, may_forward: bool) -> Option<usize> {
        let sh = self.shard.as_ref().filter(|_| may_forward)?;
        sh.owners.owner_besides(conv, sh.index, now)
    }

    /// Claims `conv` before creating a connection of it: `Some(routed)` if another shard owns it.
    fn claim<'a>(&mut self, conv: u32, now: Timestamp, may_forward: bool) -> Option<Routed<'a>> {
        let sh = self.shard.as_ref()?;
        let owner = sh.owners.claim(conv, sh.index, now).err()?;
        Some(self.forward(owner, may_forward))
    }

    fn forward<'a>(&mut self, owner: usize, may_forward: bool) -> Routed<'a> {
        if !may_forward {
            // Forwarded to us, yet another shard owns it (it moved meanwhile): no second hop.
            return self.drop(DropReason::Stale);
        }
        self.stats.forwarded += 1;
        Routed {
            moved: None,
            action: Action::Forward(owner),
        }
    }

    /// A connection's peer moved to `remote`: route there from now on (and, sharded, let the other shards
    /// know, for parity).
    fn relocate(&mut self, h: ConnHandle, remote: SocketAddr, now: Timestamp) {
        let old = self.routes.relocate(h, remote, now.engine());
        self.stats.roamed += 1;
        if let Some(sh) = &self.shard {
            let old = old.filter(|&o| self.routes.by_addr(o).is_none());
            sh.owners.moved(old, remote, sh.index);
        }
    }

    /// FEC parity (no conversation id) from an address with no connection here: another shard's, if a
    /// connection of that shard moved there; dropped otherwise.
    fn parity_elsewhere<'a>(&mut self, remote: SocketAddr, may_forward: bool) -> Routed<'a> {
        if may_forward
            && let Some(sh) = &self.shard
            && let Some(owner) = sh.owners.moved_to_besides(remote, sh.index)
        {
            return self.forward(owner, true);
        }
        self.drop(DropReason::UnknownPeer)
    }

    /// [`Endpoint::handle`] for a datagram another shard forwarded (never forwarded again).
    pub(crate) fn handle_forwarded<'a>(
        &mut self,
        now: Timestamp,
        remote: SocketAddr,
        pkt: &'a mut [u8],
    ) -> Routed<'a> {
        self.route(now, remote, pkt, false)
    }

    /// Opens and routes one received datagram (decrypting it in place; a stateless reply is written over it).
    pub(crate) fn handle<'a>(
        &mut self,
        now: Timestamp,
        remote: SocketAddr,
        pkt: &'a mut [u8],
    ) -> Routed<'a> {
        self.route(now, remote, pkt, true)
    }

    fn route<'a>(
        &mut self,
        now: Timestamp,
        remote: SocketAddr,
        pkt: &'a mut [u8],
        may_forward: bool,
    ) -> Routed<'a> {
        if self.keyed.is_some() {
            return self.handle_keyed(now, remote, pkt, may_forward);
        }
        let range = match open_with(self.opener.as_mut(), pkt) {
            Ok((r, _)) => r,
            Err(r) => return self.drop(r),
        };
        let data: &[u8] = &pkt[range.clone()];
        let kcp = match rkcp_fec::classify(data) {
            Classified::Plain(k) | Classified::Data(k) => Some(k),
            Classified::Parity | Classified::Truncated => None,
        };
        let Some((conv, _)) = kcp.and_then(rkcp_engine::segment::conv_and_sn) else {
            // No conversation id: parity goes to the connection its address created or moved last (on
            // whichever shard that is).
            return match self.routes.by_addr(remote) {
                Some(h) => deliver(h, &pkt[range]),
                None => self.parity_elsewhere(remote, may_forward),
            };
        };
        let kcp = kcp.unwrap_or_default();
        let progress = Progress::of(kcp, conv);
        if let Some(h) = self.routes.saw_on_path(remote, conv, progress) {
            if progress.is_start() {
                self.convs.note_start(conv, self.start_prints.hash_one(kcp));
            }
            return deliver(h, &pkt[range]);
        }
        let start_print = progress.is_start().then(|| self.start_prints.hash_one(kcp));
        let live = self.routes.has_conv(conv);
        let known = live || self.convs.contains(conv, now);
        // A session start of a conversation id in use (or remembered) from another address: a replay of a
        // start its connection received creates nothing; any other start is a second peer that picked the
        // same random id (kcp-go keys sessions by address alone, so its clients never learn to avoid that)
        // and gets a connection of its own. Taking it for the first peer moving would hand one peer's
        // session to the other.
        let other_peer = match start_print {
            Some(print) if known => {
                if !self.convs.is_other_start(conv, print, now) {
                    return self.drop(DropReason::Stale);
                }
                true
            }
            _ => false,
        };
        if !other_peer {
            if let Some(h) = self
                .routes
                .moved_peer(conv, remote, &progress, now.engine())
            {
                self.relocate(h, remote, now);
                self.routes.saw(h, progress);
                return Routed {
                    moved: Some(h),
                    action: Action::Deliver(h, &pkt[range]),
                };
            }
            if live {
                // Only a datagram that reaches no connection by its path needs this second look.
                let echoed = rkcp_engine::find_echo_reply(kcp, conv);
                return self.check_path(now, remote, pkt, range, conv, echoed);
            }
            if known {
                return self.drop(DropReason::Stale);
            }
        }
        if let Some(owner) = self.owner_elsewhere(conv, now, may_forward) {
            return self.forward(owner, may_forward);
        }
        if let Some(r) = self.refuses_start(&progress) {
            return self.drop(r);
        }
        let echoed = rkcp_engine::find_echo_reply(kcp, conv);
        let address_proven = echoed.is_some_and(|ts| self.cookies.check(now, remote, conv, ts));
        let limits_reached = self.unverified.len() >= self.max_unverified
            || self.unverified.count_from(remote.ip())
                >= self.config.listener.admission.max_unverified_per_ip;
        if limits_reached && !address_proven {
            // No state for this peer: ask it to prove its address (stateless, no amplification).
            let wnd = self
                .config
                .listener
                .admission
                .unverified_window
                .min(u32::from(u16::MAX)) as u16;
            return match self.ask_to_prove(now, remote, pkt, conv, wnd) {
                Some(r) => r,
                None => self.drop(DropReason::Unverified),
            };
        }
        if let Some(r) = self.claim(conv, now, may_forward) {
            return r;
        }
        let sealer = self.crypt.as_ref().map(|c| kcp_go_halves(c).0);
        let conn = match Connection::new(conv, &self.config, sealer) {
            Ok(mut c) => {
                if address_proven {
                    c.address_proven_by_cookie();
                } else {
                    c.start_unverified(now, self.config.listener.admission.unverified_window);
                }
                c
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot create KCP session");
                return self.drop(DropReason::NotAccepting);
            }
        };
        let handle = ConnHandle(self.next_handle);
        self.next_handle += 1;
        self.routes.insert(handle, remote, conv, progress);
        if !address_proven {
            self.unverified.insert(handle, now, remote.ip());
        }
        self.convs.remember(conv, now);
        if let Some(print) = start_print {
            self.convs.note_start(conv, print);
        }
        self.unaccepted += 1;
        self.stats.created += 1;
        Routed {
            moved: None,
            action: Action::Accept(handle, Box::new(conn), &pkt[range]),
        }
    }

    /// Why a datagram that would start a connection may not (`None`: it may).
    fn refuses_start(&self, progress: &Progress) -> Option<DropReason> {
        if progress.una() != Some(0) {
            Some(DropReason::NotAStart)
        } else if !self.accepting {
            Some(DropReason::NotAccepting)
        } else if self.routes.len() >= self.config.listener.max_sessions {
            Some(DropReason::SessionCap)
        } else if self.unaccepted >= self.config.listener.accept_backlog {
            Some(DropReason::BacklogFull)
        } else {
            None
        }
    }

    /// [`Endpoint::handle`] for the AEAD kinds (`proto::keyed`): the session id routes, the session's own
    /// opener authenticates and refuses replays, and a fresh authenticated start is a verified connection (a
    /// key holder's datagram; no stranger can forge one, and no replay is fresh).
    fn handle_keyed<'a>(
        &mut self,
        now: Timestamp,
        remote: SocketAddr,
        pkt: &'a mut [u8],
        may_forward: bool,
    ) -> Routed<'a> {
        let unix_ms = rkcp_crypt::unix_time_ms();
        let Some(keyed) = self.keyed.as_mut() else {
            return self.drop(DropReason::NotAccepting);
        };
        let opened = match keyed.open(pkt, unix_ms) {
            Ok(o) => o,
            Err(r) => return self.drop(r),
        };
        match opened {
            KeyedOpen::Known(h, o) => {
                if o.payload.len() < rkcp_engine::OVERHEAD {
                    return self.drop(DropReason::Short);
                }
                // Authentic and not a replay (its window said so): delivered wherever it came from; only a
                // datagram newer than all before moves the session (an older one is late, from an old address).
                let mut moved = None;
                if o.newest && self.routes.remote(h) != Some(remote) {
                    self.relocate(h, remote, now);
                    moved = Some(h);
                }
                Routed {
                    moved,
                    action: Action::Deliver(h, &pkt[o.payload]),
                }
            }
            KeyedOpen::New {
                id,
                sealer,
                opener,
                opened,
            } => {
                let range = opened.payload;
                let kcp = match rkcp_fec::classify(pkt.get(range.clone()).unwrap_or_default()) {
                    Classified::Plain(k) | Classified::Data(k) => k,
                    Classified::Parity | Classified::Truncated => {
                        return self.parity_elsewhere(remote, may_forward);
                    }
                };
                let Some((conv, _)) = rkcp_engine::segment::conv_and_sn(kcp) else {
                    return self.drop(DropReason::Short);
                };
                let progress = Progress::of(kcp, conv);
                // A live session of another shard whose peer moved here (its id is unknown to this
                // shard), or a replay of one: its owner judges it.
                if let Some(owner) = self.owner_elsewhere(conv, now, may_forward) {
                    return self.forward(owner, may_forward);
                }
                if let Some(r) = self.refuses_start(&progress) {
                    return self.drop(r);
                }
                if let Some(r) = self.claim(conv, now, may_forward) {
                    return r;
                }
                let conn = match Connection::new(conv, &self.config, Some(sealer)) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot create KCP session");
                        return self.drop(DropReason::NotAccepting);
                    }
                };
                let handle = ConnHandle(self.next_handle);
                let Some(keyed) = self.keyed.as_mut() else {
                    return self.drop(DropReason::NotAccepting);
                };
                if !keyed.insert(id, handle, opener, unix_ms) {
                    return self.drop(DropReason::Replayed);
                }
                self.next_handle += 1;
                self.routes.insert(handle, remote, conv, progress);
                self.unaccepted += 1;
                self.stats.created += 1;
                self.stats.verified += 1;
                Routed {
                    moved: None,
                    action: Action::Accept(handle, Box::new(conn), &pkt[range]),
                }
            }
        }
    }

    /// A datagram of a live conversation from an address its connection is not at, showing nothing newer than
    /// what the connection has seen: a replay, a late datagram from the peer's old address, or the peer itself
    /// after its NAT rebound in the middle of a burst (nothing newer comes if it then waits for us). Such a
    /// sender is asked to prove it receives at this address: an echo request carrying a cookie (stateless, no
    /// larger than the datagram). The answer, a datagram echoing that cookie from the same address, moves the
    /// connection there; a replaying stranger never sees the cookie (with a cipher).
    fn check_path<'a>(
        &mut self,
        now: Timestamp,
        remote: SocketAddr,
        pkt: &'a mut [u8],
        range: std::ops::Range<usize>,
        conv: u32,
        echoed: Option<u32>,
    ) -> Routed<'a> {
        if let Some(ts) = echoed
            && self.cookies.check(now, remote, conv, ts)
            && let Some(h) = self.routes.only(conv)
        {
            self.relocate(h, remote, now);
            return Routed {
                moved: Some(h),
                action: Action::Deliver(h, &pkt[range]),
            };
        }
        self.stats.stale += 1;
        // The request's window field is read by the peer: the configured window, corrected by the connection's
        // next datagram.
        let wnd = self.config.kcp.rcv_wnd.min(u32::from(u16::MAX)) as u16;
        self.ask_to_prove(now, remote, pkt, conv, wnd)
            .unwrap_or(Routed {
                moved: None,
                action: Action::Drop(DropReason::Stale),
            })
    }

    /// A stateless echo request carrying the cookie of `remote`/`conv`, written over `pkt` (never larger), while
    /// the rate of such replies allows ([`Admission::max_address_checks_per_sec`]); `None`: no reply.
    fn ask_to_prove<'a>(
        &mut self,
        now: Timestamp,
        remote: SocketAddr,
        pkt: &'a mut [u8],
        conv: u32,
        wnd: u16,
    ) -> Option<Routed<'a>> {
        if !self.checks.take(now) {
            return None;
        }
        let cookie = self.cookies.cookie(now, remote, conv);
        let n = seal_echo_request(self.crypt.as_ref(), pkt, conv, cookie, wnd)?;
        self.stats.address_checks += 1;
        Some(Routed {
            moved: None,
            action: Action::Respond(&pkt[..n]),
        })
    }

    fn drop<'a>(&mut self, reason: DropReason) -> Routed<'a> {
        let s = &mut self.stats;
        match reason {
            DropReason::Short => s.short += 1,
            DropReason::Checksum => s.checksum += 1,
            DropReason::UnknownPeer => s.unknown_peer += 1,
            DropReason::Stale => s.stale += 1,
            DropReason::NotAStart => s.not_a_start += 1,
            DropReason::Unverified => s.unverified_limit += 1,
            DropReason::Replayed => s.replayed += 1,
            DropReason::NotFresh => s.not_fresh += 1,
            DropReason::BacklogFull => s.backlog_full += 1,
            DropReason::SessionCap => s.session_cap += 1,
            DropReason::NotAccepting => s.not_accepting += 1,
        }
        Routed {
            moved: None,
            action: Action::Drop(reason),
        }
    }

    /// The application took a connection from the backlog (or the backlog dropped one).
    pub(crate) fn accepted(&mut self) {
        self.unaccepted = self.unaccepted.saturating_sub(1);
    }

    /// The connection's peer proved its address: it no longer counts against the unverified limits.
    pub(crate) fn verified(&mut self, handle: ConnHandle) {
        if self.unverified.remove(handle) {
            self.stats.verified += 1;
        }
    }

    /// A connection closed: nothing routes to it any more, and its conversation id is remembered for the
    /// replay window.
    pub(crate) fn forget(&mut self, handle: ConnHandle, now: Timestamp) {
        // An unverified connection's slot stays taken until its deadline (see `Unverified`).
        self.unverified.close(handle);
        if let Some(k) = self.keyed.as_mut() {
            k.remove(handle);
        }
        let at = self.routes.remote(handle);
        if let Some(conv) = self.routes.remove(handle) {
            self.convs.remember(conv, now);
            if let Some(sh) = &self.shard {
                if !self.routes.has_conv(conv) {
                    sh.owners.release(conv, sh.index, now);
                }
                if let Some(at) = at
                    && self.routes.by_addr(at).is_none()
                {
                    sh.owners.left(at, sh.index);
                }
            }
        }
    }

    /// When [`Endpoint::handle_timeout`] is next due: the oldest unverified connection's deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Timestamp> {
        self.unverified
            .oldest()
            .map(|t| t.add_millis(self.unverified_timeout_ms))
    }

    /// Takes the connections that stayed unverified too long into `expired` (the driver closes them and
    /// then calls [`Endpoint::forget`]).
    pub(crate) fn handle_timeout(&mut self, now: Timestamp, expired: &mut Vec<ConnHandle>) {
        let before = expired.len();
        if let Some(cutoff) = now.as_millis().checked_sub(self.unverified_timeout_ms) {
            self.unverified
                .take_older(Timestamp::from_millis(cutoff), expired);
        }
        self.stats.unverified_expired += (expired.len() - before) as u64;
        self.convs.expire(now);
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

    /// Drops counted by reason, connections created, verified, moved.
    pub(crate) fn stats(&self) -> ListenerStats {
        let mut s = self.stats;
        s.unverified = self.unverified.live() as u64;
        s.replay_record_overflow = self.convs.overflowed;
        s
    }
}

fn deliver(h: ConnHandle, data: &[u8]) -> Routed<'_> {
    Routed {
        moved: None,
        action: Action::Deliver(h, data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ListenerConfig;
    use crate::proto::admission::Admission;
    use rkcp_engine::{Command, SegmentHeader};
    use std::time::Duration;

    fn seg(conv: u32, cmd: Command, ts: u32, sn: u32, una: u32) -> Vec<u8> {
        let mut p = vec![0u8; 24];
        SegmentHeader {
            conv,
            cmd,
            frg: 0,
            wnd: 32,
            ts,
            sn,
            una,
            len: 0,
        }
        .encode(&mut p);
        p
    }

    /// A session start: the first data segment of `conv`.
    fn start(conv: u32) -> Vec<u8> {
        seg(conv, Command::Push, 1, 0, 0)
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn kind(r: &Routed<'_>) -> &'static str {
        match r.action {
            Action::Deliver(..) => "deliver",
            Action::Accept(..) => "accept",
            Action::Respond(..) => "respond",
            Action::Drop(_) => "drop",
            Action::Forward(_) => "forward",
        }
    }

    /// What the endpoint does with `p` from `from`, and whether a connection moved.
    fn route(
        ep: &mut Endpoint,
        t: Timestamp,
        from: SocketAddr,
        mut p: Vec<u8>,
    ) -> (&'static str, Option<ConnHandle>) {
        let r = ep.handle(t, from, &mut p);
        (kind(&r), r.moved)
    }

    /// [`route`] for a datagram another shard forwarded.
    fn route_fwd(
        ep: &mut Endpoint,
        t: Timestamp,
        from: SocketAddr,
        mut p: Vec<u8>,
    ) -> (&'static str, Option<ConnHandle>) {
        let r = ep.handle_forwarded(t, from, &mut p);
        (kind(&r), r.moved)
    }

    fn accept(ep: &mut Endpoint, t: Timestamp, from: SocketAddr, mut p: Vec<u8>) -> ConnHandle {
        let r = ep.handle(t, from, &mut p);
        let Action::Accept(h, ..) = r.action else {
            panic!("not accepted: {:?}", r.action)
        };
        ep.accepted();
        h
    }

    #[test]
    fn routes_by_path_and_counts_every_drop() {
        let mut ep = Endpoint::new(KcpConfig {
            listener: ListenerConfig {
                accept_backlog: 2,
                max_sessions: 5,
                ..ListenerConfig::default()
            },
            ..KcpConfig::default()
        });
        let t = Timestamp::from_millis(0);
        let h1 = accept(&mut ep, t, addr(1), start(7));
        assert_eq!(
            kind(&ep.handle(t, addr(1), &mut seg(7, Command::Push, 2, 1, 0))),
            "deliver"
        );
        // Another conversation from the same address is another connection; the first one lives on.
        let h2 = accept(&mut ep, t, addr(1), start(8));
        assert_ne!(h1, h2);
        let mut p = seg(7, Command::Push, 3, 2, 0);
        assert!(matches!(ep.handle(t, addr(1), &mut p).action, Action::Deliver(h, _) if h == h1));
        // Parity (no conversation id) goes to the connection the address created last.
        let mut parity = vec![0u8; 30];
        parity[4] = 0xF2;
        assert!(
            matches!(ep.handle(t, addr(1), &mut parity.clone()).action, Action::Deliver(h, _) if h == h2)
        );
        assert_eq!(kind(&ep.handle(t, addr(5), &mut parity)), "drop");
        // Backlog of 2, then a cap of 4 live connections.
        assert_eq!(kind(&ep.handle(t, addr(2), &mut start(1))), "accept");
        assert_eq!(kind(&ep.handle(t, addr(3), &mut start(2))), "accept");
        assert_eq!(kind(&ep.handle(t, addr(4), &mut start(3))), "drop");
        ep.accepted();
        ep.accepted();
        assert_eq!(kind(&ep.handle(t, addr(4), &mut start(3))), "accept");
        assert_eq!(kind(&ep.handle(t, addr(7), &mut start(10))), "drop");
        assert_eq!(kind(&ep.handle(t, addr(5), &mut [0u8; 10])), "drop");
        ep.stop_accepting();
        ep.forget(h2, t);
        assert_eq!(ep.len(), 4);
        assert_eq!(kind(&ep.handle(t, addr(6), &mut start(4))), "drop");
        let s = ep.stats();
        assert_eq!((s.created, s.backlog_full, s.session_cap), (5, 1, 1));
        assert_eq!(
            (s.short, s.unknown_peer, s.not_accepting, s.checksum),
            (1, 1, 1, 0)
        );
        assert_eq!(s.unverified, 4, "h2 was forgotten");
    }

    #[test]
    fn replays_create_nothing_from_anywhere() {
        let mut ep = Endpoint::new(KcpConfig::default().with_listener(ListenerConfig {
            admission: Admission {
                replay_window: Duration::from_secs(60),
                ..Admission::default()
            },
            ..ListenerConfig::default()
        }));
        let t = Timestamp::from_millis(1000);
        let h = accept(&mut ep, t, addr(1), start(7));
        // The same opening datagram from other ports: its connection received it, so these are replays.
        // Nothing is created or moved, and nothing is sent back.
        for port in 2..100 {
            assert_eq!(route(&mut ep, t, addr(port), start(7)), ("drop", None));
        }
        // A later datagram of the live conversation from another port is not newer: its sender is only asked
        // to prove it receives there (a stranger cannot answer).
        assert_eq!(
            route(&mut ep, t, addr(2), seg(7, Command::Push, 1, 1, 0)),
            ("respond", None)
        );
        // A wrong answer moves nothing either.
        assert_eq!(
            route(
                &mut ep,
                t,
                addr(2),
                seg(7, Command::Ack, 12345, rkcp_engine::ECHO_SN, 0)
            ),
            ("respond", None)
        );
        // A datagram that is not a session start (its sender had data from us) creates nothing.
        assert_eq!(
            kind(&ep.handle(t, addr(3), &mut seg(9, Command::Push, 1, 5, 3))),
            "drop"
        );
        assert_eq!(
            kind(&ep.handle(t, addr(3), &mut seg(9, Command::Ack, 1, 5, 3))),
            "drop"
        );
        // After the session closed, its conversation is remembered for the window, even from its own address.
        ep.forget(h, t);
        let later = t.add_millis(59_000);
        assert_eq!(kind(&ep.handle(later, addr(1), &mut start(7))), "drop");
        assert_eq!(kind(&ep.handle(later, addr(4), &mut start(7))), "drop");
        let s = ep.stats();
        assert_eq!((s.stale, s.not_a_start, s.created), (98 + 2 + 2, 2, 1));
        assert_eq!((s.address_checks, s.roamed), (2, 0));
        // Beyond the window the record forgets (the documented limit of kcp-go-compatible mode).
        assert_eq!(
            kind(&ep.handle(t.add_millis(61_000), addr(4), &mut start(7))),
            "accept"
        );
    }

    /// The connection `p` from `from` is delivered to (panics otherwise).
    fn delivered(ep: &mut Endpoint, t: Timestamp, from: SocketAddr, mut p: Vec<u8>) -> ConnHandle {
        match ep.handle(t, from, &mut p).action {
            Action::Deliver(h, _) => h,
            other => panic!("not delivered: {other:?}"),
        }
    }

    #[test]
    fn peers_that_picked_the_same_id_get_a_connection_each() {
        let mut ep = Endpoint::new(KcpConfig::default());
        let t = Timestamp::from_millis(5000);
        let a = accept(&mut ep, t, addr(1), start(7));
        // A's first datagram resent (a later ts) reaches its connection and is remembered too.
        let resent = seg(7, Command::Push, 40, 0, 0);
        assert_eq!(delivered(&mut ep, t, addr(1), resent.clone()), a);
        // Two more peers picked 7, one with a clock behind A's, one ahead (that one would look like A moving).
        let b_start = seg(7, Command::Push, 25, 0, 0);
        let b = accept(&mut ep, t, addr(2), b_start.clone());
        let c = accept(&mut ep, t, addr(4), seg(7, Command::Push, 900, 0, 0));
        assert!(a != b && b != c && a != c);
        assert_eq!(ep.stats().roamed, 0);
        for (from, h, ts) in [(1, a, 50), (2, b, 30), (4, c, 901)] {
            assert_eq!(
                delivered(&mut ep, t, addr(from), seg(7, Command::Push, ts, 1, 0)),
                h
            );
        }
        // Replays of any start that reached a connection, from anywhere, create nothing.
        for p in [start(7), resent, b_start] {
            assert_eq!(route(&mut ep, t, addr(3), p), ("drop", None));
        }
        assert_eq!(ep.stats().created, 3);
    }

    #[test]
    fn a_connection_follows_its_peer_only_on_newer_progress() {
        let mut ep = Endpoint::new(KcpConfig::default());
        let t = Timestamp::from_millis(5000);
        let h = accept(&mut ep, t, addr(1), start(7));
        assert_eq!(
            kind(&ep.handle(t, addr(1), &mut seg(7, Command::Push, 50, 1, 0))),
            "deliver"
        );
        // Replayed from elsewhere: not newer; the sender must prove it receives there.
        assert_eq!(
            route(&mut ep, t, addr(2), seg(7, Command::Push, 50, 1, 0)),
            ("respond", None)
        );
        // The NAT rebinds: the peer's next datagram shows newer data.
        assert_eq!(
            route(&mut ep, t, addr(2), seg(7, Command::Push, 60, 2, 0)),
            ("deliver", Some(h))
        );
        assert_eq!(
            kind(&ep.handle(t, addr(2), &mut seg(7, Command::Push, 61, 3, 0))),
            "deliver"
        );
        // A late datagram from the old address cannot pull it back by itself.
        assert_eq!(
            route(&mut ep, t, addr(1), seg(7, Command::Push, 55, 1, 0)),
            ("respond", None)
        );
        // An acknowledgement of something we sent later (our clock, not in the future) moves it too.
        assert_eq!(
            route(
                &mut ep,
                t,
                addr(3),
                seg(7, Command::Ack, t.engine() - 10, 0, 1)
            ),
            ("deliver", Some(h))
        );
        assert_eq!(
            route(
                &mut ep,
                t,
                addr(4),
                seg(7, Command::Ack, t.engine() + 10, 1, 1)
            ),
            ("respond", None),
            "an echo from the future is forged"
        );
        // A peer whose NAT rebound mid-burst shows nothing newer, then waits: it answers the path check from
        // its new address, and that moves the connection.
        let mut p = seg(7, Command::Push, 61, 3, 1);
        let r = ep.handle(t, addr(5), &mut p);
        let Action::Respond(req) = r.action else {
            panic!("{:?}", r.action)
        };
        let req = SegmentHeader::decode(req).unwrap();
        assert_eq!((req.sn, req.wnd), (rkcp_engine::ECHO_SN, 32));
        let answer = seg(7, Command::Ack, req.ts, rkcp_engine::ECHO_SN, 1);
        assert_eq!(
            route(&mut ep, t, addr(6), answer.clone()),
            ("respond", None),
            "from elsewhere"
        );
        assert_eq!(route(&mut ep, t, addr(5), answer), ("deliver", Some(h)));
        assert_eq!(ep.stats().roamed, 3);
    }

    /// Two shards sharing one owners map (a sharded listener): the kernel sends a moved peer to the other
    /// shard, which hands its datagrams to the owner; the owner's rules decide.
    #[test]
    fn shards_forward_what_another_shard_owns_and_never_create_twice() {
        use crate::proto::shard::{Owners, ShardLink};
        let owners = std::sync::Arc::new(Owners::new(60_000, 1 << 16));
        let shard = |index| {
            Endpoint::new(KcpConfig::default()).with_shard(ShardLink {
                index,
                owners: std::sync::Arc::clone(&owners),
            })
        };
        let (mut a, mut b) = (shard(0), shard(1));
        let t = Timestamp::from_millis(5000);
        let h = accept(&mut a, t, addr(1), start(7));
        let old = seg(7, Command::Push, 50, 1, 0);
        assert_eq!(kind(&a.handle(t, addr(1), &mut old.clone())), "deliver");

        // A replay of the start, and of a later datagram, from a new port that the kernel gives to shard b:
        // handed to a, which neither creates nor moves anything (the replayed start is dropped, the other
        // sender is asked for a path check).
        for (p, verdict) in [(start(7), "drop"), (old.clone(), "respond")] {
            assert_eq!(route(&mut b, t, addr(2), p.clone()), ("forward", None));
            assert_eq!(route_fwd(&mut a, t, addr(2), p), (verdict, None));
        }
        // The NAT rebinds: newer data, at shard b, reaches a and moves the connection.
        let newer = seg(7, Command::Push, 60, 2, 0);
        assert!(matches!(
            b.handle(t, addr(3), &mut newer.clone()).action,
            Action::Forward(0)
        ));
        assert_eq!(route_fwd(&mut a, t, addr(3), newer), ("deliver", Some(h)));
        assert_eq!(
            kind(&a.handle(t, addr(3), &mut seg(7, Command::Push, 61, 3, 0))),
            "deliver"
        );
        // FEC parity (no conversation id) from the new address at b goes to a too, by address.
        let mut parity = vec![0u8; 30];
        parity[4] = 0xF2;
        assert_eq!(route(&mut b, t, addr(3), parity.clone()), ("forward", None));
        assert!(
            matches!(a.handle_forwarded(t, addr(3), &mut parity.clone()).action, Action::Deliver(x, _) if x == h)
        );
        assert_eq!(
            route(&mut b, t, addr(1), parity.clone()),
            ("drop", None),
            "a left its old address"
        );
        // A forwarded datagram is never forwarded again: one b owns is dropped at a.
        let hb = accept(&mut b, t, addr(9), start(8));
        assert_eq!(route_fwd(&mut a, t, addr(4), start(8)), ("drop", None));
        // b's conversation from a's side: forwarded, before any check of a's own.
        assert!(matches!(
            a.handle(t, addr(4), &mut start(8)).action,
            Action::Forward(1)
        ));
        // Another peer that picked 7 starts at b (after a's peer moved): handed to a, which gives it a connection of its own.
        let other = seg(7, Command::Push, 33, 0, 0);
        assert_eq!(route(&mut b, t, addr(6), other.clone()), ("forward", None));
        let Action::Accept(ho, ..) = a.handle_forwarded(t, addr(6), &mut other.clone()).action
        else {
            panic!("the other peer got no connection");
        };
        a.accepted();
        a.forget(ho, t);
        // After a closes its connection, its conversation stays a's for the replay window: a replayed start
        // at b still goes to a, which refuses it.
        a.forget(h, t);
        assert!(matches!(
            b.handle(t.add_millis(59_000), addr(5), &mut start(7))
                .action,
            Action::Forward(0)
        ));
        assert_eq!(
            route_fwd(&mut a, t.add_millis(59_000), addr(5), start(7)),
            ("drop", None)
        );
        // Beyond it, any shard may start the conversation again.
        assert_eq!(
            kind(&b.handle(t.add_millis(61_000), addr(5), &mut start(7))),
            "accept"
        );
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!((sa.created, sb.created), (2, 2));
        assert_eq!((sa.roamed, sa.forwarded, sb.forwarded), (1, 1, 6));
        let _ = hb;
    }

    #[test]
    fn address_checks_are_rate_limited_on_both_paths() {
        let mut ep = Endpoint::new(KcpConfig::default().with_listener(ListenerConfig {
            admission: Admission {
                max_unverified_per_ip: 1,
                max_address_checks_per_sec: 3,
                ..Admission::default()
            },
            ..ListenerConfig::default()
        }));
        let t = Timestamp::from_millis(1000);
        accept(&mut ep, t, addr(1), start(1));
        // New peers beyond the per-IP cap, then the live conversation from elsewhere (a path check).
        let not_newer = seg(1, Command::Push, 1, 1, 0);
        assert_eq!(route(&mut ep, t, addr(2), start(2)), ("respond", None));
        assert_eq!(route(&mut ep, t, addr(3), start(3)), ("respond", None));
        assert_eq!(
            route(&mut ep, t, addr(4), not_newer.clone()),
            ("respond", None)
        );
        assert_eq!(route(&mut ep, t, addr(5), start(5)), ("drop", None));
        assert_eq!(route(&mut ep, t, addr(6), not_newer), ("drop", None));
        let s = ep.stats();
        assert_eq!((s.address_checks, s.unverified_limit, s.stale), (3, 1, 2));
        // A second later the bucket has refilled.
        assert_eq!(
            route(&mut ep, t.add_millis(1000), addr(5), start(5)),
            ("respond", None)
        );
    }

    #[test]
    fn beyond_the_unverified_limits_new_peers_must_echo_a_cookie() {
        let mut ep = Endpoint::new(KcpConfig::default().with_listener(ListenerConfig {
            accept_backlog: 1000,
            admission: Admission {
                max_unverified_per_ip: 3,
                unverified_timeout: Duration::from_secs(5),
                ..Admission::default()
            },
            ..ListenerConfig::default()
        }));
        let t = Timestamp::from_millis(10_000);
        for port in 1..=3 {
            accept(&mut ep, t, addr(port), start(u32::from(port)));
        }
        // The fourth from this IP gets no state, only an echo request carrying a cookie, no larger than
        // what it sent.
        let mut p = start(4);
        p.extend_from_slice(&[0u8; 100]);
        p[20..24].copy_from_slice(&100u32.to_le_bytes());
        let r = ep.handle(t, addr(4), &mut p);
        let Action::Respond(reply) = r.action else {
            panic!("{:?}", r.action)
        };
        let req = SegmentHeader::decode(reply).unwrap();
        assert_eq!((req.conv, req.sn, req.len), (4, rkcp_engine::ECHO_SN, 0));
        assert_eq!(ep.len(), 3);
        // A spoofer guessing the cookie gets nothing; the real peer echoes it and gets a verified connection.
        let mut guess = seg(4, Command::Ack, req.ts ^ 1, rkcp_engine::ECHO_SN, 0);
        assert_eq!(kind(&ep.handle(t, addr(4), &mut guess)), "respond");
        let mut echo = seg(4, Command::Ack, req.ts, rkcp_engine::ECHO_SN, 0);
        echo.extend(start(4));
        let r = ep.handle(t.add_millis(30), addr(4), &mut echo);
        let Action::Accept(_, conn, _) = r.action else {
            panic!("{:?}", r.action)
        };
        assert!(conn.verified());
        let s = ep.stats();
        assert_eq!((s.address_checks, s.unverified, s.created), (2, 3, 4));
        // Another IP still gets state at once.
        let other = SocketAddr::from(([127, 0, 0, 2], 1));
        assert_eq!(kind(&ep.handle(t, other, &mut start(5))), "accept");
        // The unverified ones expire; the driver closes and forgets them.
        assert_eq!(ep.poll_timeout(), Some(t.add_millis(5000)));
        let mut expired = Vec::new();
        ep.handle_timeout(t.add_millis(4999), &mut expired);
        assert!(expired.is_empty());
        ep.handle_timeout(t.add_millis(5000), &mut expired);
        assert_eq!(expired.len(), 4);
        assert_eq!(ep.stats().unverified_expired, 4);
        assert_eq!(ep.poll_timeout(), None);
    }
}
