//! KCP over UDP on tokio, wire-compatible with kcp-go 5.6.1 (docs/wire-format.md#session).
//!
//! - [`KcpStream`]: one conversation as an `AsyncRead + AsyncWrite` byte stream (or messages in message mode).
//! - [`KcpListener`]: many conversations on one UDP socket, demultiplexed by peer address and conversation,
//!   safe to expose to the internet (see the threat model below); or sharded over several `SO_REUSEPORT`
//!   sockets, one read loop each, to spread a port over runtime workers ([`KcpListener::bind_sharded`]).
//! - [`KcpConfig`]: the engine's [`EngineConfig`] (kcp-go's defaults) plus the cipher, FEC, socket
//!   ([`SocketConfig`]), listener ([`ListenerConfig`]) and lifecycle options; kcptun's presets.
//! - [`SnmpSnapshot`]: kcp-go's 24 counters, per session ([`KcpControl::snmp`]) and per process ([`global_snmp`]),
//!   printable as kcptun's `--snmplog` CSV.
//!
//! Packet path: the engine's datagrams get the FEC header in place, then nonce + CRC + cipher, and leave in
//! `sendmmsg` batches; received datagrams are opened, FEC is detected per packet and rebuilt packets are fed as
//! `Freshness::Stale` input (kcp-go `regular = false`; B.2, B.3). The driver is plain tokio: one read loop per UDP socket (a listener's or a
//! client's), which also runs the timers of the sessions on its socket (one heap per socket, an entry per
//! session deadline; an idle session with no idle timeout has none), sends made outside the session's lock, and a full socket buffer
//! waits for writability. No thread and no registry are process-wide; [`global_snmp`] is a set of atomics.
//!
//! CPU with many light sessions: most of what a server of thousands of mostly quiet sessions spends is the
//! kernel's, a send and a receive per datagram and the sleeps and wake-ups of the runtime's worker threads.
//! On a 2-core box, 10,000 sessions echoing 16 bytes a second cost the server about 25 % of a core on tokio's
//! multi-thread runtime and 20 % on a current-thread one, where a tokio UDP server with no protocol at all
//! costs 16–20 % and 10–12 % (`benches/results-endpoint-sessions.md`; `kcpbench sessions --server-threads 1`
//! and the `udp_floor` example measure both). A process that serves many light sessions and little else
//! may do better on a current-thread runtime.
//!
//! Lifecycle: KCP has no handshake, no FIN and no half-close. A session ends by a local close
//! ([`KcpStream::close`], dropping it, or `shutdown`, which first waits until everything written was
//! acknowledged, at most [`KcpConfig::close_timeout`]), by the idle timeout ([`KcpConfig::idle_timeout`], on by
//! default: nothing heard from the peer for 60 s), by the dead-link check (the peer stopped acknowledging), or,
//! on a listener, when its peer never proved its address. Reads never return end-of-stream: they fail with the typed reason
//! ([`SessionError`]), and [`KcpStream::closed`] resolves with it. The peer is never told; see [`KcpStream`].
//!
//! Feature `legacy-ciphers` (on by default) turns on the one of `rkcp-crypt`: kcptun's older ciphers
//! (salsa20, blowfish, twofish, cast5, 3des, tea, xtea, sm4). Without it [`PacketCrypt::try_new`] returns
//! an error for those. Most applications use the `rkcp` crate, which re-exports this one and adds smux.
//!
//! ## Threat model
//!
//! A listener is a public UDP port. Anyone can send it any bytes from any source address and port (spoofed, if
//! they never need an answer), capture and replay datagrams of real sessions, and flood it. An attacker on the
//! path can also delay, drop or race datagrams. What the listener guarantees ([`KcpListener`] docs,
//! `docs/wire-format.md#session-listener` for the wire side):
//! - **Nothing from the network panics or allocates without a bound**, and every datagram that reaches no
//!   session is counted by reason in [`ListenerStats`].
//! - **Spoofed senders cannot hold state or lock anyone out.** A session is *unverified* until its peer
//!   acknowledges something the server sent (an echo request goes out at once); unverified sessions hold a small
//!   window, count against [`Admission::unverified_budget`] and a per-IP cap, and expire after
//!   [`Admission::unverified_timeout`]. Beyond those limits a new peer gets no state, only a stateless address
//!   check (an echo request carrying a keyed cookie, never larger than what it answers); a real peer passes it in
//!   one round trip, a spoofed one never does. Verified sessions are never evicted by strangers.
//! - **Replays create, replace and kill nothing** (with a cipher, so that datagrams cannot be forged): a session
//!   is created only by a session start (`una == 0`, carrying the first data segment) of a conversation id
//!   neither live nor closed within [`Admission::replay_window`], or, for such an id, by a start that none of
//!   its sessions received (the record keeps a keyed fingerprint of each start a session got): a second client
//!   that picked the same random id gets a session of its own instead of being taken for the first one
//!   moving. A new conversation from a live session's address does not replace it; a replayed datagram from
//!   another address never moves a session (it shows nothing newer). Inside a live session a replayed segment
//!   is a duplicate that KCP discards.
//! - **What remains possible in kcp-go-compatible mode** (kcp-go's ciphers; that wire carries no server
//!   randomness and no timestamp): the opening datagrams of a session that closed *more than*
//!   [`Admission::replay_window`] ago (or was pushed out of a full record, counted in
//!   [`ListenerStats::replay_record_overflow`]) can create a session again and re-deliver its first requests; an
//!   attacker on the path who races a captured datagram ahead of the original can make a session follow it to
//!   the attacker's address until the real peer's next datagram moves it back, and one who races a captured
//!   *resent* first datagram (the client heard nothing from us yet) ahead of it gets it a second session,
//!   which re-delivers that first message once. A client whose address changes before it heard anything
//!   from us (its first datagram resent from a new port) likewise gets a new session, as with kcp-go. With `--crypt none` nothing is
//!   authenticated: anyone who can guess a conversation id can inject into or move a session, and forged session
//!   starts are bounded only by the budgets above.
//! - **The AEAD kinds** (`aes-256-gcm`, `chacha20-poly1305`; Rust peers only) close the gaps above: every
//!   datagram names its session, keys are per session and direction, each direction has a replay window, and a
//!   session start is accepted only if its id is fresh (created within the freshness window, not before the
//!   listener started, never seen). No replay creates, moves or feeds anything, forever. Client clocks must be
//!   within 2 minutes of the server's; a second listener sharing the passphrase does not share the record
//!   (`rkcp_crypt` docs, `docs/wire-format.md#crypt-aead`).
//! - **Sharded listeners** ([`KcpListener::bind_sharded`]) keep every rule above across shards: a datagram of a
//!   conversation that another shard owns (live, or closed within the replay window) is handed to that shard
//!   and judged there, and a conversation is created on one shard only. Joining the `SO_REUSEPORT` group takes
//!   the same user id on Linux; a second process of that user bound with `SO_REUSEPORT` to the same port
//!   would share its traffic.
//!
//! ```no_run
//! use rkcp_session::{KcpConfig, KcpListener, KcpStream};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = KcpListener::bind("127.0.0.1:4000", KcpConfig::fast3()).await?;
//! tokio::spawn(async move {
//!     while let Ok((mut stream, _peer)) = listener.accept().await {
//!         tokio::spawn(async move {
//!             let mut buf = [0u8; 4096];
//!             while let Ok(n) = stream.read(&mut buf).await {
//!                 if stream.write_all(&buf[..n]).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         });
//!     }
//! });
//! let mut stream = KcpStream::connect("127.0.0.1:4000", KcpConfig::fast3()).await?;
//! stream.set_mode(true, 10, 2, true); // kcp-go SetNoDelay
//! stream.write_all(b"ping").await?;
//! let mut reply = [0u8; 4];
//! stream.read_exact(&mut reply).await?;
//! # Ok(()) }
//! ```

mod config;
mod driver;
mod error;
mod listener;
mod proto;
mod session;
mod snmp;
mod sockopt;
mod stream;
mod timers;
mod udp;

pub use config::{
    AdaptiveFec, DEFAULT_ACK_DELAY_MS, FecConfig, KcpConfig, ListenerConfig, MAX_MTU, SocketConfig,
};
pub use error::{ConfigError, SessionError};
pub use listener::{KcpListener, ListenerStats};
pub use proto::admission::Admission;
pub use rkcp_crypt::{CipherKind, PacketCrypt};
pub use rkcp_engine::Congestion;
/// The engine's configuration, held by [`KcpConfig::kcp`] (the engine crate's `KcpConfig`).
pub use rkcp_engine::KcpConfig as EngineConfig;
pub use rkcp_fec::AdaptiveConfig;
pub use session::global_snmp;
pub use snmp::SnmpSnapshot;
pub use stream::{KcpControl, KcpStream, OwnedReadHalf, OwnedWriteHalf, ReuniteError};

#[cfg(fuzzing)]
pub mod fuzzing;
