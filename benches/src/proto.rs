//! The wire protocol between the `kcpbench` client and a server (`kcpbench serve` or `kcpbench-go serve`),
//! fixed by the contract in `CONTRACT-kcpbench.md`:
//!
//! - **control** (TCP, one JSON object per line): `{"cmd":"listen","config":CONFIG}` →
//!   `{"ok":true,"port":P}`; `{"cmd":"stats"}` → `{"ok":true,"cpu_ns":..,"rss_bytes":..,"conns":..}`.
//!   Closing the control connection closes its data listener and every connection accepted on it.
//! - **data** (per stream): a 9-byte header, op `S` (sink `len` bytes, answer `len` as u64 LE) or `E` (echo
//!   everything until EOF), then the payload.
//!
//! Payload bytes follow [`pattern_byte`], so an echo client can check every byte cheaply against
//! [`Pattern`].

use std::net::SocketAddr;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::config::BenchConfig;

/// Size of the data header: op u8 + len u64 LE.
pub const HEADER_LEN: usize = 9;
/// Longest control line accepted (a CONFIG is a few hundred bytes).
pub const MAX_LINE: usize = 64 * 1024;

/// The first byte of a data stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `S`: the server reads exactly `len` bytes, then writes `len` back as u64 LE.
    Sink,
    /// `E`: the server echoes every byte until EOF.
    Echo,
}

impl Op {
    /// The op byte.
    pub fn byte(self) -> u8 {
        match self {
            Op::Sink => b'S',
            Op::Echo => b'E',
        }
    }

    /// Parses an op byte.
    pub fn from_byte(b: u8) -> Option<Op> {
        match b {
            b'S' => Some(Op::Sink),
            b'E' => Some(Op::Echo),
            _ => None,
        }
    }
}

/// Encodes a data header.
pub fn header(op: Op, len: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = op.byte();
    h[1..].copy_from_slice(&len.to_le_bytes());
    h
}

/// Decodes a data header; `None` for an unknown op.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Option<(Op, u64)> {
    let op = Op::from_byte(h[0])?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&h[1..]);
    Some((op, u64::from_le_bytes(len)))
}

/// The pattern's period: a prime, so it does not line up with buffer or segment sizes.
const PERIOD: usize = 251;

/// Payload byte at stream offset `i`.
pub fn pattern_byte(i: u64) -> u8 {
    (i % PERIOD as u64) as u8 ^ 0x5a
}

/// A precomputed stretch of the payload pattern, long enough to serve any chunk of up to `chunk` bytes at
/// any offset as one slice (so filling and checking are `memcpy`/`memcmp`).
#[derive(Clone, Debug)]
pub struct Pattern {
    buf: Vec<u8>,
    chunk: usize,
}

impl Pattern {
    /// A pattern serving chunks of up to `chunk` bytes.
    pub fn new(chunk: usize) -> Pattern {
        let buf = (0..(chunk + PERIOD) as u64).map(pattern_byte).collect();
        Pattern { buf, chunk }
    }

    /// The `len` payload bytes starting at stream offset `offset` (`len` ≤ the chunk size).
    pub fn slice(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % PERIOD as u64) as usize;
        &self.buf[start..start + len.min(self.chunk)]
    }

    /// Whether `data` is the payload at stream offset `offset`.
    pub fn check(&self, offset: u64, data: &[u8]) -> bool {
        data.chunks(self.chunk)
            .enumerate()
            .all(|(k, c)| c == self.slice(offset + (k * self.chunk) as u64, c.len()))
    }
}

/// A control request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Start a data listener for `config`.
    Listen {
        /// The listener's configuration (boxed: far larger than the other requests).
        config: Box<BenchConfig>,
    },
    /// Report the server process's CPU time, resident memory and open data connections.
    Stats,
}

/// The server's figures, as the `stats` command returns them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// User + system CPU time of the whole server process since it started, ns.
    pub cpu_ns: u64,
    /// Current resident set, bytes.
    pub rss_bytes: u64,
    /// Data connections open on this control connection's listeners.
    pub conns: u64,
}

/// A control connection, client side.
#[derive(Debug)]
pub struct Control {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    peer: SocketAddr,
    line: String,
}

impl Control {
    /// Connects to a server's control address.
    ///
    /// # Errors
    /// The connection failed.
    pub async fn connect(addr: &str) -> anyhow::Result<Control> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to the control address {addr}"))?;
        s.set_nodelay(true)?;
        let peer = s.peer_addr()?;
        let (rd, wr) = s.into_split();
        Ok(Control {
            rd: BufReader::new(rd),
            wr,
            peer,
            line: String::new(),
        })
    }

    /// The server's address; data ports live on its IP.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    async fn call(&mut self, req: &Request) -> anyhow::Result<serde_json::Value> {
        let mut line = serde_json::to_string(req)?;
        line.push('\n');
        self.wr.write_all(line.as_bytes()).await?;
        self.line.clear();
        let n = self.rd.read_line(&mut self.line).await?;
        if n == 0 {
            bail!("the server closed the control connection");
        }
        let v: serde_json::Value = serde_json::from_str(self.line.trim_end())
            .with_context(|| format!("bad control reply {:?}", self.line.trim_end()))?;
        if v.get("ok").and_then(|o| o.as_bool()) != Some(true) {
            let e = v
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("no error given");
            bail!("server refused: {e}");
        }
        Ok(v)
    }

    /// Asks for a data listener; returns its address (the control peer's IP, the new port).
    ///
    /// # Errors
    /// The server refused the config or the connection failed.
    pub async fn listen(&mut self, config: &BenchConfig) -> anyhow::Result<SocketAddr> {
        let v = self
            .call(&Request::Listen {
                config: Box::new(config.clone()),
            })
            .await?;
        let port = v
            .get("port")
            .and_then(|p| p.as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .context("listen reply without a port")?;
        Ok(SocketAddr::new(self.peer.ip(), port))
    }

    /// The server's current figures.
    ///
    /// # Errors
    /// The connection failed or the reply is malformed.
    pub async fn stats(&mut self) -> anyhow::Result<Stats> {
        let v = self.call(&Request::Stats).await?;
        serde_json::from_value(v).context("malformed stats reply")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = header(Op::Sink, 0x0102_0304_0506_0708);
        assert_eq!(h[0], b'S');
        assert_eq!(parse_header(&h), Some((Op::Sink, 0x0102_0304_0506_0708)));
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(parse_header(&bad), None);
    }

    #[test]
    fn pattern_slices_match_bytes() {
        let p = Pattern::new(1000);
        for off in [0u64, 1, 250, 251, 1_000_003] {
            let s = p.slice(off, 1000);
            for (k, b) in s.iter().enumerate() {
                assert_eq!(*b, pattern_byte(off + k as u64));
            }
            assert!(p.check(off, s));
        }
        let long: Vec<u8> = (5000..8500).map(pattern_byte).collect();
        assert!(p.check(5000, &long));
        assert!(!p.check(5001, &long));
    }

    #[test]
    fn requests_serialise_as_the_contract_says() {
        let r = serde_json::to_value(Request::Stats).unwrap();
        assert_eq!(r, serde_json::json!({"cmd":"stats"}));
        let r = serde_json::to_value(Request::Listen {
            config: Box::default(),
        })
        .unwrap();
        assert_eq!(r["cmd"], "listen");
        assert_eq!(r["config"]["transport"], "kcp");
        let s: Stats =
            serde_json::from_str(r#"{"ok":true,"cpu_ns":5,"rss_bytes":6,"conns":7}"#).unwrap();
        assert_eq!(s.conns, 7);
    }
}
