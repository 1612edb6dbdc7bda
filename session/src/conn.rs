//! The sans-IO part of one session: the KCP engine plus the packet pipeline around it (PROTOCOL.md B.2, B.3).
//!
//! Output: every datagram the engine flushes gets its FEC header written in place (C.2), is copied once into the
//! session's [`TxQueue`], and sealed there (nonce + CRC + cipher, B.2 step 2); parity packets follow the data
//! packet that completed their group. Input: the caller has already opened the datagram (crypt); FEC is detected
//! per packet (B.3 step 3), data packets go to the engine as regular input and rebuilt ones as non-regular.
//!
//! Nothing here allocates per packet once the queues have grown to the session's usual burst.

use std::sync::atomic::Ordering;

use rkcp_crypt::PacketCrypt;
use rkcp_engine::Kcp;
use rkcp_fec::{FecDecoder, FecEncoder};

use crate::config::KcpConfig;
use crate::error::{ConfigError, SessionError};
use crate::snmp::Snmp;
use crate::udp::TxQueue;

/// FEC header bytes on data packets (seqid, type, size).
const FEC_HEADER: usize = rkcp_fec::HEADER_SIZE_PLUS2;

/// KCP's data command (PROTOCOL.md A.2), byte 4 of a segment header.
const CMD_PUSH: u8 = rkcp_engine::Command::Push as u8;

/// The engine and its packet pipeline.
pub(crate) struct Conn {
    pub(crate) kcp: Kcp,
    // Boxed: inline they are ~6 KB, most of an idle session's memory even with FEC off (10,000 sessions).
    fec_enc: Option<Box<FecEncoder>>,
    fec_dec: Option<Box<FecDecoder>>,
    crypt: Option<PacketCrypt>,
    /// Cipher header in front (0 without a cipher; 20 for kcp-go ciphers).
    crypt_head: usize,
    /// Cipher trailer (authenticated kinds only).
    crypt_tail: usize,
    /// Sealed datagrams waiting for the socket.
    pub(crate) tx: TxQueue,
    /// Data datagrams fed to the engine since its last flush: about how many ACKs it holds.
    unacked: usize,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("conv", &self.kcp.conv())
            .field("queued", &self.tx.len())
            .finish()
    }
}

impl Conn {
    /// Builds the engine and pipeline for `conv` from a validated config.
    pub(crate) fn new(conv: u32, cfg: &KcpConfig) -> Result<Conn, SessionError> {
        cfg.validate()?;
        let (crypt_head, crypt_tail) = cfg
            .crypt
            .as_ref()
            .map_or((0, 0), |c| (c.header_len(), c.trailer_len()));
        let fec_enc = match cfg.fec {
            Some(f) => Some(Box::new(
                FecEncoder::new(f.data_shards, f.parity_shards, crypt_head).map_err(|_| {
                    ConfigError::FecShards {
                        data: f.data_shards,
                        parity: f.parity_shards,
                    }
                })?,
            )),
            None => None,
        };
        let fec_dec = match cfg.fec {
            Some(f) => FecDecoder::new(f.data_shards, f.parity_shards)
                .ok()
                .map(Box::new),
            None => None,
        };
        let kcp = Kcp::with_config(conv, &cfg.engine_config(cfg.overhead()))
            .map_err(|e| SessionError::Config(ConfigError::Engine(e)))?;
        Ok(Conn {
            kcp,
            fec_enc,
            fec_dec,
            crypt: cfg.crypt.clone(),
            crypt_head,
            crypt_tail,
            tx: TxQueue::default(),
            unacked: 0,
        })
    }

    /// Crypt + FEC header bytes plus the cipher trailer: what the engine reserves out of each datagram.
    pub(crate) fn overhead(&self) -> usize {
        self.crypt_head
            + self.crypt_tail
            + if self.fec_enc.is_some() {
                FEC_HEADER
            } else {
                0
            }
    }

    /// Runs whatever the engine has due at `now` (see `Kcp::update`), queueing the output. Then, if at least
    /// a full ACK datagram's worth of ACKs has piled up since the engine last flushed, sends them now
    /// rather than at the next periodic flush.
    ///
    /// Why: a pure receiver otherwise acknowledges once per `interval` (10 ms in fast3), so a sender can
    /// move at most one window per interval (1024 × 1.3 kB / 10 ms ≈ 130 MB/s) however fast the path is;
    /// with smux on top the ACKs only came sooner when a window update (UPD) happened to be written. This
    /// runs after each received batch, so ACKs leave once per batch, and only in full datagrams' worth:
    /// each early flush sends at most one ACK datagram that is not full. On the wire it is an ACK-only
    /// flush (kcp-go `flush(true)`), as with `ack_nodelay`, just less often.
    pub(crate) fn update(&mut self, now: u32) {
        let Conn {
            kcp,
            fec_enc,
            crypt,
            tx,
            crypt_tail,
            unacked,
            ..
        } = self;
        let before = tx.len();
        let mut out = |buf: &mut [u8]| emit(fec_enc, crypt.as_ref(), tx, *crypt_tail, buf);
        kcp.update(now, &mut out);
        if tx.len() != before {
            // Any flush writes every pending ACK.
            *unacked = 0;
        }
        let per_datagram = (kcp.mtu() - kcp.reserved()) / rkcp_engine::OVERHEAD;
        if *unacked >= per_datagram.max(1) {
            let mut out = |buf: &mut [u8]| emit(fec_enc, crypt.as_ref(), tx, *crypt_tail, buf);
            kcp.flush_acks(now, &mut out);
            *unacked = 0;
        }
    }

    /// A full flush now (kcp-go's flush after `Write`), queueing the output.
    pub(crate) fn flush(&mut self, now: u32) {
        let Conn {
            kcp,
            fec_enc,
            crypt,
            tx,
            crypt_tail,
            ..
        } = self;
        let mut out = |buf: &mut [u8]| emit(fec_enc, crypt.as_ref(), tx, *crypt_tail, buf);
        kcp.flush(now, &mut out);
        self.unacked = 0;
    }

    /// Counts a datagram that starts with a data segment (it will be acknowledged).
    fn note_data(unacked: &mut usize, seg: &[u8]) {
        if seg.get(4) == Some(&CMD_PUSH) {
            *unacked += 1;
        }
    }

    /// Feeds one opened datagram (crypt header already removed, at least 24 bytes) to FEC and the engine,
    /// counting as kcp-go's `kcpInput` does (PROTOCOL.md B.3 step 3).
    pub(crate) fn input(&mut self, now: u32, data: &[u8], snmp: &Snmp) {
        snmp.in_pkts.fetch_add(1, Ordering::Relaxed);
        snmp.in_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if rkcp_fec::is_fec_packet(data) {
            if data.len() < FEC_HEADER {
                snmp.in_errs.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let is_data = u16::from_le_bytes([data[4], data[5]]) == rkcp_fec::TYPE_DATA;
            if !is_data {
                snmp.fec_parity_shards.fetch_add(1, Ordering::Relaxed);
            }
            // A peer may send FEC although we do not: decode with (1,1) and let autotune find its shape (C.4).
            if self.fec_dec.is_none() {
                self.fec_dec = FecDecoder::new(1, 1).ok().map(Box::new);
            }
            let Conn {
                kcp,
                fec_dec,
                unacked,
                ..
            } = self;
            if is_data {
                Self::note_data(unacked, &data[FEC_HEADER..]);
                if kcp.input(now, &data[FEC_HEADER..], true).is_err() {
                    snmp.kcp_in_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some(dec) = fec_dec.as_mut() {
                let mut recovered = 0u64;
                let mut errors = 0u64;
                let outcome = dec.decode(now, data, |rebuilt: &[u8]| {
                    Self::note_data(unacked, rebuilt);
                    if kcp.input(now, rebuilt, false).is_ok() {
                        recovered += 1;
                    } else {
                        errors += 1;
                    }
                });
                if recovered > 0 {
                    snmp.fec_recovered.fetch_add(recovered, Ordering::Relaxed);
                }
                if errors > 0 {
                    snmp.kcp_in_errors.fetch_add(errors, Ordering::Relaxed);
                }
                if let Ok(o) = outcome {
                    crate::fecglue::count_outcome(&o, snmp);
                }
            }
        } else {
            Self::note_data(&mut self.unacked, data);
            if self.kcp.input(now, data, true).is_err() {
                snmp.kcp_in_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Drops the FEC receive queue and everything queued for sending (after a close, PROTOCOL.md B.12).
    pub(crate) fn release(&mut self) {
        self.fec_dec = None;
        self.tx.clear();
    }
}

/// One engine datagram through FEC and the cipher into the send queue (PROTOCOL.md B.2).
///
/// `buf` is `reserved` bytes of space (crypt head + FEC header + crypt tail), then KCP segments. The datagram we
/// send is `buf[crypt_tail..]` followed by `crypt_tail` bytes of tag space, so its length is `buf.len()` and it
/// never exceeds the MTU; with a kcp-go cipher (`crypt_tail == 0`) it is exactly `buf`.
fn emit(
    fec_enc: &mut Option<Box<FecEncoder>>,
    crypt: Option<&PacketCrypt>,
    tx: &mut TxQueue,
    crypt_tail: usize,
    buf: &mut [u8],
) {
    let len = buf.len();
    let pkt = &mut buf[crypt_tail..];
    // Reserve the data packet's slot first so that parity packets, produced while encoding, follow it.
    let slot = tx.len();
    tx.push(len);
    if let Some(enc) = fec_enc.as_mut() {
        enc.encode(pkt, |parity: &mut [u8]| {
            let p = tx.push(parity.len() + crypt_tail);
            p[..parity.len()].copy_from_slice(parity);
            if let Some(c) = crypt {
                c.seal(p);
            }
        });
    }
    let out = tx.get_mut(slot);
    out[..len - crypt_tail].copy_from_slice(pkt);
    if let Some(c) = crypt {
        c.seal(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` full data datagrams from a sender, fed to a receiver between its periodic flushes: the receiver's
    /// `update` sends ACKs early only once a full ACK datagram's worth has arrived.
    fn acks_after(n: usize) -> usize {
        let cfg = KcpConfig::fast3();
        let snmp = Snmp::default();
        let mut tx = Conn::new(7, &cfg).unwrap();
        let mut rx = Conn::new(7, &cfg).unwrap();
        tx.update(0);
        rx.update(0);
        // Tell the sender the receiver's window (it assumes 32 segments until it hears from the peer).
        rx.kcp.send(b"w").unwrap();
        rx.flush(0);
        for i in 0..rx.tx.len() {
            tx.input(0, rx.tx.get(i), &snmp);
        }
        tx.tx.clear();
        rx.tx.clear();
        let mss = tx.kcp.mss();
        tx.kcp.send(&vec![1u8; mss * n]).unwrap();
        tx.flush(1);
        // First the ACK for "w" (its window slide makes the receiver flush), then n data datagrams.
        assert_eq!(tx.tx.len(), n + 1);
        rx.input(2, tx.tx.get(0), &snmp);
        rx.update(2);
        rx.tx.clear();
        for i in 1..n + 1 {
            rx.input(3, tx.tx.get(i), &snmp);
        }
        rx.update(3); // the periodic flush is due at 10
        rx.tx.len()
    }

    #[test]
    fn acks_leave_early_only_in_full_datagrams_worth() {
        let cfg = KcpConfig::fast3();
        let per_datagram = (cfg.mtu - cfg.overhead()) / rkcp_engine::OVERHEAD;
        assert_eq!(acks_after(per_datagram - 1), 0);
        // In-order ACKs are filtered down to the last one (A.10), so one small datagram answers them all.
        assert_eq!(acks_after(per_datagram), 1);
        assert_eq!(acks_after(per_datagram * 3), 1);
    }
}
