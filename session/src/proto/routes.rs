//! The endpoint's routing table: connections by path (peer address and conversation), by address (for FEC
//! parity, which carries no conversation id) and by conversation (to follow a peer that moved), each with
//! what the peer has shown of its progress so far, to tell a moved peer from a replay.

use std::net::SocketAddr;

use rkcp_engine::{Command, SegmentHeader};

use crate::proto::endpoint::{ConnHandle, HandleMap, PeerMap};

/// How far a datagram shows its sender to be: the newest `ts` of its data segments (the peer's clock), the
/// newest `ts` its ACKs echo (our clock) and its cumulative acknowledgement `una`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    push_ts: Option<u32>,
    ack_ts: Option<u32>,
    una: Option<u32>,
    /// The datagram carries the conversation's first data segment (`sn` 0).
    first_push: bool,
}

/// `a` is later than `b` on a wrapping 32-bit clock.
fn later(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

fn max_opt(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if later(y, x) { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Progress {
    /// Reads the segment headers of one KCP datagram of conversation `conv` (stops at anything else).
    pub(crate) fn of(kcp: &[u8], conv: u32) -> Progress {
        let mut p = Progress::default();
        let mut rest = kcp;
        while let Ok(h) = SegmentHeader::decode(rest) {
            if h.conv != conv {
                break;
            }
            match h.cmd {
                Command::Push => {
                    p.push_ts = max_opt(p.push_ts, Some(h.ts));
                    p.first_push |= h.sn == 0;
                }
                Command::Ack if h.sn != rkcp_engine::ECHO_SN => {
                    p.ack_ts = max_opt(p.ack_ts, Some(h.ts));
                }
                _ => {}
            }
            p.una = max_opt(p.una, Some(h.una));
            let Some(next) = rest.get(rkcp_engine::OVERHEAD + h.len as usize..) else {
                break;
            };
            rest = next;
        }
        p
    }

    /// The cumulative acknowledgement of the datagram (`None` if it had no readable segment).
    pub(crate) fn una(&self) -> Option<u32> {
        self.una
    }

    /// A session start: the first data segment, from a peer that has received nothing from us (`una` 0).
    pub(crate) fn is_start(&self) -> bool {
        self.first_push && self.una == Some(0)
    }

    fn absorb(&mut self, p: Progress) {
        self.push_ts = max_opt(self.push_ts, p.push_ts);
        self.ack_ts = max_opt(self.ack_ts, p.ack_ts);
        self.una = max_opt(self.una, p.una);
    }

    /// Whether `p` carries something newer than everything seen so far: data sent later by the peer's
    /// clock, or an acknowledgement of something we sent later (no later than `now_engine`, our clock now),
    /// and never an older cumulative acknowledgement. A replayed datagram never does.
    fn is_advanced_by(&self, p: &Progress, now_engine: u32) -> bool {
        if let (Some(seen), Some(u)) = (self.una, p.una)
            && later(seen, u)
        {
            return false;
        }
        let newer_data = p
            .push_ts
            .is_some_and(|t| self.push_ts.is_none_or(|s| later(t, s)));
        let newer_ack = p
            .ack_ts
            .is_some_and(|t| !later(t, now_engine) && self.ack_ts.is_none_or(|s| later(t, s)));
        newer_data || newer_ack
    }
}

#[derive(Debug)]
struct Route {
    remote: SocketAddr,
    conv: u32,
    seen: Progress,
    /// The address the connection moved away from last, and when (engine clock, ms).
    left: Option<(SocketAddr, u32)>,
}

/// How long a connection that moved does not move back to the address it left on progress alone (ms). A
/// datagram the peer sent from its old address just before it moved can arrive after the first ones from
/// the new address (reordering on the way, or across the shards of a sharded listener) and still look newer
/// in one respect (an acknowledgement of something we sent later, say): it must not take the connection
/// back to an address the peer no longer reads. A peer that really returns within this time answers a path
/// check from there.
pub(crate) const RETURN_HOLD_MS: u32 = 1_000;

/// The routing table.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    conns: HandleMap<Route>,
    by_path: PeerMap<(SocketAddr, u32), ConnHandle>,
    /// The connection created or moved to an address last (parity datagrams go there).
    by_addr: PeerMap<SocketAddr, ConnHandle>,
    /// Usually one connection per conversation id; more only when peers picked the same id.
    by_conv: PeerMap<u32, Vec<ConnHandle>>,
}

impl Routes {
    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn by_path(&self, remote: SocketAddr, conv: u32) -> Option<ConnHandle> {
        self.by_path.get(&(remote, conv)).copied()
    }

    pub(crate) fn by_addr(&self, remote: SocketAddr) -> Option<ConnHandle> {
        self.by_addr.get(&remote).copied()
    }

    pub(crate) fn has_conv(&self, conv: u32) -> bool {
        self.by_conv.contains_key(&conv)
    }

    /// Whether some connection lives at `remote` (any conversation).
    #[cfg(test)]
    pub(crate) fn has_addr(&self, remote: SocketAddr) -> bool {
        self.by_addr.contains_key(&remote)
    }

    pub(crate) fn insert(&mut self, h: ConnHandle, remote: SocketAddr, conv: u32, seen: Progress) {
        self.conns.insert(
            h,
            Route {
                remote,
                conv,
                seen,
                left: None,
            },
        );
        self.by_path.insert((remote, conv), h);
        self.by_addr.insert(remote, h);
        self.by_conv.entry(conv).or_default().push(h);
    }

    /// The connection living at `remote` with conversation `conv`, which notes the progress `p` its datagram
    /// showed (the common case of a datagram: one keyed lookup, one by handle).
    pub(crate) fn saw_on_path(
        &mut self,
        remote: SocketAddr,
        conv: u32,
        p: Progress,
    ) -> Option<ConnHandle> {
        let h = self.by_path(remote, conv)?;
        self.saw(h, p);
        Some(h)
    }

    /// Notes the progress a delivered datagram showed.
    pub(crate) fn saw(&mut self, h: ConnHandle, p: Progress) {
        if let Some(r) = self.conns.get_mut(&h) {
            r.seen.absorb(p);
        }
    }

    /// The connection of `conv` living at another address that datagram progress `p` advances, if exactly one
    /// does: its peer moved.
    pub(crate) fn moved_peer(
        &self,
        conv: u32,
        remote: SocketAddr,
        p: &Progress,
        now_engine: u32,
    ) -> Option<ConnHandle> {
        let mut found = None;
        for h in self.by_conv.get(&conv)? {
            let r = &self.conns[h];
            let returning = r
                .left
                .is_some_and(|(a, at)| a == remote && now_engine.wrapping_sub(at) < RETURN_HOLD_MS);
            if !returning && r.seen.is_advanced_by(p, now_engine) {
                if found.is_some() {
                    return None;
                }
                found = Some(*h);
            }
        }
        found
    }

    /// The connection of `conv` if there is exactly one.
    pub(crate) fn only(&self, conv: u32) -> Option<ConnHandle> {
        match self.by_conv.get(&conv)?.as_slice() {
            [h] => Some(*h),
            _ => None,
        }
    }

    /// Moves `h` to `remote` at `now_engine`; returns its old address.
    pub(crate) fn relocate(
        &mut self,
        h: ConnHandle,
        remote: SocketAddr,
        now_engine: u32,
    ) -> Option<SocketAddr> {
        let r = self.conns.get_mut(&h)?;
        let old = std::mem::replace(&mut r.remote, remote);
        if old != remote {
            r.left = Some((old, now_engine));
        }
        let conv = r.conv;
        self.by_path.remove(&(old, conv));
        self.by_path.insert((remote, conv), h);
        if self.by_addr.get(&old) == Some(&h) {
            self.by_addr.remove(&old);
        }
        self.by_addr.insert(remote, h);
        Some(old)
    }

    /// Where `h`'s peer is.
    pub(crate) fn remote(&self, h: ConnHandle) -> Option<SocketAddr> {
        self.conns.get(&h).map(|r| r.remote)
    }

    /// Removes `h`; returns its conversation id.
    pub(crate) fn remove(&mut self, h: ConnHandle) -> Option<u32> {
        let r = self.conns.remove(&h)?;
        self.by_path.remove(&(r.remote, r.conv));
        if self.by_addr.get(&r.remote) == Some(&h) {
            self.by_addr.remove(&r.remote);
        }
        if let Some(v) = self.by_conv.get_mut(&r.conv) {
            v.retain(|x| *x != h);
            if v.is_empty() {
                self.by_conv.remove(&r.conv);
            }
        }
        Some(r.conv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(cmd: Command, ts: u32, sn: u32, una: u32) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        SegmentHeader {
            conv: 5,
            cmd,
            frg: 0,
            wnd: 32,
            ts,
            sn,
            una,
            len: 0,
        }
        .encode(&mut b);
        b
    }

    #[test]
    fn progress_reads_every_segment() {
        let mut d = seg(Command::Ack, 100, 3, 7);
        d.extend(seg(Command::Ack, 140, 4, 7));
        d.extend(seg(Command::Push, 9, 12, 7));
        let p = Progress::of(&d, 5);
        assert_eq!(
            p,
            Progress {
                push_ts: Some(9),
                ack_ts: Some(140),
                una: Some(7),
                first_push: false,
            }
        );
        assert!(!p.is_start());
        // The first data segment, from a peer that has received nothing: a session start.
        assert!(Progress::of(&seg(Command::Push, 9, 0, 0), 5).is_start());
        assert!(!Progress::of(&seg(Command::Push, 9, 0, 1), 5).is_start());
        assert!(!Progress::of(&seg(Command::Ack, 9, 0, 0), 5).is_start());
        assert_eq!(Progress::of(&d, 6), Progress::default());
        assert_eq!(Progress::of(&d[..30], 5).ack_ts, Some(100));
    }

    #[test]
    fn only_newer_progress_moves_a_connection() {
        let mut seen = Progress::default();
        seen.absorb(Progress::of(&seg(Command::Push, 1000, 5, 3), 5));
        seen.absorb(Progress::of(&seg(Command::Ack, 500, 1, 3), 5));
        let now = 600;
        // A replay: nothing newer.
        assert!(!seen.is_advanced_by(&Progress::of(&seg(Command::Push, 1000, 5, 3), 5), now));
        assert!(!seen.is_advanced_by(&Progress::of(&seg(Command::Ack, 450, 0, 3), 5), now));
        // Newer data, or a newer echo of our clock.
        assert!(seen.is_advanced_by(&Progress::of(&seg(Command::Push, 1001, 6, 3), 5), now));
        assert!(seen.is_advanced_by(&Progress::of(&seg(Command::Ack, 550, 2, 4), 5), now));
        // An echo of a time we have not reached is forged.
        assert!(!seen.is_advanced_by(&Progress::of(&seg(Command::Ack, 700, 2, 4), 5), now));
        // Newer data with an older cumulative ack is not the same peer going on.
        assert!(!seen.is_advanced_by(&Progress::of(&seg(Command::Push, 2000, 6, 2), 5), now));
        // Across the clock's wrap.
        let mut w = Progress::default();
        w.absorb(Progress::of(&seg(Command::Push, u32::MAX - 1, 0, 0), 5));
        assert!(w.is_advanced_by(&Progress::of(&seg(Command::Push, 3, 1, 0), 5), now));
    }

    /// The late-datagram race: the peer moved from `a` to `b` (its first datagram from `b` carried new data
    /// only); a datagram it sent from `a` just before, carrying an acknowledgement newer than any seen,
    /// arrives afterwards. It must not take the connection back to `a` (the peer no longer reads there:
    /// the session would stall, seen with a sharded listener where such datagrams are reordered), unless
    /// the return comes after the hold.
    #[test]
    fn a_late_datagram_from_the_address_left_does_not_move_back() {
        let a: SocketAddr = ([10, 0, 0, 1], 1).into();
        let b: SocketAddr = ([10, 0, 0, 1], 2).into();
        let mut r = Routes::default();
        let seen = Progress::of(&seg(Command::Push, 1000, 5, 3), 5);
        r.insert(ConnHandle(1), a, 5, seen);
        let from_b = Progress::of(&seg(Command::Push, 1010, 6, 3), 5);
        assert_eq!(r.moved_peer(5, b, &from_b, 2000), Some(ConnHandle(1)));
        r.relocate(ConnHandle(1), b, 2000);
        r.saw(ConnHandle(1), from_b);
        let late_from_a = Progress::of(&seg(Command::Ack, 1990, 1, 3), 5);
        assert_eq!(r.moved_peer(5, a, &late_from_a, 2001), None);
        assert_eq!(
            r.moved_peer(5, a, &late_from_a, 2000 + RETURN_HOLD_MS - 1),
            None
        );
        // The same progress from a third address still moves it; from `a`, only after the hold.
        let c: SocketAddr = ([10, 0, 0, 1], 3).into();
        assert_eq!(r.moved_peer(5, c, &late_from_a, 2001), Some(ConnHandle(1)));
        assert_eq!(
            r.moved_peer(5, a, &late_from_a, 2000 + RETURN_HOLD_MS),
            Some(ConnHandle(1))
        );
    }

    #[test]
    fn relocation_keeps_every_index_consistent() {
        let a: SocketAddr = ([10, 0, 0, 1], 1).into();
        let b: SocketAddr = ([10, 0, 0, 1], 2).into();
        let mut r = Routes::default();
        r.insert(ConnHandle(1), a, 5, Progress::default());
        r.insert(ConnHandle(2), a, 6, Progress::default());
        assert_eq!(r.by_addr(a), Some(ConnHandle(2)));
        assert_eq!(r.relocate(ConnHandle(1), b, 0), Some(a));
        assert_eq!(r.by_path(b, 5), Some(ConnHandle(1)));
        assert_eq!(r.by_path(a, 5), None);
        assert_eq!(r.by_addr(a), Some(ConnHandle(2)));
        assert_eq!(r.by_addr(b), Some(ConnHandle(1)));
        assert_eq!(r.remove(ConnHandle(2)), Some(6));
        assert!(!r.has_addr(a));
        assert!(!r.has_conv(6));
        assert_eq!(r.remove(ConnHandle(1)), Some(5));
        assert_eq!(r.len(), 0);
        assert!(r.by_conv.is_empty() && r.by_path.is_empty() && r.by_addr.is_empty());
    }
}
