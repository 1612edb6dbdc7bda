//! A deterministic simulated network that connects two [`Kcp`] engines.
//!
//! The engine is sans-IO (no sockets, no clock), so a whole transfer can run in virtual time: the
//! [`Network`] keeps a virtual millisecond clock that jumps straight to the next event — the earliest
//! of the datagrams in flight and both engines' [`Kcp::next_deadline`] — and drives the engines only
//! through their public surface (`update`, `input`, `send`, `recv`). Nothing here reads the real clock
//! or draws from an outside random source: the same [`NetworkConfig`] (seed included) and the same
//! sequence of calls always produce the same packets at the same virtual times, which makes it the
//! main test harness of this crate and a cheap way for users to try a configuration on a bad link
//! before deploying it.
//!
//! Each direction is a one-way [`LinkConfig`]: random loss, duplication, a uniform delay, optional
//! reordering (otherwise FIFO: a datagram never overtakes the one sent before it), and an optional
//! bottleneck with a bandwidth in bytes per millisecond and a tail-drop queue.
//!
//! ```
//! use rkcp_engine::Kcp;
//! use rkcp_engine::sim::{LinkConfig, Network, NetworkConfig, Side};
//!
//! // 5 % loss and 30–62 ms one-way delay in both directions, FIFO.
//! let link = LinkConfig::default().loss(0.05).delay(30, 62);
//! let mut net = Network::new(NetworkConfig::symmetric(link).seed(7), Kcp::fast(1), Kcp::fast(1)).unwrap();
//!
//! net.send(Side::A, b"hello over a lossy link").unwrap();
//! let mut buf = [0u8; 64];
//! let got = loop {
//!     let n = net.recv(Side::B, &mut buf).unwrap();
//!     if n > 0 {
//!         break n;
//!     }
//!     assert!(net.step(), "the network went idle before the message arrived");
//! };
//! assert_eq!(&buf[..got], b"hello over a lossy link");
//! assert!(net.elapsed() >= 30);
//! ```

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;

use crate::{Kcp, KcpError};

/// A small, fast, seedable pseudo-random generator (xoshiro256\*\*, seeded through splitmix64).
///
/// The engine crate takes no dependency on `rand`; this generator is all the simulator needs and is
/// public so tests and experiments can derive their random parameters from the same seed.
/// Not suitable for anything security related.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole output is determined by `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A value in `0..n` (0 when `n` is 0). The multiply-shift mapping has a bias below 2^-32 for
    /// the small ranges a simulation uses, which does not matter here.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A value in `lo..=hi` (`lo` when `hi <= lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// A uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p` (never for `p <= 0`, always for `p >= 1`).
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// One direction of the simulated path. The default is an ideal link: no loss, no duplication,
/// zero delay, FIFO, unlimited bandwidth. The builder-style methods return the changed value.
///
/// The order of events for each datagram an engine emits: the bottleneck (if any) queues it behind
/// the datagrams not yet serialised, dropping it if the queue is full (tail drop); after its
/// serialisation it is lost with probability `loss`; otherwise it arrives after a delay drawn
/// uniformly from `delay_min..=delay_max`, and with probability `duplicate` a second copy arrives
/// after an independently drawn delay. Without `reorder`, arrival times are clamped so a datagram
/// never arrives before one sent earlier on the same link (a FIFO path, as in the original KCP test
/// program's "DelayTunnel").
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Probability in `[0, 1]` that a datagram is lost (after the bottleneck, so it still used
    /// bandwidth). 1.0 makes a dead link.
    pub loss: f64,
    /// Probability in `[0, 1]` that a delivered datagram is delivered a second time.
    pub duplicate: f64,
    /// Smallest one-way propagation delay, ms.
    pub delay_min: u32,
    /// Largest one-way propagation delay, ms (inclusive; at least `delay_min`).
    pub delay_max: u32,
    /// Whether datagrams may overtake each other when their drawn delays allow it. `false` keeps
    /// arrival order equal to sending order.
    pub reorder: bool,
    /// Bottleneck bandwidth in bytes per millisecond (1 byte/ms = 8 kbit/s), or `None` for an
    /// unlimited link. A datagram of `n` bytes occupies the bottleneck for `n / bandwidth` ms.
    pub bandwidth: Option<u32>,
    /// Capacity of the bottleneck queue in bytes (only used with `bandwidth`): a datagram is
    /// dropped when the bytes still waiting to be serialised plus its own length exceed this. An
    /// idle bottleneck always accepts one datagram, so a capacity below the MTU still passes
    /// traffic (one datagram at a time).
    pub queue_bytes: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            delay_min: 0,
            delay_max: 0,
            reorder: false,
            bandwidth: None,
            queue_bytes: 64 * 1024,
        }
    }
}

impl LinkConfig {
    /// Sets the loss probability.
    pub fn loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }

    /// Sets the duplication probability.
    pub fn duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }

    /// Sets the one-way delay range (uniform, inclusive), ms.
    pub fn delay(mut self, min: u32, max: u32) -> Self {
        self.delay_min = min;
        self.delay_max = max;
        self
    }

    /// Allows (`true`) or forbids (`false`, FIFO) reordering.
    pub fn reorder(mut self, on: bool) -> Self {
        self.reorder = on;
        self
    }

    /// Caps the link at `bytes_per_ms` with a tail-drop queue of `queue_bytes`.
    pub fn bandwidth(mut self, bytes_per_ms: u32, queue_bytes: usize) -> Self {
        self.bandwidth = Some(bytes_per_ms);
        self.queue_bytes = queue_bytes;
        self
    }

    /// Checks the values: probabilities finite and within `[0, 1]`, `delay_min <= delay_max`,
    /// a non-zero bandwidth.
    pub fn validate(&self) -> Result<(), SimError> {
        for (name, p) in [("loss", self.loss), ("duplicate", self.duplicate)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(SimError::BadProbability { name, value: p });
            }
        }
        if self.delay_min > self.delay_max {
            return Err(SimError::BadDelay {
                min: self.delay_min,
                max: self.delay_max,
            });
        }
        if self.bandwidth == Some(0) {
            return Err(SimError::ZeroBandwidth);
        }
        Ok(())
    }
}

/// The whole simulated path: both directions, the seed and the starting clock.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// The link carrying datagrams from [`Side::A`] to [`Side::B`].
    pub a_to_b: LinkConfig,
    /// The link carrying datagrams from [`Side::B`] to [`Side::A`].
    pub b_to_a: LinkConfig,
    /// Seed of both links' random streams (each direction draws from its own stream derived from
    /// it, so changing one link's traffic does not change the other's luck). Default 0.
    pub seed: u64,
    /// The virtual clock's first value, ms. Start near `u32::MAX` to exercise the protocol's
    /// wrapping timestamps. Default 0.
    pub start_time: u32,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig::symmetric(LinkConfig::default())
    }
}

impl NetworkConfig {
    /// The same link settings in both directions (with independent random streams).
    pub fn symmetric(link: LinkConfig) -> Self {
        NetworkConfig {
            a_to_b: link.clone(),
            b_to_a: link,
            seed: 0,
            start_time: 0,
        }
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the starting value of the virtual clock.
    pub fn start_time(mut self, now: u32) -> Self {
        self.start_time = now;
        self
    }
}

/// An invalid simulator setting.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SimError {
    /// A probability was NaN or outside `[0, 1]`; pass a value such as 0.05 for 5 %.
    BadProbability {
        /// Which setting.
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// `delay_min` was larger than `delay_max`; swap them or make them equal for a fixed delay.
    BadDelay {
        /// The rejected minimum.
        min: u32,
        /// The rejected maximum.
        max: u32,
    },
    /// A bandwidth of 0 bytes/ms would never deliver anything; use `None` for unlimited, or
    /// loss 1.0 to simulate a dead link.
    ZeroBandwidth,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::BadProbability { name, value } => {
                write!(f, "link {name} probability {value} is not within [0, 1]")
            }
            SimError::BadDelay { min, max } => {
                write!(
                    f,
                    "link delay_min {min} ms is larger than delay_max {max} ms"
                )
            }
            SimError::ZeroBandwidth => write!(f, "link bandwidth of 0 bytes/ms"),
        }
    }
}

impl std::error::Error for SimError {}

/// One of the two endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The first endpoint (sends on `a_to_b`).
    A,
    /// The second endpoint (sends on `b_to_a`).
    B,
}

impl Side {
    /// The other endpoint.
    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// Counters of one link (one direction). Every emitted datagram is counted in `sent` and then in
/// exactly one of `queue_drops`, `lost` or `delivered` (`duplicated` counts the extra copies, which
/// are also counted in `delivered` once they arrive).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams the sending engine emitted.
    pub sent: u64,
    /// Bytes the sending engine emitted (reserved prefix included).
    pub sent_bytes: u64,
    /// Datagrams dropped because the bottleneck queue was full.
    pub queue_drops: u64,
    /// Datagrams lost at random.
    pub lost: u64,
    /// Extra copies created by duplication.
    pub duplicated: u64,
    /// Datagrams handed to the receiving engine (copies included).
    pub delivered: u64,
    /// The largest bottleneck backlog seen, in bytes waiting to be serialised when a datagram
    /// arrived at the bottleneck (its own length included if it was accepted). 0 without a
    /// bandwidth cap.
    pub max_queue_bytes: u64,
}

/// Counters of one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// `update` calls made.
    pub updates: u64,
    /// Datagrams the engine's `input` rejected. The simulator never corrupts data, so anything
    /// other than 0 points at an engine bug (or engines with different `conv`).
    pub input_errors: u64,
}

/// A datagram in flight.
struct InFlight {
    arrival: u64,
    seq: u64,
    data: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.arrival, self.seq).cmp(&(other.arrival, other.seq))
    }
}

struct Link {
    cfg: LinkConfig,
    rng: Rng,
    /// Virtual time (µs since start) at which the bottleneck finishes the last accepted datagram.
    busy_until_us: u64,
    /// Latest arrival time handed out, for FIFO mode.
    last_arrival: u64,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    stats: LinkStats,
}

impl Link {
    fn new(cfg: LinkConfig, seed: u64) -> Link {
        Link {
            cfg,
            rng: Rng::new(seed),
            busy_until_us: 0,
            last_arrival: 0,
            in_flight: BinaryHeap::new(),
            stats: LinkStats::default(),
        }
    }

    /// Bytes waiting at the bottleneck at `now` (ms since start).
    fn backlog(&self, now: u64) -> u64 {
        match self.cfg.bandwidth {
            None => 0,
            Some(bw) => self.busy_until_us.saturating_sub(now * 1000) * u64::from(bw.max(1)) / 1000,
        }
    }

    fn next_arrival(&self) -> Option<(u64, u64)> {
        self.in_flight.peek().map(|p| (p.0.arrival, p.0.seq))
    }

    /// Puts one emitted datagram on the link at virtual time `now` (ms since start). The first
    /// `reserved` bytes (the sender's space for session headers) use bandwidth but are not
    /// delivered: the receiving engine gets the KCP bytes only.
    fn transmit(
        &mut self,
        now: u64,
        dgram: &[u8],
        reserved: usize,
        seq: &mut u64,
        pool: &mut Vec<Vec<u8>>,
    ) {
        self.stats.sent += 1;
        self.stats.sent_bytes += dgram.len() as u64;
        let len = dgram.len() as u64;
        let data = dgram.get(reserved..).unwrap_or(&[]);
        let depart = match self.cfg.bandwidth {
            None => now,
            Some(bw) => {
                let bw = u64::from(bw.max(1));
                let now_us = now * 1000;
                let start = self.busy_until_us.max(now_us);
                let backlog_bytes = (start - now_us) * bw / 1000;
                if backlog_bytes > 0 && backlog_bytes + len > self.cfg.queue_bytes as u64 {
                    self.stats.queue_drops += 1;
                    self.stats.max_queue_bytes = self.stats.max_queue_bytes.max(backlog_bytes);
                    return;
                }
                self.stats.max_queue_bytes = self.stats.max_queue_bytes.max(backlog_bytes + len);
                self.busy_until_us = start + (len * 1000).div_ceil(bw);
                self.busy_until_us.div_ceil(1000)
            }
        };
        if self.rng.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self
                .rng
                .range(u64::from(self.cfg.delay_min), u64::from(self.cfg.delay_max));
            let mut arrival = depart + delay;
            if !self.cfg.reorder {
                arrival = arrival.max(self.last_arrival);
                self.last_arrival = arrival;
            }
            let mut buf = pool.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(data);
            *seq += 1;
            self.in_flight.push(Reverse(InFlight {
                arrival,
                seq: *seq,
                data: buf,
            }));
        }
    }
}

/// A callback that sees every datagram an engine emits: the sender, the virtual time and the bytes
/// (reserved prefix included), before the link decides its fate.
pub type Observer = Box<dyn FnMut(Side, u32, &[u8]) + Send>;

/// Largest number of events processed within one virtual millisecond before the simulator
/// declares a livelock (engines exchanging datagrams forever without the clock advancing).
const MAX_EVENTS_PER_MS: u32 = 1_000_000;

/// Two [`Kcp`] engines joined by two simulated one-way links, on a virtual clock.
///
/// Drive it with [`step`](Network::step) (jump to the next event and process it) or
/// [`run_for`](Network::run_for) (process everything within a span of virtual time), and act as the
/// applications in between: [`send`](Network::send)/[`recv`](Network::recv) (or the engines
/// themselves through [`kcp_mut`](Network::kcp_mut)). Engines are only ever driven through their
/// public API: each event time, every due datagram is passed to `input` (followed by an `update` if
/// the engine then asks for one, as kcp-go flushes inside `Input`), and every engine whose
/// `next_deadline` has come gets `update`.
///
/// Trying configurations before deploying them: how long do 200 kB take over a 1 MB/s path with
/// 2 % loss and 40 ms of one-way delay, with kcp-go's defaults and with kcptun's `fast3`?
///
/// ```
/// use rkcp_engine::{Kcp, KcpConfig};
/// use rkcp_engine::sim::{LinkConfig, Network, NetworkConfig, Side};
///
/// fn transfer_ms(cfg: &KcpConfig) -> u64 {
///     let link = LinkConfig::default().loss(0.02).delay(40, 40).bandwidth(1_000, 64_000);
///     let (a, b) = (Kcp::with_config(1, cfg).unwrap(), Kcp::with_config(1, cfg).unwrap());
///     let mut net = Network::new(NetworkConfig::symmetric(link).seed(1), a, b).unwrap();
///     let data = vec![7u8; 200_000];
///     let (mut sent, mut got) = (0, 0);
///     let mut buf = vec![0u8; 4096];
///     let done = net.run_until(600_000, |net| {
///         // The application: keep the send queue two windows deep, read everything.
///         while sent < data.len() && net.kcp(Side::A).wait_snd() < 2 * cfg.snd_wnd as usize {
///             sent += net.send(Side::A, &data[sent..(sent + 1024).min(data.len())]).unwrap();
///         }
///         while let Ok(n @ 1..) = net.recv(Side::B, &mut buf) {
///             got += n;
///         }
///         got == data.len()
///     });
///     assert!(done);
///     net.elapsed()
/// }
///
/// let stream = |c: KcpConfig| KcpConfig { stream: true, snd_wnd: 128, rcv_wnd: 128, ..c };
/// let slow = transfer_ms(&stream(KcpConfig::default()));
/// let fast = transfer_ms(&stream(KcpConfig::fast3()));
/// assert!(fast < slow, "fast3 {fast} ms, default {slow} ms");
/// ```
///
/// Each engine's reserved front bytes
/// ([`KcpConfig::reserved`](crate::KcpConfig::reserved), where a session writes its FEC/crypto
/// headers) travel over the link and count against its bandwidth, and are cut off before the
/// peer's `input`, as a session's input pipeline would.
pub struct Network {
    start: u32,
    /// Virtual time since the start, ms (64 bits, so it never wraps; `now()` wraps).
    elapsed: u64,
    ends: [Kcp; 2],
    links: [Link; 2],
    end_stats: [EndpointStats; 2],
    seq: u64,
    pool: Vec<Vec<u8>>,
    observer: Option<Observer>,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("now", &self.now())
            .field("elapsed", &self.elapsed)
            .field("a_to_b", &self.links[0].stats)
            .field("b_to_a", &self.links[1].stats)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Connects engine `a` and engine `b` (normally with the same `conv`) through the links of `cfg`.
    pub fn new(cfg: NetworkConfig, a: Kcp, b: Kcp) -> Result<Network, SimError> {
        cfg.a_to_b.validate()?;
        cfg.b_to_a.validate()?;
        let mut seeds = Rng::new(cfg.seed);
        let (sa, sb) = (seeds.next_u64(), seeds.next_u64());
        let mut net = Network {
            start: cfg.start_time,
            elapsed: 0,
            ends: [a, b],
            links: [Link::new(cfg.a_to_b, sa), Link::new(cfg.b_to_a, sb)],
            end_stats: [EndpointStats::default(), EndpointStats::default()],
            seq: 0,
            pool: Vec::new(),
            observer: None,
        };
        // The engine learns the time from its first call: update both at the start, as a
        // session flushes right after creating its engine.
        net.update(0);
        net.update(1);
        Ok(net)
    }

    /// The virtual clock, as passed to the engines (wrapping ms).
    pub fn now(&self) -> u32 {
        self.start.wrapping_add(self.elapsed as u32)
    }

    /// Virtual milliseconds since the start (never wraps).
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// The engine at `side`.
    pub fn kcp(&self, side: Side) -> &Kcp {
        &self.ends[side.index()]
    }

    /// The engine at `side`, to change knobs or call it directly. The network reads its deadline
    /// afresh before every event, so anything done here is picked up.
    pub fn kcp_mut(&mut self, side: Side) -> &mut Kcp {
        &mut self.ends[side.index()]
    }

    /// Takes both engines back, `(a, b)`, dropping whatever is still in flight.
    pub fn into_engines(self) -> (Kcp, Kcp) {
        let [a, b] = self.ends;
        (a, b)
    }

    /// The settings of the link that carries datagrams sent by `from`.
    pub fn link_config(&self, from: Side) -> &LinkConfig {
        &self.links[from.index()].cfg
    }

    /// Changes the link that carries datagrams sent by `from` from now on (datagrams already in
    /// flight keep their arrival times). Its random stream continues where it was. Setting
    /// `loss` to 1.0 kills the link.
    pub fn set_link_config(&mut self, from: Side, cfg: LinkConfig) -> Result<(), SimError> {
        cfg.validate()?;
        self.links[from.index()].cfg = cfg;
        Ok(())
    }

    /// Counters of the link that carries datagrams sent by `from`.
    pub fn link_stats(&self, from: Side) -> &LinkStats {
        &self.links[from.index()].stats
    }

    /// Bytes waiting in the bottleneck queue of the link that carries datagrams sent by `from`,
    /// now (0 without a bandwidth cap).
    pub fn queue_bytes(&self, from: Side) -> u64 {
        self.links[from.index()].backlog(self.elapsed)
    }

    /// Counters of the endpoint at `side`.
    pub fn endpoint_stats(&self, side: Side) -> &EndpointStats {
        &self.end_stats[side.index()]
    }

    /// Datagrams currently in flight in both directions.
    pub fn in_flight(&self) -> usize {
        self.links[0].in_flight.len() + self.links[1].in_flight.len()
    }

    /// Installs (or with `None` removes) a callback that sees every datagram an engine emits.
    pub fn set_observer(&mut self, observer: Option<Observer>) {
        self.observer = observer;
    }

    /// [`Kcp::send`] on the engine at `side`; the next [`step`](Network::step) flushes it if the
    /// engine asks for that.
    pub fn send(&mut self, side: Side, data: &[u8]) -> Result<usize, KcpError> {
        self.ends[side.index()].send(data)
    }

    /// [`Kcp::recv`] on the engine at `side`.
    pub fn recv(&mut self, side: Side, buf: &mut [u8]) -> Result<usize, KcpError> {
        self.ends[side.index()].recv(buf)
    }

    /// The engine's deadline as virtual time since the start (never before the current time).
    fn deadline_elapsed(&self, i: usize) -> Option<u64> {
        let d = self.ends[i].next_deadline()?;
        let ahead = d.wrapping_sub(self.now()) as i32;
        Some(self.elapsed + ahead.max(0) as u64)
    }

    fn next_event_elapsed(&self) -> Option<u64> {
        [
            self.deadline_elapsed(0),
            self.deadline_elapsed(1),
            self.links[0].next_arrival().map(|a| a.0),
            self.links[1].next_arrival().map(|a| a.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Milliseconds until the next event (0 if one is due now), or `None` when both engines are
    /// idle and nothing is in flight: then nothing will ever happen without the applications.
    pub fn time_to_next_event(&self) -> Option<u32> {
        self.next_event_elapsed()
            .map(|t| u32::try_from(t - self.elapsed).unwrap_or(u32::MAX))
    }

    /// Advances the clock to the next event and processes everything due at that time. Returns
    /// `false` (without moving the clock) when there is no event at all.
    ///
    /// # Panics
    /// If the engines keep producing events within one virtual millisecond without end (an engine
    /// that asks for `update` again right after one and sends nothing, or an endless exchange over
    /// zero-delay links): a livelock the real world would show as a busy loop.
    pub fn step(&mut self) -> bool {
        match self.next_event_elapsed() {
            Some(t) => {
                self.elapsed = t.max(self.elapsed);
                self.process_due();
                true
            }
            None => false,
        }
    }

    /// Processes every event within the next `ms` virtual milliseconds, then leaves the clock at
    /// exactly `now + ms` (the applications may act at any time, not only at events).
    ///
    /// # Panics
    /// As [`step`](Network::step).
    pub fn run_for(&mut self, ms: u32) {
        let end = self.elapsed + u64::from(ms);
        while let Some(t) = self.next_event_elapsed() {
            if t > end {
                break;
            }
            self.elapsed = t.max(self.elapsed);
            self.process_due();
        }
        self.elapsed = end;
    }

    /// Steps until `done` returns `true` (checked before every step, with the network) or the
    /// virtual time passes `limit_ms` from now or nothing is left to happen. Returns whether
    /// `done` was satisfied.
    pub fn run_until<F: FnMut(&mut Network) -> bool>(
        &mut self,
        limit_ms: u64,
        mut done: F,
    ) -> bool {
        let end = self.elapsed + limit_ms;
        loop {
            if done(self) {
                return true;
            }
            match self.next_event_elapsed() {
                Some(t) if t <= end => {
                    self.elapsed = t.max(self.elapsed);
                    self.process_due();
                }
                _ => return false,
            }
        }
    }

    /// Delivers every datagram and runs every engine update due at the current time.
    fn process_due(&mut self) {
        let now = self.now();
        let mut events = 0u32;
        loop {
            events += 1;
            assert!(
                events < MAX_EVENTS_PER_MS,
                "simulated network livelock: over {MAX_EVENTS_PER_MS} events at virtual time {now}"
            );
            // Earliest due datagram over both links (global sequence breaks ties deterministically).
            let due = (0..2)
                .filter_map(|i| self.links[i].next_arrival().map(|a| (a, i)))
                .filter(|((arrival, _), _)| *arrival <= self.elapsed)
                .min();
            if let Some((_, from)) = due {
                let Some(Reverse(pkt)) = self.links[from].in_flight.pop() else {
                    continue;
                };
                let to = 1 - from;
                self.links[from].stats.delivered += 1;
                if self.ends[to]
                    .input(now, &pkt.data, crate::Freshness::Fresh)
                    .is_err()
                {
                    self.end_stats[to].input_errors += 1;
                }
                self.pool.push(pkt.data);
                if self.deadline_elapsed(to).is_some_and(|d| d <= self.elapsed) {
                    self.update(to);
                }
                continue;
            }
            let mut progressed = false;
            for i in 0..2 {
                if self.deadline_elapsed(i).is_some_and(|d| d <= self.elapsed) {
                    let emitted = self.update(i);
                    let still_due = self.deadline_elapsed(i).is_some_and(|d| d <= self.elapsed);
                    assert!(
                        emitted > 0 || !still_due,
                        "engine {:?} still asks for update at virtual time {now} right after an \
                         update that sent nothing: it would busy-loop",
                        if i == 0 { Side::A } else { Side::B },
                    );
                    progressed = true;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// Runs `update` on engine `i`, putting its output on its link. Returns the datagrams emitted.
    fn update(&mut self, i: usize) -> usize {
        let now = self.now();
        let elapsed = self.elapsed;
        let side = if i == 0 { Side::A } else { Side::B };
        let Network {
            ends,
            links,
            end_stats,
            seq,
            pool,
            observer,
            ..
        } = self;
        let link = &mut links[i];
        let reserved = ends[i].reserved();
        let mut emitted = 0;
        let mut out = |dgram: &mut [u8]| {
            emitted += 1;
            if let Some(obs) = observer.as_mut() {
                obs(side, now, dgram);
            }
            link.transmit(elapsed, dgram, reserved, seq, pool);
        };
        ends[i].update(now, &mut out);
        end_stats[i].updates += 1;
        emitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_spread() {
        let mut a = Rng::new(1);
        let mut b = Rng::new(1);
        let mut c = Rng::new(2);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        let mut r = Rng::new(3);
        let mut hist = [0u32; 10];
        for _ in 0..10_000 {
            let v = r.range(10, 19);
            assert!((10..=19).contains(&v));
            hist[(v - 10) as usize] += 1;
        }
        assert!(hist.iter().all(|&h| (800..1200).contains(&h)), "{hist:?}");
        let hits = (0..10_000).filter(|_| r.chance(0.3)).count();
        assert!((2700..3300).contains(&hits), "{hits}");
        assert!(!r.chance(0.0));
        assert!(r.chance(1.0));
        assert_eq!(r.range(5, 5), 5);
        let _full_range = r.range(0, u64::MAX);
    }

    #[test]
    fn link_config_validation() {
        assert!(LinkConfig::default().validate().is_ok());
        assert!(matches!(
            LinkConfig::default().loss(1.5).validate(),
            Err(SimError::BadProbability { name: "loss", .. })
        ));
        assert!(
            LinkConfig::default()
                .duplicate(f64::NAN)
                .validate()
                .is_err()
        );
        assert_eq!(
            LinkConfig::default().delay(10, 5).validate(),
            Err(SimError::BadDelay { min: 10, max: 5 })
        );
        assert_eq!(
            LinkConfig::default().bandwidth(0, 10).validate(),
            Err(SimError::ZeroBandwidth)
        );
    }

    fn arrivals(link: &mut Link) -> Vec<u64> {
        let mut v = Vec::new();
        while let Some(Reverse(p)) = link.in_flight.pop() {
            v.push(p.arrival);
        }
        v
    }

    #[test]
    fn fifo_link_never_reorders_and_bandwidth_serialises() {
        let mut seq = 0;
        let mut pool = Vec::new();
        let mut link = Link::new(LinkConfig::default().delay(0, 50), 9);
        let mut order = Vec::new();
        for t in 0..200 {
            link.transmit(t, &[t as u8], 0, &mut seq, &mut pool);
        }
        while let Some(Reverse(p)) = link.in_flight.pop() {
            order.push(p.data[0]);
        }
        assert_eq!(order, (0..200).map(|t| t as u8).collect::<Vec<_>>());

        // 100 bytes/ms, 1000-byte datagrams: 10 ms each, queue of 3000 bytes.
        let mut link = Link::new(LinkConfig::default().bandwidth(100, 3000), 9);
        for _ in 0..6 {
            link.transmit(0, &[0u8; 1000], 0, &mut seq, &mut pool);
        }
        // Backlogs seen at t=0: 0, 1000, 2000 bytes are accepted (each + 1000 <= 3000); from
        // 3000 on the queue is full and the datagrams are tail-dropped.
        assert_eq!(link.stats.queue_drops, 3);
        assert_eq!(arrivals(&mut link), vec![10, 20, 30]);
    }

    #[test]
    fn reordering_link_reorders_and_duplicates() {
        let mut seq = 0;
        let mut pool = Vec::new();
        let cfg = LinkConfig::default()
            .delay(0, 100)
            .reorder(true)
            .duplicate(0.5);
        let mut link = Link::new(cfg, 4);
        for t in 0..100 {
            link.transmit(t, &[t as u8], 0, &mut seq, &mut pool);
        }
        assert!(link.stats.duplicated > 20);
        let mut order = Vec::new();
        while let Some(Reverse(p)) = link.in_flight.pop() {
            order.push(p.data[0]);
        }
        assert_eq!(order.len() as u64, 100 + link.stats.duplicated);
        assert!(
            order.windows(2).any(|w| w[0] > w[1]),
            "no reordering happened"
        );
    }
}
