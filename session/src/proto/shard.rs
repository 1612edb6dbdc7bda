//! Sharding a listener across sockets (`SO_REUSEPORT`): which shard owns a conversation.
//!
//! Each shard has its own [`Endpoint`](crate::proto::endpoint::Endpoint); the kernel picks a shard by a hash
//! of the datagram's 4-tuple, so all datagrams of one peer address reach one shard — until the peer moves (a
//! NAT rebinding its port, a client changing its socket), when they may reach another. The endpoints share
//! one [`Owners`] map, conversation id → owning shard, consulted only when an endpoint does not know a
//! conversation itself (no route, not in its replay record); a datagram of a conversation another shard
//! owns is handed to that shard ([`Action::Forward`](crate::proto::endpoint::Action::Forward)), whose
//! endpoint applies its normal rules (roaming on newer progress, path checks, replay refusals). A shard
//! creates a connection only after *claiming* its conversation here, so no conversation is created on two
//! shards, whatever the race.
//!
//! An entry lives while its conversation has a connection on the owning shard, and for the replay window
//! after the last one closed (as the shard's own replay record), so that a replay arriving at another shard
//! is still refused by the owner. The map is striped (one small lock per stripe, taken once per session
//! creation and close, and per datagram only for conversations the receiving shard does not know).

use std::collections::HashMap;
use std::net::SocketAddr;

use parking_lot::Mutex;

use crate::proto::time::Timestamp;

const STRIPES: usize = 64;

/// A live entry (no close time yet).
const LIVE: u64 = u64::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    shard: u16,
    /// When the owner's last connection of this conversation closed (ms; [`LIVE`] while one is open).
    closed_at: u64,
}

/// Conversation id → owning shard, shared by the endpoints of one sharded listener.
#[derive(Debug)]
pub(crate) struct Owners {
    stripes: Vec<Mutex<HashMap<u32, Entry>>>,
    /// Where connections that moved are now → their shard: FEC parity carries no conversation id, so a
    /// moved peer's parity that reaches another shard is handed over by its address.
    moved: Vec<Mutex<HashMap<SocketAddr, u16>>>,
    window_ms: u64,
    /// Entries per stripe beyond which closed ones are forgotten early.
    stripe_cap: usize,
}

impl Owners {
    /// A map for a listener whose endpoints remember closed conversations for `window_ms`, with room for
    /// about `cap` entries (live and closed; beyond it closed ones are forgotten early, live ones never).
    pub(crate) fn new(window_ms: u64, cap: usize) -> Owners {
        Owners {
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
            moved: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
            window_ms,
            stripe_cap: cap.div_ceil(STRIPES).max(16),
        }
    }

    fn stripe(&self, conv: u32) -> &Mutex<HashMap<u32, Entry>> {
        &self.stripes[(conv.wrapping_mul(0x9E37_79B9) >> 26) as usize % STRIPES]
    }

    fn moved_stripe(&self, a: SocketAddr) -> &Mutex<HashMap<SocketAddr, u16>> {
        let ip = match a.ip() {
            std::net::IpAddr::V4(v) => u32::from(v),
            std::net::IpAddr::V6(v) => (u128::from(v) as u32) ^ ((u128::from(v) >> 64) as u32),
        };
        let h = (ip ^ u32::from(a.port()).rotate_left(16)).wrapping_mul(0x9E37_79B9);
        &self.moved[(h >> 26) as usize % STRIPES]
    }

    /// A connection of shard `me` moved from `old` to `new`.
    pub(crate) fn moved(&self, old: Option<SocketAddr>, new: SocketAddr, me: usize) {
        if let Some(old) = old {
            self.left(old, me);
        }
        self.moved_stripe(new).lock().insert(new, me as u16);
    }

    /// Shard `me` has no connection at `a` any more.
    pub(crate) fn left(&self, a: SocketAddr, me: usize) {
        let mut s = self.moved_stripe(a).lock();
        if s.get(&a) == Some(&(me as u16)) {
            s.remove(&a);
        }
    }

    /// The shard other than `me` that a connection moved to `a` belongs to.
    pub(crate) fn moved_to_besides(&self, a: SocketAddr, me: usize) -> Option<usize> {
        let s = self.moved_stripe(a).lock();
        s.get(&a).map(|&i| usize::from(i)).filter(|&i| i != me)
    }

    fn current(&self, e: &Entry, now: Timestamp) -> bool {
        e.closed_at == LIVE || e.closed_at.saturating_add(self.window_ms) > now.as_millis()
    }

    /// The shard other than `me` that owns `conv` (live, or closed within the window), if any.
    pub(crate) fn owner_besides(&self, conv: u32, me: usize, now: Timestamp) -> Option<usize> {
        let s = self.stripe(conv).lock();
        s.get(&conv)
            .filter(|e| usize::from(e.shard) != me && self.current(e, now))
            .map(|e| usize::from(e.shard))
    }

    /// Claims `conv` for shard `me` (it is about to create a connection of it). `Err(owner)` if another
    /// shard owns it.
    pub(crate) fn claim(&self, conv: u32, me: usize, now: Timestamp) -> Result<(), usize> {
        let mut s = self.stripe(conv).lock();
        if let Some(e) = s.get(&conv)
            && usize::from(e.shard) != me
            && self.current(e, now)
        {
            return Err(usize::from(e.shard));
        }
        if s.len() >= self.stripe_cap && !s.contains_key(&conv) {
            s.retain(|_, e| self.current(e, now));
            if s.len() >= self.stripe_cap {
                // Full of recently closed ones: forget those (the owners' own records still refuse what
                // reaches them directly; what roams across shards is then judged by the receiving shard).
                s.retain(|_, e| e.closed_at == LIVE);
            }
        }
        s.insert(
            conv,
            Entry {
                shard: me as u16,
                closed_at: LIVE,
            },
        );
        Ok(())
    }

    /// Shard `me` closed its last connection of `conv`: the entry stays for the window.
    pub(crate) fn release(&self, conv: u32, me: usize, now: Timestamp) {
        let mut s = self.stripe(conv).lock();
        if let Some(e) = s.get_mut(&conv)
            && usize::from(e.shard) == me
        {
            e.closed_at = now.as_millis();
        }
    }
}

/// An endpoint's place in a sharded listener.
#[derive(Debug, Clone)]
pub(crate) struct ShardLink {
    pub(crate) index: usize,
    pub(crate) owners: std::sync::Arc<Owners>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_per_conversation_for_the_window() {
        let o = Owners::new(1000, 1 << 16);
        let t = Timestamp::from_millis;
        assert_eq!(o.claim(7, 0, t(0)), Ok(()));
        assert_eq!(o.claim(7, 1, t(1)), Err(0));
        assert_eq!(o.owner_besides(7, 1, t(1)), Some(0));
        assert_eq!(o.owner_besides(7, 0, t(1)), None);
        assert_eq!(o.claim(7, 0, t(2)), Ok(()), "the owner may claim again");
        o.release(7, 1, t(3));
        assert_eq!(
            o.owner_besides(7, 1, t(3)),
            Some(0),
            "only the owner releases"
        );
        o.release(7, 0, t(10));
        assert_eq!(o.owner_besides(7, 1, t(1009)), Some(0), "remembered");
        assert_eq!(o.claim(7, 1, t(1009)), Err(0));
        assert_eq!(o.owner_besides(7, 1, t(1010)), None, "expired");
        assert_eq!(o.claim(7, 1, t(1010)), Ok(()));
        assert_eq!(o.owner_besides(7, 0, t(1010)), Some(1));
    }

    /// Shards racing to create the same conversations (threads, as the read loops run on runtime
    /// workers): exactly one claim per conversation wins.
    #[test]
    fn racing_claims_have_one_winner() {
        let o = std::sync::Arc::new(Owners::new(1000, 1 << 16));
        let go = std::sync::Arc::new(std::sync::Barrier::new(4));
        let wins: Vec<Vec<u32>> = (0..4)
            .map(|me| {
                let (o, go) = (std::sync::Arc::clone(&o), std::sync::Arc::clone(&go));
                std::thread::spawn(move || {
                    go.wait();
                    (0..20_000u32)
                        .filter(|&c| o.claim(c, me, Timestamp::from_millis(1)).is_ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let mut all: Vec<u32> = wins.concat();
        all.sort_unstable();
        assert_eq!(all, (0..20_000).collect::<Vec<_>>());
        for (me, w) in wins.iter().enumerate() {
            for &c in w.iter().take(100) {
                assert_eq!(
                    o.owner_besides(c, (me + 1) % 4, Timestamp::from_millis(2)),
                    Some(me)
                );
            }
        }
    }

    #[test]
    fn moved_addresses_point_to_their_shard() {
        let o = Owners::new(1000, 1 << 16);
        let a: SocketAddr = ([10, 0, 0, 1], 1).into();
        let b: SocketAddr = ([10, 0, 0, 1], 2).into();
        o.moved(None, a, 0);
        assert_eq!(o.moved_to_besides(a, 1), Some(0));
        assert_eq!(o.moved_to_besides(a, 0), None);
        o.moved(Some(a), b, 0);
        assert_eq!(o.moved_to_besides(a, 1), None);
        assert_eq!(o.moved_to_besides(b, 1), Some(0));
        o.left(b, 1);
        assert_eq!(o.moved_to_besides(b, 1), Some(0), "only the owner leaves");
        o.left(b, 0);
        assert_eq!(o.moved_to_besides(b, 1), None);
    }

    #[test]
    fn closed_entries_are_bounded_live_ones_kept() {
        let o = Owners::new(1_000_000, 64 * 16);
        let t = Timestamp::from_millis(5);
        for c in 0..20_000u32 {
            o.claim(c, 0, t).unwrap();
            if c % 2 == 1 {
                o.release(c, 0, t);
            }
        }
        let total: usize = o.stripes.iter().map(|s| s.lock().len()).sum();
        assert!(total <= 10_000 + 64 * 16, "{total}");
        for c in (0..20_000u32).step_by(2) {
            assert_eq!(o.owner_besides(c, 1, t), Some(0), "live {c} kept");
        }
    }
}
