//! KCP reliable UDP for tokio, wire-compatible with the Go originals (kcp-go 5.6.1, smux 1.5.16,
//! kcptun 20210922): a Rust program can talk to kcptun servers and kcp-go applications.
//!
//! - [`KcpStream`]: one KCP conversation over UDP, an `AsyncRead + AsyncWrite` byte stream (or
//!   messages in message mode), like a `TcpStream`.
//! - [`KcpListener`]: many conversations on one UDP socket, accepted like a `TcpListener`.
//! - [`KcpControl`]: a cloneable handle on a live session's engine knobs (kcp-go's `SetNoDelay`
//!   is [`KcpControl::set_mode`]) and statistics, usable after smux took the stream.
//! - [`KcpConfig`]: a session's configuration: the engine's own [`EngineConfig`] (kcp-go's
//!   defaults) in [`KcpConfig::kcp`], kcptun's presets ([`KcpConfig::fast3`], …), the packet
//!   cipher ([`KcpConfig::with_crypt`]), Reed–Solomon FEC ([`KcpConfig::with_fec`]), socket
//!   options ([`SocketConfig`]), a listener's limits ([`ListenerConfig`]) and the idle and close
//!   timeouts.
//! - `rkcp::smux` (feature `smux`, on by default): many streams over one `KcpStream` (or any
//!   `AsyncRead + AsyncWrite`), as kcptun does. Prefer smux v2 (`Version::V2`) where a reader
//!   can be slow: in v1 one stream nobody reads stalls every stream of the session.
//!
//! A raw `KcpStream` has no end-of-stream (KCP has no FIN): a read never returns 0 bytes but
//! fails with why the session ended (closed, idle timeout, dead link, ...), and `shutdown` waits
//! (at most `close_timeout`) until the peer acknowledged everything written, then closes. Every
//! session has an idle timeout (60 s by default). Put smux (or your own framing) on top to mark
//! where data ends.
//!
//! # Quick start
//!
//! An echo server and a client on loopback:
//!
//! ```
//! use rkcp::{KcpConfig, KcpListener, KcpStream};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     // Server: bind a UDP port, echo every session.
//!     let listener = KcpListener::bind("127.0.0.1:0", KcpConfig::fast3()).await?;
//!     let addr = listener.local_addr()?;
//!     tokio::spawn(async move {
//!         while let Ok((mut stream, _peer)) = listener.accept().await {
//!             tokio::spawn(async move {
//!                 let mut buf = [0u8; 4096];
//!                 while let Ok(n @ 1..) = stream.read(&mut buf).await {
//!                     if stream.write_all(&buf[..n]).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             });
//!         }
//!     });
//!
//!     // Client: dial, send, read the echo.
//!     let mut stream = KcpStream::connect(addr, KcpConfig::fast3()).await?;
//!     stream.write_all(b"hello over KCP").await?;
//!     let mut reply = [0u8; 14];
//!     stream.read_exact(&mut reply).await?;
//!     assert_eq!(&reply, b"hello over KCP");
//!     Ok(())
//! }
//! ```
//!
//! # With smux, encryption and FEC
//!
//! kcptun's setup: AES with kcptun's key derivation, FEC 10/3 and smux streams on top of one KCP
//! session. A kcptun peer configured with `--crypt aes --key secret --datashard 10 --parityshard 3
//! --mode fast3` understands this.
//!
//! ```
//! # #[cfg(not(feature = "smux"))]
//! # fn main() {}
//! # #[cfg(feature = "smux")]
//! use rkcp::{CipherKind, KcpConfig, KcpListener, KcpStream, PacketCrypt, smux};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[cfg(feature = "smux")]
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     let config = KcpConfig::fast3()
//!         .with_crypt(PacketCrypt::from_passphrase(CipherKind::Aes, "secret"))
//!         .with_fec(10, 3);
//!
//!     // Server: one smux session per KCP session, echo every smux stream.
//!     let listener = KcpListener::bind("127.0.0.1:0", config.clone()).await?;
//!     let addr = listener.local_addr()?;
//!     tokio::spawn(async move {
//!         while let Ok((kcp, _peer)) = listener.accept().await {
//!             let Ok(mux) = smux::Session::server(kcp, smux::Config::default()) else { continue };
//!             tokio::spawn(async move {
//!                 while let Ok(mut stream) = mux.accept_stream().await {
//!                     tokio::spawn(async move {
//!                         let mut buf = [0u8; 4096];
//!                         while let Ok(n @ 1..) = stream.read(&mut buf).await {
//!                             if stream.write_all(&buf[..n]).await.is_err() {
//!                                 break;
//!                             }
//!                         }
//!                     });
//!                 }
//!             });
//!         }
//!     });
//!
//!     // Client: one KCP session, two smux streams over it.
//!     let kcp = KcpStream::connect(addr, config).await?;
//!     let mux = smux::Session::client(kcp, smux::Config::default())?;
//!     for msg in [&b"first stream"[..], &b"second stream"[..]] {
//!         let mut stream = mux.open_stream().await?;
//!         stream.write_all(msg).await?;
//!         let mut reply = vec![0u8; msg.len()];
//!         stream.read_exact(&mut reply).await?;
//!         assert_eq!(reply, msg);
//!     }
//!     mux.close().await?;
//!     Ok(())
//! }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `smux` | yes | `rkcp::smux`: the xtaci/smux v1/v2 multiplexer (crate `rkcp-smux`). |
//! | `legacy-ciphers` | yes | kcptun's older ciphers `salsa20`, `blowfish`, `twofish`, `cast5`, `3des`, `tea`, `xtea`, `sm4`. Without it those [`CipherKind`]s still parse, but [`PacketCrypt::try_new`] returns an error naming the feature (and [`PacketCrypt::new`] panics with it); `aes`, `aes-128`, `aes-192`, `xor`, `none` and the authenticated `aes-256-gcm` / `chacha20-poly1305` remain. |
//! | `fec` | no | `rkcp::fec`: the Reed–Solomon codec in kcp-go's packet format (crate `rkcp-fec`). Sessions use FEC through [`KcpConfig::with_fec`] without it. |
//! | `crypt` | no | `rkcp::crypt`: the packet ciphers on their own (crate `rkcp-crypt`). Sessions use them through [`KcpConfig::with_crypt`] without it. |
//!
//! The sans-IO ARQ engine is always there as [`engine`] (crate `rkcp-engine`), for driving KCP
//! from your own event loop.
//!
//! # Crates
//!
//! `rkcp` re-exports these; depend on one directly to take only that layer:
//! `rkcp-engine` (the KCP engine, no IO), `rkcp-fec` (FEC), `rkcp-crypt` (packet encryption),
//! `rkcp-session` (UDP sessions on tokio: the listener and stream above) and `rkcp-smux` (smux).

pub use rkcp_session::{
    AdaptiveConfig, AdaptiveFec, Admission, CipherKind, ConfigError, Congestion, EngineConfig,
    FecConfig, KcpConfig, KcpControl, KcpListener, KcpStream, ListenerConfig, ListenerStats,
    MAX_MTU, OwnedReadHalf, OwnedWriteHalf, PacketCrypt, ReuniteError, SessionError, SnmpSnapshot,
    SocketConfig, global_snmp,
};

/// The sans-IO KCP ARQ engine (crate `rkcp-engine`): segments, retransmission, windows, and a
/// deterministic simulated network.
pub use rkcp_engine as engine;

/// The xtaci/smux v1/v2 stream multiplexer (crate `rkcp-smux`).
#[cfg(feature = "smux")]
pub use rkcp_smux as smux;

/// Reed–Solomon FEC in the kcp-go packet format (crate `rkcp-fec`).
#[cfg(feature = "fec")]
pub use rkcp_fec as fec;

/// kcp-go packet encryption and the kcptun ciphers (crate `rkcp-crypt`).
#[cfg(feature = "crypt")]
pub use rkcp_crypt as crypt;

/// This crate's README (the crates.io page): its Rust block is compiled and run as a doctest.
#[cfg(all(doctest, feature = "smux"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
