//! The smux frame codec (docs/wire-format.md#smux-frame).
//!
//! Every frame starts with an 8-byte little-endian header `ver | cmd | len u16 | sid u32`.
//! Only PSH carries `len` payload bytes; UPD always carries exactly 8 bytes
//! (`consumed u32 | window u32`) whatever `len` says, and SYN, FIN and NOP carry none
//! (Go's recvLoop ignores their length field, so we never send a non-zero one and never
//! read a payload for them either).
//!
//! The codec is pure: [`Header::decode`] and [`decode_frame`] never panic on any input
//! and never allocate more than the frame they return.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Size of the frame header in bytes.
pub const HEADER_SIZE: usize = 8;

/// Size of the UPD payload (`consumed u32 | window u32`).
pub const UPD_SIZE: usize = 8;

/// Largest PSH payload the 16-bit length field can describe.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// A frame command (docs/wire-format.md#smux-frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cmd {
    /// Open a stream.
    Syn = 0,
    /// Close a stream: the reader sees EOF once it has drained its buffer.
    Fin = 1,
    /// Stream data.
    Psh = 2,
    /// Keepalive; stream id 0, no payload.
    Nop = 3,
    /// Version 2 window update: `consumed | window`.
    Upd = 4,
}

impl Cmd {
    /// Parses a command byte; anything above 4 is Go's `ErrInvalidProtocol`.
    pub fn from_u8(b: u8) -> Result<Self, FrameError> {
        Ok(match b {
            0 => Self::Syn,
            1 => Self::Fin,
            2 => Self::Psh,
            3 => Self::Nop,
            4 => Self::Upd,
            other => return Err(FrameError::UnknownCommand(other)),
        })
    }
}

/// Errors found while decoding frames. All of them are fatal for the session, as in Go
/// where recvLoop stops on `ErrInvalidProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The command byte is not one of SYN/FIN/PSH/NOP/UPD. The peer is broken or not
    /// speaking smux; the session must be torn down.
    #[error("invalid protocol: unknown command {0}")]
    UnknownCommand(u8),
    /// The version byte differs from the session's version (both ends must be configured
    /// with the same version, docs/wire-format.md#smux-v2-window). Reconfigure one side.
    #[error("invalid protocol: frame version {got}, session version {expected}")]
    VersionMismatch {
        /// Version byte found in the frame.
        got: u8,
        /// Version the session speaks.
        expected: u8,
    },
}

/// A decoded 8-byte frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version byte (1 or 2 for a well-behaved peer).
    pub version: u8,
    /// Command.
    pub cmd: Cmd,
    /// Length field. Meaningful for PSH (payload length) and UPD (8, but ignored).
    pub length: u16,
    /// Stream id.
    pub stream_id: u32,
}

impl Header {
    /// Builds a header.
    pub fn new(version: u8, cmd: Cmd, length: u16, stream_id: u32) -> Self {
        Self {
            version,
            cmd,
            length,
            stream_id,
        }
    }

    /// Encodes the header in wire order.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        out[0] = self.version;
        out[1] = self.cmd as u8;
        out[2..4].copy_from_slice(&self.length.to_le_bytes());
        out[4..8].copy_from_slice(&self.stream_id.to_le_bytes());
        out
    }

    /// Decodes a header. Only the command byte can be invalid here; the version is
    /// checked by the caller, which knows (or is detecting) the session version.
    pub fn decode(raw: &[u8; HEADER_SIZE]) -> Result<Self, FrameError> {
        Ok(Self {
            version: raw[0],
            cmd: Cmd::from_u8(raw[1])?,
            length: u16::from_le_bytes([raw[2], raw[3]]),
            stream_id: u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
        })
    }

    /// Number of payload bytes that follow this header on the wire, as Go's recvLoop
    /// reads them: `length` for PSH, always 8 for UPD, none for the rest.
    pub fn payload_len(&self) -> usize {
        match self.cmd {
            Cmd::Psh => usize::from(self.length),
            Cmd::Upd => UPD_SIZE,
            Cmd::Syn | Cmd::Fin | Cmd::Nop => 0,
        }
    }
}

/// A complete decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// SYN for a stream id.
    Syn(u32),
    /// FIN for a stream id.
    Fin(u32),
    /// PSH with its payload (possibly empty).
    Psh(u32, Bytes),
    /// NOP (keepalive); the stream id is carried but meaningless.
    Nop(u32),
    /// UPD: the peer has consumed `consumed` bytes of the stream and offers `window`.
    Upd {
        /// Stream id.
        stream_id: u32,
        /// Total bytes the peer application has read from the stream (wrapping).
        consumed: u32,
        /// Window the peer advertises.
        window: u32,
    },
}

impl Frame {
    /// Appends the wire encoding of this frame to `out`.
    ///
    /// PSH payloads longer than [`MAX_PAYLOAD`] are truncated to it; callers split data
    /// into frames of at most `max_frame_size` bytes first.
    pub fn encode(&self, version: u8, out: &mut BytesMut) {
        match self {
            Frame::Syn(sid) => out.put_slice(&Header::new(version, Cmd::Syn, 0, *sid).encode()),
            Frame::Fin(sid) => out.put_slice(&Header::new(version, Cmd::Fin, 0, *sid).encode()),
            Frame::Nop(sid) => out.put_slice(&Header::new(version, Cmd::Nop, 0, *sid).encode()),
            Frame::Psh(sid, data) => {
                let len = data.len().min(MAX_PAYLOAD);
                // len <= u16::MAX by the min above.
                let len16 = u16::try_from(len).unwrap_or(u16::MAX);
                out.put_slice(&Header::new(version, Cmd::Psh, len16, *sid).encode());
                out.put_slice(data.get(..len).unwrap_or_default());
            }
            Frame::Upd {
                stream_id,
                consumed,
                window,
            } => {
                encode_upd(version, *stream_id, *consumed, *window, out);
            }
        }
    }
}

/// Appends a UPD frame (header with length 8, then `consumed | window`).
pub fn encode_upd(version: u8, stream_id: u32, consumed: u32, window: u32, out: &mut BytesMut) {
    out.put_slice(&Header::new(version, Cmd::Upd, UPD_SIZE as u16, stream_id).encode());
    out.put_u32_le(consumed);
    out.put_u32_le(window);
}

/// Appends a payload-less control frame (SYN, FIN or NOP).
pub fn encode_control(version: u8, cmd: Cmd, stream_id: u32, out: &mut BytesMut) {
    out.put_slice(&Header::new(version, cmd, 0, stream_id).encode());
}

/// Peeks at the header at the front of `buf` without consuming anything.
pub fn peek_header(buf: &[u8]) -> Option<Result<Header, FrameError>> {
    let raw: &[u8; HEADER_SIZE] = buf.get(..HEADER_SIZE)?.try_into().ok()?;
    Some(Header::decode(raw))
}

/// Decodes one frame from the front of `buf`, consuming it.
///
/// Returns `Ok(None)` (consuming nothing) while the frame is incomplete, and an error for
/// a bad command or a version different from `version`. The PSH payload is split off
/// `buf` without copying.
pub fn decode_frame(buf: &mut BytesMut, version: u8) -> Result<Option<Frame>, FrameError> {
    let hdr = match peek_header(buf) {
        None => return Ok(None),
        Some(h) => h?,
    };
    if hdr.version != version {
        return Err(FrameError::VersionMismatch {
            got: hdr.version,
            expected: version,
        });
    }
    let total = HEADER_SIZE + hdr.payload_len();
    if buf.len() < total {
        return Ok(None);
    }
    buf.advance(HEADER_SIZE);
    let sid = hdr.stream_id;
    Ok(Some(match hdr.cmd {
        Cmd::Syn => Frame::Syn(sid),
        Cmd::Fin => Frame::Fin(sid),
        Cmd::Nop => Frame::Nop(sid),
        Cmd::Psh => Frame::Psh(sid, buf.split_to(hdr.payload_len()).freeze()),
        Cmd::Upd => {
            let consumed = buf.get_u32_le();
            let window = buf.get_u32_le();
            Frame::Upd {
                stream_id: sid,
                consumed,
                window,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn verified_vectors() {
        // docs/wire-format.md#smux-frame (verified against Go).
        let mut out = BytesMut::new();
        Frame::Syn(3).encode(2, &mut out);
        assert_eq!(&out[..], &[2, 0, 0, 0, 3, 0, 0, 0]);
        out.clear();
        Frame::Upd {
            stream_id: 3,
            consumed: 20,
            window: 2_097_152,
        }
        .encode(2, &mut out);
        assert_eq!(
            &out[..],
            &[2, 4, 8, 0, 3, 0, 0, 0, 0x14, 0, 0, 0, 0, 0, 0x20, 0]
        );
    }

    #[test]
    fn control_frames_ignore_length() {
        // A SYN with a non-zero length: Go reads no payload, so neither do we.
        let mut buf = BytesMut::from(&[1u8, 0, 5, 0, 7, 0, 0, 0, 1, 3, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(decode_frame(&mut buf, 1), Ok(Some(Frame::Syn(7))));
        assert_eq!(decode_frame(&mut buf, 1), Ok(Some(Frame::Nop(0))));
        assert!(buf.is_empty());
    }

    #[test]
    fn upd_reads_eight_bytes_whatever_length_says() {
        let mut buf = BytesMut::from(&[2u8, 4, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0][..]);
        assert_eq!(
            decode_frame(&mut buf, 2),
            Ok(Some(Frame::Upd {
                stream_id: 9,
                consumed: 1,
                window: 2
            }))
        );
    }

    #[test]
    fn errors() {
        let mut buf = BytesMut::from(&[1u8, 5, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(
            decode_frame(&mut buf, 1),
            Err(FrameError::UnknownCommand(5))
        );
        let mut buf = BytesMut::from(&[2u8, 0, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(
            decode_frame(&mut buf, 1),
            Err(FrameError::VersionMismatch {
                got: 2,
                expected: 1
            })
        );
    }

    #[test]
    fn incomplete_consumes_nothing() {
        let mut buf = BytesMut::from(&[1u8, 2, 4, 0, 3, 0, 0, 0, 1, 2][..]);
        assert_eq!(decode_frame(&mut buf, 1), Ok(None));
        assert_eq!(buf.len(), 10);
        buf.extend_from_slice(&[3, 4]);
        assert_eq!(
            decode_frame(&mut buf, 1),
            Ok(Some(Frame::Psh(3, Bytes::from_static(&[1, 2, 3, 4]))))
        );
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            any::<u32>().prop_map(Frame::Syn),
            any::<u32>().prop_map(Frame::Fin),
            any::<u32>().prop_map(Frame::Nop),
            (
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..2000)
            )
                .prop_map(|(s, d)| Frame::Psh(s, Bytes::from(d))),
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(s, c, w)| Frame::Upd {
                stream_id: s,
                consumed: c,
                window: w
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(frames in proptest::collection::vec(arb_frame(), 0..20), ver in 1u8..=2, cut in 0usize..5000) {
            let mut wire = BytesMut::new();
            for f in &frames {
                f.encode(ver, &mut wire);
            }
            // Feed in two pieces to exercise partial input.
            let cut = cut.min(wire.len());
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(f) = decode_frame(&mut buf, ver).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(f) = decode_frame(&mut buf, ver).unwrap() {
                got.push(f);
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn header_round_trip(ver in any::<u8>(), cmd in 0u8..=4, len in any::<u16>(), sid in any::<u32>()) {
            let h = Header::new(ver, Cmd::from_u8(cmd).unwrap(), len, sid);
            prop_assert_eq!(Header::decode(&h.encode()), Ok(h));
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), ver in 1u8..=2) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = decode_frame(&mut buf, ver) {}
        }
    }
}
