//! The 24-byte segment header (docs/wire-format.md#kcp-segment).
//!
//! ```text
//! 0      4     5     6      8      12     16     20     24
//! | conv | cmd | frg | wnd  |  ts  |  sn  | una  | len  | data (len bytes) ...
//! ```
//! Every integer is little-endian. Several segments may follow each other in one datagram.

use crate::KcpError;

/// Size of a segment header in bytes (kcp-go `IKCP_OVERHEAD`).
pub const OVERHEAD: usize = 24;

/// The segment command byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    /// Data (`IKCP_CMD_PUSH`).
    Push = 81,
    /// Acknowledgement of one `sn`; `ts` echoes the acked PUSH's `ts` (`IKCP_CMD_ACK`).
    Ack = 82,
    /// Window probe: "tell me your window" (`IKCP_CMD_WASK`).
    Wask = 83,
    /// Window answer; the window itself travels in the header's `wnd` (`IKCP_CMD_WINS`).
    Wins = 84,
}

impl Command {
    /// Maps the wire byte to a command, `None` for anything but 81..=84.
    #[inline]
    pub fn from_u8(b: u8) -> Option<Command> {
        match b {
            81 => Some(Command::Push),
            82 => Some(Command::Ack),
            83 => Some(Command::Wask),
            84 => Some(Command::Wins),
            _ => None,
        }
    }
}

impl From<Command> for u8 {
    fn from(c: Command) -> u8 {
        c as u8
    }
}

impl TryFrom<u8> for Command {
    type Error = KcpError;
    fn try_from(b: u8) -> Result<Self, KcpError> {
        Command::from_u8(b).ok_or(KcpError::BadCommand(b))
    }
}

/// A decoded segment header. `len` is the length of the data that follows the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentHeader {
    /// Conversation id; both peers must agree on it.
    pub conv: u32,
    /// What the segment is.
    pub cmd: Command,
    /// Fragment countdown in message mode (the last fragment of a message has 0); 0 in stream mode.
    pub frg: u8,
    /// The sender's free receive window in segments.
    pub wnd: u16,
    /// PUSH: the sender's clock at (re)transmission. ACK: the echoed `ts` of the acked PUSH.
    pub ts: u32,
    /// Sequence number (PUSH), or the acknowledged sequence number (ACK).
    pub sn: u32,
    /// The sender's `rcv_nxt`: every sn below it has arrived (cumulative acknowledgement).
    pub una: u32,
    /// Length of the data following the header.
    pub len: u32,
}

impl SegmentHeader {
    /// Writes the 24 header bytes to the front of `out`.
    ///
    /// # Panics
    /// If `out` is shorter than [`OVERHEAD`]; that is a caller bug, never a peer's doing.
    #[inline]
    pub fn encode(&self, out: &mut [u8]) {
        encode_raw(
            out,
            self.conv,
            self.cmd as u8,
            self.frg,
            self.wnd,
            self.ts,
            self.sn,
            self.una,
            self.len,
        );
    }

    /// Reads a header from the front of `buf`. Only the header is checked: whether `len` bytes of
    /// data follow is the caller's business.
    ///
    /// # Errors
    /// [`KcpError::Truncated`] if `buf` holds fewer than 24 bytes, [`KcpError::BadCommand`] for a
    /// command byte outside 81..=84.
    pub fn decode(buf: &[u8]) -> Result<SegmentHeader, KcpError> {
        let raw = RawHeader::read(buf).ok_or(KcpError::Truncated)?;
        let cmd = Command::try_from(raw.cmd)?;
        Ok(SegmentHeader {
            conv: raw.conv,
            cmd,
            frg: raw.frg,
            wnd: raw.wnd,
            ts: raw.ts,
            sn: raw.sn,
            una: raw.una,
            len: raw.len,
        })
    }
}

/// The conversation id and sequence number of the first segment in `buf`, read raw (the command
/// byte is not checked), as kcp-go's listener reads them to route a datagram; `None` if fewer
/// than 24 bytes are available. Never panics.
///
/// ```
/// let mut seg = [0u8; 24];
/// seg[0] = 7;
/// seg[12] = 3;
/// assert_eq!(rkcp_engine::segment::conv_and_sn(&seg), Some((7, 3)));
/// assert_eq!(rkcp_engine::segment::conv_and_sn(&seg[..23]), None);
/// ```
pub fn conv_and_sn(buf: &[u8]) -> Option<(u32, u32)> {
    RawHeader::read(buf).map(|h| (h.conv, h.sn))
}

/// Header fields as found on the wire, command not yet validated. The engine uses this so that it
/// can apply kcp-go's check order (conv, then length, then command; docs/wire-format.md#kcp-input).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawHeader {
    pub(crate) conv: u32,
    pub(crate) cmd: u8,
    pub(crate) frg: u8,
    pub(crate) wnd: u16,
    pub(crate) ts: u32,
    pub(crate) sn: u32,
    pub(crate) una: u32,
    pub(crate) len: u32,
}

impl RawHeader {
    /// `None` if fewer than 24 bytes are available.
    #[inline]
    pub(crate) fn read(buf: &[u8]) -> Option<RawHeader> {
        let h: &[u8; OVERHEAD] = buf.get(..OVERHEAD)?.try_into().ok()?;
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Some(RawHeader {
            conv: u32_at(0),
            cmd: h[4],
            frg: h[5],
            wnd: u16::from_le_bytes([h[6], h[7]]),
            ts: u32_at(8),
            sn: u32_at(12),
            una: u32_at(16),
            len: u32_at(20),
        })
    }
}

/// Writes a header without building a [`SegmentHeader`] first (the flush hot path).
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_raw(
    out: &mut [u8],
    conv: u32,
    cmd: u8,
    frg: u8,
    wnd: u16,
    ts: u32,
    sn: u32,
    una: u32,
    len: u32,
) {
    let h: &mut [u8; OVERHEAD] = (&mut out[..OVERHEAD])
        .try_into()
        .expect("slice of OVERHEAD bytes");
    h[0..4].copy_from_slice(&conv.to_le_bytes());
    h[4] = cmd;
    h[5] = frg;
    h[6..8].copy_from_slice(&wnd.to_le_bytes());
    h[8..12].copy_from_slice(&ts.to_le_bytes());
    h[12..16].copy_from_slice(&sn.to_le_bytes());
    h[16..20].copy_from_slice(&una.to_le_bytes());
    h[20..24].copy_from_slice(&len.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_a1_vector() {
        let h = SegmentHeader {
            conv: 0x1122_3344,
            cmd: Command::Push,
            frg: 0,
            wnd: 512,
            ts: 1000,
            sn: 7,
            una: 5,
            len: 5,
        };
        let mut b = [0u8; OVERHEAD];
        h.encode(&mut b);
        let want = [
            0x44, 0x33, 0x22, 0x11, 0x51, 0x00, 0x00, 0x02, 0xe8, 0x03, 0, 0, 7, 0, 0, 0, 5, 0, 0,
            0, 5, 0, 0, 0,
        ];
        assert_eq!(b, want);
        assert_eq!(SegmentHeader::decode(&b).unwrap(), h);
    }

    #[test]
    fn decode_errors() {
        assert_eq!(SegmentHeader::decode(&[0; 23]), Err(KcpError::Truncated));
        let mut b = [0u8; 24];
        b[4] = 80;
        assert_eq!(SegmentHeader::decode(&b), Err(KcpError::BadCommand(80)));
        b[4] = 85;
        assert_eq!(SegmentHeader::decode(&b), Err(KcpError::BadCommand(85)));
        for c in 81..=84u8 {
            b[4] = c;
            assert_eq!(SegmentHeader::decode(&b).unwrap().cmd as u8, c);
        }
    }
}
