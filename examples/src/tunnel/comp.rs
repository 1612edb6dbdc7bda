//! kcptun's snappy layer (`generic.CompStream`, docs/wire-format.md#kcptun-snappy) as a tokio `AsyncRead + AsyncWrite` wrapper.
//!
//! One snappy *framing* stream per direction wraps the whole KCP session, under smux. kcptun writes every smux
//! frame with one `Write` followed by `Flush`, so each smux frame becomes exactly one snappy chunk (frames are at
//! most 32776 bytes with the default frame size, below the 65536-byte chunk limit). Our smux driver batches
//! several frames into one write, so the write side here finds the frame boundaries again (the 8-byte smux
//! header says how long each frame is, `docs/wire-format.md#smux-frame`) and emits one chunk per frame: the compressed byte stream is the one
//! kcptun produces. Only the KCP packetisation differs: several chunks may share one KCP write (kcptun issues one
//! or two writes per chunk), which the peer cannot tell apart in stream mode.
//!
//! The read side accepts any valid framing stream (the stream identifier first, CRCs checked, reserved
//! skippable chunks skipped, docs/wire-format.md#kcptun-snappy) and fails with `InvalidData` otherwise, which kills the smux
//! session on top, as in kcptun.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// smux frame header length (docs/wire-format.md#smux-frame).
const SMUX_HEADER: usize = 8;
/// Largest chunk body a Go snappy reader accepts: `MaxEncodedLen(65536) + 4` (docs/wire-format.md#kcptun-snappy).
const MAX_CHUNK_BODY: usize = 76490 + 4;
/// Bytes of encoded chunks we hold before a write waits for the KCP session to take them.
const HIGH_WATER: usize = 128 * 1024;
/// Bytes asked from the KCP session per read.
const READ_CHUNK: usize = 64 * 1024;

/// Complete snappy chunks waiting to be decoded: `snap`'s [`FrameDecoder`](snap::read::FrameDecoder) reads
/// from here and only ever sees whole chunks, so it never hits a premature end of input.
#[derive(Debug, Default)]
struct ChunkFeed {
    buf: Vec<u8>,
    /// Next byte the decoder reads.
    pos: usize,
    /// End of the complete chunks (`pos..limit` is what the decoder may read).
    limit: usize,
}

impl Read for ChunkFeed {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.buf.get(self.pos..self.limit).unwrap_or_default();
        let n = avail.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), avail.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

impl ChunkFeed {
    /// Extends `limit` over every complete chunk that follows it.
    ///
    /// # Errors
    /// `InvalidData` for a chunk longer than a Go reader accepts (it could never complete within our bound).
    fn scan(&mut self) -> io::Result<()> {
        loop {
            let Some(h) = self.buf.get(self.limit..self.limit + 4) else {
                return Ok(());
            };
            let len = usize::from(h[1]) | usize::from(h[2]) << 8 | usize::from(h[3]) << 16;
            if len > MAX_CHUNK_BODY {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("snappy chunk of {len} bytes exceeds the {MAX_CHUNK_BODY}-byte limit"),
                ));
            }
            if self.buf.len() < self.limit + 4 + len {
                return Ok(());
            }
            self.limit += 4 + len;
        }
    }

    /// Drops consumed bytes so the buffer stays within one partial chunk plus one read.
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            self.limit = 0;
        } else if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.limit -= self.pos;
            self.pos = 0;
        }
    }
}

/// Snappy framing over a byte stream, laid out exactly as kcptun's `CompStream` (module docs).
#[derive(Debug)]
pub struct CompStream<T> {
    inner: T,
    // --- write side ---
    enc: snap::write::FrameEncoder<Vec<u8>>,
    /// Bytes of `enc`'s output already handed to `inner`.
    out_pos: usize,
    /// A smux frame split across writes, waiting for its remaining bytes.
    partial: Vec<u8>,
    // --- read side ---
    dec: snap::read::FrameDecoder<ChunkFeed>,
    read_eof: bool,
}

impl<T> CompStream<T> {
    /// Wraps `inner` (kcptun wraps the KCP session).
    pub fn new(inner: T) -> Self {
        CompStream {
            inner,
            enc: snap::write::FrameEncoder::new(Vec::new()),
            out_pos: 0,
            partial: Vec::new(),
            dec: snap::read::FrameDecoder::new(ChunkFeed::default()),
            read_eof: false,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// One smux frame in, one snappy chunk out (two for a frame above 65536 bytes, as Go's writer splits it).
    fn encode_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.enc.write_all(frame)?;
        self.enc.flush()
    }

    /// Length of the frame whose header starts `h` (docs/wire-format.md#smux-frame): PSH and UPD carry `length` bytes, SYN,
    /// FIN and NOP none (a Go receiver ignores their length field).
    fn frame_len(h: &[u8]) -> usize {
        let cmd = h[1];
        let len = usize::from(u16::from_le_bytes([h[2], h[3]]));
        match cmd {
            0 | 1 | 3 => SMUX_HEADER,
            _ => SMUX_HEADER + len,
        }
    }

    /// Splits `data` into smux frames and encodes each complete one; a trailing partial frame is kept.
    fn encode(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if !self.partial.is_empty() || data.len() < SMUX_HEADER {
                // Complete the header first, then the frame.
                let need_hdr = SMUX_HEADER.saturating_sub(self.partial.len());
                if need_hdr > 0 {
                    let take = need_hdr.min(data.len());
                    self.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.partial.len() < SMUX_HEADER {
                        return Ok(());
                    }
                }
                let flen = Self::frame_len(&self.partial);
                let take = (flen - self.partial.len()).min(data.len());
                self.partial.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.partial.len() == flen {
                    let frame = std::mem::take(&mut self.partial);
                    self.encode_frame(&frame)?;
                    self.partial = frame;
                    self.partial.clear();
                }
                continue;
            }
            let flen = Self::frame_len(data);
            if data.len() < flen {
                self.partial.extend_from_slice(data);
                return Ok(());
            }
            let (frame, rest) = data.split_at(flen);
            self.encode_frame(frame)?;
            data = rest;
        }
        Ok(())
    }
}

impl<T: AsyncWrite + Unpin> CompStream<T> {
    /// Writes encoded chunks to `inner` until at most `keep` bytes remain; `Pending` if it cannot get there.
    fn poll_drain(&mut self, cx: &mut Context<'_>, keep: usize) -> Poll<io::Result<()>> {
        loop {
            let out = self.enc.get_ref();
            let rest = out.get(self.out_pos..).unwrap_or_default();
            if rest.len() <= keep {
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        let len = self.enc.get_ref().len();
        if self.out_pos == len {
            self.enc.get_mut().clear();
            self.out_pos = 0;
        } else if self.out_pos > HIGH_WATER {
            let pos = self.out_pos;
            self.enc.get_mut().drain(..pos);
            self.out_pos = 0;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx, HIGH_WATER))?;
        let mut n = 0;
        for b in bufs {
            self.encode(b)?;
            n += b.len();
        }
        // Push the chunks towards KCP now (kcptun writes each chunk at once); what KCP cannot take yet goes at
        // the next write or flush. An error here shows up again on the next call.
        let _ = self.poll_drain(cx, 0);
        Poll::Ready(Ok(n))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CompStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_slices(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx, 0))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx, 0))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CompStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Decoded bytes left from the last chunk, or the complete chunks in the feed (a chunk may decode to
            // nothing: stream identifier, padding). 0 means the feed holds no complete chunk.
            let n = this.dec.read(buf.initialize_unfilled())?;
            this.dec.get_mut().compact();
            if n > 0 {
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.read_eof {
                let feed = this.dec.get_ref();
                if feed.buf.len() > feed.pos {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "snappy stream ended inside a chunk",
                    )));
                }
                return Poll::Ready(Ok(()));
            }
            // Read more from the session.
            let feed = this.dec.get_mut();
            let start = feed.buf.len();
            feed.buf.resize(start + READ_CHUNK, 0);
            let mut rb = ReadBuf::new(&mut feed.buf[start..]);
            let res = Pin::new(&mut this.inner).poll_read(cx, &mut rb);
            let n = match &res {
                Poll::Ready(Ok(())) => rb.filled().len(),
                _ => 0,
            };
            let feed = this.dec.get_mut();
            feed.buf.truncate(start + n);
            match res {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if n == 0 => this.read_eof = true,
                Poll::Ready(Ok(())) => feed.scan()?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(cmd: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![1, cmd];
        f.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        f.extend_from_slice(&sid.to_le_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Parses a framing stream into (type, body) chunks.
    fn chunks(mut s: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut v = Vec::new();
        while s.len() >= 4 {
            let len = usize::from(s[1]) | usize::from(s[2]) << 8 | usize::from(s[3]) << 16;
            v.push((s[0], s[4..4 + len].to_vec()));
            s = &s[4 + len..];
        }
        assert!(s.is_empty());
        v
    }

    #[tokio::test]
    async fn one_chunk_per_smux_frame_whatever_the_write_split() {
        let text = b"hello hello hello hello hello hello hello hello hello".repeat(20);
        let random: Vec<u8> = (0..3000).map(|_| rand::random::<u8>()).collect();
        let mut all = Vec::new();
        all.extend(frame(0, 3, b""));
        all.extend(frame(2, 3, &text));
        all.extend(frame(2, 3, &random));
        all.extend(frame(4, 3, &[1, 2, 3, 4, 5, 6, 7, 8]));
        all.extend(frame(1, 3, b""));
        for split in [1usize, 3, 7, 8, 9, 100, 4096, all.len()] {
            let (a, mut b) = tokio::io::duplex(1 << 20);
            let mut c = CompStream::new(a);
            for piece in all.chunks(split) {
                c.write_all(piece).await.unwrap();
            }
            c.flush().await.unwrap();
            drop(c);
            let mut wire = Vec::new();
            b.read_to_end(&mut wire).await.unwrap();
            let ch = chunks(&wire);
            assert_eq!(ch[0], (0xff, b"sNaPpY".to_vec()));
            // identifier + 5 frames; the text compresses (type 0), the random bytes do not (type 1).
            assert_eq!(ch.len(), 6, "split {split}");
            assert_eq!(ch[2].0, 0);
            assert_eq!(ch[3].0, 1);
            // The peer decodes the exact byte sequence.
            let mut dec = CompStream::new(std::io::Cursor::new(wire));
            let mut back = Vec::new();
            dec.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, all);
        }
    }

    #[tokio::test]
    async fn decoder_rejects_missing_identifier_bad_crc_and_reserved_chunks() {
        let mut good = Vec::new();
        {
            let mut e = snap::write::FrameEncoder::new(&mut good);
            e.write_all(b"some smux bytes").unwrap();
            e.flush().unwrap();
        }
        let read = |bytes: Vec<u8>| async move {
            let mut d = CompStream::new(std::io::Cursor::new(bytes));
            let mut v = Vec::new();
            d.read_to_end(&mut v).await.map(|_| v)
        };
        assert_eq!(read(good.clone()).await.unwrap(), b"some smux bytes");
        // No stream identifier.
        assert!(read(good[10..].to_vec()).await.is_err());
        // Corrupt CRC.
        let mut bad = good.clone();
        bad[14] ^= 1;
        assert!(read(bad).await.is_err());
        // Reserved unskippable chunk type 0x02.
        let mut bad = good.clone();
        bad.extend_from_slice(&[0x02, 1, 0, 0, 0]);
        assert!(read(bad).await.is_err());
        // Skippable 0x80 chunk is ignored.
        let mut ok = good.clone();
        ok.extend_from_slice(&[0x80, 2, 0, 0, 9, 9]);
        assert_eq!(read(ok).await.unwrap(), b"some smux bytes");
        // Oversized chunk length is refused without buffering it.
        let mut bad = good.clone();
        bad.extend_from_slice(&[0x00, 0xff, 0xff, 0xff]);
        assert!(read(bad).await.is_err());
        // Truncated chunk.
        assert!(read(good[..good.len() - 1].to_vec()).await.is_err());
    }
}
