//! Session-level tests over in-memory pipes (and one over TCP).

use std::time::Duration;

use bytes::BytesMut;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

use crate::frame::{self, Frame};
use crate::{Config, Error, Session, Version};

pub(crate) fn cfg(v: Version) -> Config {
    Config {
        version: v,
        ..Config::default()
    }
}

pub(crate) fn pair(c: Config, s: Config) -> (Session, Session) {
    let (a, b) = duplex(64 * 1024);
    (
        Session::client(a, c).unwrap(),
        Session::server(b, s).unwrap(),
    )
}

pub(crate) fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A peer speaking raw frames, to check exactly what goes on the wire.
pub(crate) struct Raw {
    io: DuplexStream,
    buf: BytesMut,
    ver: u8,
}

impl Raw {
    fn new(io: DuplexStream, ver: u8) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            ver,
        }
    }
    pub(crate) async fn send(&mut self, f: Frame) {
        let mut out = BytesMut::new();
        f.encode(self.ver, &mut out);
        self.io.write_all(&out).await.unwrap();
    }
    async fn send_raw(&mut self, b: &[u8]) {
        self.io.write_all(b).await.unwrap();
    }
    /// Next frame, or None at EOF.
    pub(crate) async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = frame::decode_frame(&mut self.buf, self.ver).unwrap() {
                return Some(f);
            }
            let mut tmp = [0u8; 4096];
            let n = self.io.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }
    /// Next frame that is not a NOP.
    pub(crate) async fn recv_data(&mut self) -> Option<Frame> {
        loop {
            match self.recv().await? {
                Frame::Nop(_) => continue,
                f => return Some(f),
            }
        }
    }
}

pub(crate) fn raw_server(c: Config, ver: u8) -> (Session, Raw) {
    let (a, b) = duplex(1 << 20);
    (Session::client(a, c).unwrap(), Raw::new(b, ver))
}

pub(crate) fn raw_client(s: Config, ver: u8) -> (Session, Raw) {
    let (a, b) = duplex(1 << 20);
    (Session::server(a, s).unwrap(), Raw::new(b, ver))
}

pub(crate) async fn echo_server(server: Session) {
    while let Ok(mut st) = server.accept_stream().await {
        tokio::spawn(async move {
            let (mut r, mut w) = st.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
    }
}

pub(crate) async fn echo_check(client: &Session, seed: u64, len: usize) {
    let data = pattern(seed, len);
    let st = client.open_stream().await.unwrap();
    let (mut r, mut w) = st.into_split();
    let d2 = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&d2).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    let _w = writer.await.unwrap();
    assert_eq!(got.len(), data.len());
    assert_eq!(Sha256::digest(&got), Sha256::digest(&data));
}

#[tokio::test]
async fn echo_one_big() {
    for v in [Version::V1, Version::V2] {
        let (c, s) = pair(cfg(v), cfg(v));
        tokio::spawn(echo_server(s));
        echo_check(&c, 1, 246489).await;
    }
}

#[tokio::test]
async fn echo_many_streams_v1_and_v2() {
    for v in [Version::V1, Version::V2] {
        let (c, s) = pair(cfg(v), cfg(v));
        tokio::spawn(echo_server(s));
        let c = std::sync::Arc::new(c);
        let mut tasks = Vec::new();
        for i in 0..32u64 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                echo_check(&c, i, 1000 + (i as usize) * 7919).await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(c.num_streams(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_over_tcp_with_checksums() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (t, _) = l.accept().await.unwrap();
        let s = Session::server(t, cfg(Version::V2)).unwrap();
        echo_server(s).await;
    });
    let t = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = t.local_addr().ok();
    let c = Session::client(t, cfg(Version::V2))
        .unwrap()
        .with_addrs(local, Some(addr));
    assert_eq!(c.peer_addr(), Some(addr));
    let c = std::sync::Arc::new(c);
    let mut tasks = Vec::new();
    // An echo is a cycle (reading a stream waits for writing it back); it only works
    // while the data in flight fits the peer's receive buffer, in Go as here: 64
    // streams that each push 256 KiB before the first window update would fill 4 MiB.
    for i in 0..64u64 {
        let c = c.clone();
        let len = if i < 8 { 1_000_000 } else { 30_000 };
        tasks.push(tokio::spawn(async move { echo_check(&c, i, len).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    c.close().await.unwrap();
    srv.await.unwrap();
}

#[tokio::test]
async fn stream_ids_and_syn_on_wire() {
    let (c, mut raw) = raw_server(cfg(Version::V2), 2);
    let a = c.open_stream().await.unwrap();
    let b = c.open_stream().await.unwrap();
    assert_eq!((a.id(), b.id()), (3, 5));
    let announce = |sid| Frame::Upd {
        stream_id: sid,
        consumed: 0,
        window: 65536,
    };
    assert_eq!(raw.recv_data().await, Some(Frame::Syn(3)));
    assert_eq!(raw.recv_data().await, Some(announce(3)));
    assert_eq!(raw.recv_data().await, Some(Frame::Syn(5)));
    assert_eq!(raw.recv_data().await, Some(announce(5)));

    let (s, mut raw) = raw_client(cfg(Version::V1), 1);
    raw.send(Frame::Nop(0)).await;
    let a = s.open_stream().await.unwrap();
    let b = s.open_stream().await.unwrap();
    assert_eq!((a.id(), b.id()), (2, 4));
    assert_eq!(raw.recv_data().await, Some(Frame::Syn(2)));
}

#[tokio::test]
async fn go_away_on_id_exhaustion() {
    let (c, s) = pair(cfg(Version::V1), cfg(Version::V1));
    c.set_next_id(u32::MAX - 4);
    let a = c.open_stream().await.unwrap();
    assert_eq!(a.id(), u32::MAX - 2);
    let b = c.open_stream().await.unwrap();
    assert_eq!(b.id(), u32::MAX);
    assert!(matches!(c.open_stream().await, Err(Error::GoAway)));
    assert!(matches!(c.open_stream().await, Err(Error::GoAway)));
    // Existing streams keep working.
    let mut x = s.accept_stream().await.unwrap();
    let mut a = a;
    a.write_all(b"hi").await.unwrap();
    let mut buf = [0u8; 2];
    x.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hi");

    s.set_next_id(u32::MAX - 3);
    assert_eq!(s.open_stream().await.unwrap().id(), u32::MAX - 1);
    assert!(matches!(s.open_stream().await, Err(Error::GoAway)));
}

#[tokio::test]
async fn fin_gives_eof_after_data() {
    let (c, s) = pair(cfg(Version::V2), cfg(Version::V2));
    let mut a = c.open_stream().await.unwrap();
    a.write_all(b"hello world").await.unwrap();
    a.shutdown().await.unwrap();
    assert!(a.write_all(b"x").await.is_err());
    let mut b = s.accept_stream().await.unwrap();
    // Give the FIN time to arrive before reading: data must still come first.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hello world");
    // The other direction is still open.
    b.write_all(b"back").await.unwrap();
    drop(b);
    let mut got = Vec::new();
    a.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"back");
}

#[tokio::test]
async fn drop_sends_fin_and_stream_is_forgotten() {
    let (c, mut raw) = raw_server(cfg(Version::V1), 1);
    let mut a = c.open_stream().await.unwrap();
    a.write_all(b"abc").await.unwrap();
    assert_eq!(c.num_streams(), 1);
    drop(a);
    assert_eq!(raw.recv_data().await, Some(Frame::Syn(3)));
    assert_eq!(
        raw.recv_data().await,
        Some(Frame::Psh(3, bytes::Bytes::from_static(b"abc")))
    );
    assert_eq!(raw.recv_data().await, Some(Frame::Fin(3)));
    assert_eq!(c.num_streams(), 0);
}

#[tokio::test(start_paused = true)]
async fn keepalive_sends_nop_and_times_out() {
    let (c, mut raw) = raw_server(cfg(Version::V1), 1);
    let t0 = tokio::time::Instant::now();
    assert_eq!(raw.recv().await, Some(Frame::Nop(0)));
    assert_eq!(t0.elapsed(), Duration::from_secs(10));
    assert_eq!(raw.recv().await, Some(Frame::Nop(0)));
    assert_eq!(t0.elapsed(), Duration::from_secs(20));
    // The peer never sent anything: closed at the 30 s check.
    let err = c.accept_stream().await.unwrap_err();
    assert!(matches!(err, Error::KeepAliveTimeout), "{err:?}");
    assert_eq!(t0.elapsed(), Duration::from_secs(30));
    assert!(c.is_closed());
}

#[tokio::test(start_paused = true)]
async fn keepalive_survives_while_peer_talks() {
    let (c, mut raw) = raw_server(cfg(Version::V1), 1);
    let reader = tokio::spawn(async move {
        for _ in 0..9 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            raw.send(Frame::Nop(0)).await;
        }
        raw
    });
    let _raw = reader.await.unwrap();
    assert!(!c.is_closed());
}

#[tokio::test]
async fn unknown_command_tears_down_and_wakes_streams() {
    let (s, mut raw) = raw_client(cfg(Version::V1), 1);
    raw.send(Frame::Syn(3)).await;
    let mut st = s.accept_stream().await.unwrap();
    let reader = tokio::spawn(async move {
        let mut b = [0u8; 10];
        st.read(&mut b).await
    });
    tokio::task::yield_now().await;
    raw.send_raw(&[1, 9, 0, 0, 3, 0, 0, 0]).await;
    let err = reader.await.unwrap().unwrap_err();
    let inner = err.get_ref().unwrap().downcast_ref::<Error>().unwrap();
    assert!(matches!(
        inner,
        Error::Protocol(crate::FrameError::UnknownCommand(9))
    ));
    assert!(matches!(s.accept_stream().await, Err(Error::Protocol(_))));
    assert!(s.is_closed());
    // The transport was dropped.
    assert_eq!(raw.recv().await, None);
}

#[tokio::test]
async fn wrong_version_is_protocol_error() {
    let (s, mut raw) = raw_client(cfg(Version::V1), 2);
    raw.send(Frame::Syn(3)).await;
    let err = s.accept_stream().await.unwrap_err();
    assert!(matches!(
        err,
        Error::Protocol(crate::FrameError::VersionMismatch {
            got: 2,
            expected: 1
        })
    ));
}

#[tokio::test]
async fn psh_for_unknown_stream_is_discarded() {
    let (s, mut raw) = raw_client(cfg(Version::V1), 1);
    raw.send(Frame::Psh(99, vec![7u8; 1000].into())).await;
    raw.send(Frame::Syn(3)).await;
    raw.send(Frame::Psh(3, bytes::Bytes::from_static(b"ok")))
        .await;
    raw.send(Frame::Fin(3)).await;
    let mut st = s.accept_stream().await.unwrap();
    let mut got = Vec::new();
    st.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ok");
    // No tokens were taken for the discarded payload.
    assert_eq!(s.shared().lock().bucket, 4_194_304);
}

#[tokio::test]
async fn receive_buffer_bounds_what_a_peer_can_make_us_hold() {
    let mut c = cfg(Version::V1);
    c.max_receive_buffer = 100_000;
    c.max_stream_buffer = 65536;
    let (s, mut raw) = raw_client(c, 1);
    raw.send(Frame::Syn(3)).await;
    let st = s.accept_stream().await.unwrap();
    // The peer floods a stream nobody reads; its writes must block once we stop reading.
    let flood = tokio::spawn(async move {
        let chunk = bytes::Bytes::from(vec![1u8; 30_000]);
        for _ in 0..200 {
            raw.send(Frame::Psh(3, chunk.clone())).await;
        }
        raw
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!flood.is_finished());
    {
        let g = s.shared().lock();
        let held = g.streams.get(&3).unwrap().rx.len;
        // At most one frame beyond the bucket (Go reads a whole frame once bucket > 0).
        assert!(held <= 100_000 + 30_000, "held {held}");
        assert!(held >= 100_000);
    }
    // Reading resumes the flow.
    let mut st = st;
    let mut total = 0usize;
    let mut buf = vec![0u8; 65536];
    while total < 200 * 30_000 {
        total += st.read(&mut buf).await.unwrap();
    }
    flood.await.unwrap();
}

#[tokio::test]
async fn accept_backlog_is_bounded() {
    let mut c = cfg(Version::V1);
    c.accept_backlog = 16;
    let (s, mut raw) = raw_client(c, 1);
    let syns = tokio::spawn(async move {
        for i in 0..5000u32 {
            raw.send(Frame::Syn(3 + 2 * i)).await;
        }
        raw
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    {
        let g = s.shared().lock();
        assert_eq!(g.accept.queue.len(), 16);
        assert_eq!(g.streams.len(), 16);
    }
    for _ in 0..5000 {
        let st = s.accept_stream().await.unwrap();
        drop(st);
    }
    syns.await.unwrap();
}

#[tokio::test]
async fn v2_upd_exactly_as_go() {
    let mut c = cfg(Version::V2);
    c.stream_window_autotune = false;
    let (s, mut raw) = raw_client(c, 2);
    raw.send(Frame::Syn(3)).await;
    raw.send(Frame::Psh(3, vec![5u8; 40_000].into())).await;
    let mut st = s.accept_stream().await.unwrap();
    // Our window is announced as soon as the SYN arrives.
    assert_eq!(
        raw.recv_data().await,
        Some(Frame::Upd {
            stream_id: 3,
            consumed: 0,
            window: 65536
        })
    );
    let mut buf = vec![0u8; 100];
    st.read_exact(&mut buf).await.unwrap();
    // The first read always announces the window (Go).
    assert_eq!(
        raw.recv_data().await,
        Some(Frame::Upd {
            stream_id: 3,
            consumed: 100,
            window: 65536
        })
    );
    // Next UPD once incr >= 32768 (MaxStreamBuffer/2).
    let mut buf = vec![0u8; 32_000];
    st.read_exact(&mut buf).await.unwrap();
    let mut buf = vec![0u8; 768];
    st.read_exact(&mut buf).await.unwrap();
    assert_eq!(
        raw.recv_data().await,
        Some(Frame::Upd {
            stream_id: 3,
            consumed: 32_868,
            window: 65536
        })
    );
}

#[tokio::test]
async fn v2_sender_respects_peer_window_and_detects_consumed() {
    let (c, mut raw) = raw_server(cfg(Version::V2), 2);
    let mut st = c.open_stream().await.unwrap();
    let data = pattern(1, 400_000);
    let d2 = data.clone();
    let w = tokio::spawn(async move {
        let r = st.write_all(&d2).await;
        (st, r)
    });
    assert_eq!(raw.recv_data().await, Some(Frame::Syn(3)));
    assert!(matches!(raw.recv_data().await, Some(Frame::Upd { .. })));
    let mut got = Vec::new();
    while got.len() < 262_144 {
        match raw.recv_data().await.unwrap() {
            Frame::Psh(3, d) => got.extend_from_slice(&d),
            f => panic!("{f:?}"),
        }
    }
    // Exactly the initial 256 KiB window, nothing more until a UPD.
    assert_eq!(got.len(), 262_144);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(raw.buf.is_empty());
    raw.send(Frame::Upd {
        stream_id: 3,
        consumed: 262_144,
        window: 200_000,
    })
    .await;
    while got.len() < 400_000 {
        match raw.recv_data().await.unwrap() {
            Frame::Psh(3, d) => got.extend_from_slice(&d),
            f => panic!("{f:?}"),
        }
    }
    assert_eq!(got, data);
    let (mut st, r) = w.await.unwrap();
    r.unwrap();
    // A peer that claims to have consumed more than we sent.
    raw.send(Frame::Upd {
        stream_id: 3,
        consumed: 500_000,
        window: 200_000,
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = st.write_all(b"x").await.unwrap_err();
    let inner = err.get_ref().unwrap().downcast_ref::<Error>().unwrap();
    assert!(matches!(inner, Error::Consumed));
}

#[tokio::test]
async fn slow_reader_does_not_stall_others_in_v2() {
    // Until a stream's reader has read once, a Go sender assumes a 256 KiB window
    // (E.5); we announce ours right after SYN, but the bucket must still cover that
    // initial guess for every unread stream.
    let mut c = cfg(Version::V2);
    c.max_receive_buffer = 512 * 1024;
    c.max_stream_buffer = 64 * 1024;
    let (cl, sv) = pair(c.clone(), c);
    let mut idle = cl.open_stream().await.unwrap();
    let mut busy = cl.open_stream().await.unwrap();
    let _idle_peer = sv.accept_stream().await.unwrap(); // never read
    let mut busy_peer = sv.accept_stream().await.unwrap();
    // Fill the unread stream: the writer blocks at the window, not the session.
    let filler = tokio::spawn(async move {
        let junk = vec![0u8; 1 << 20];
        let _ = idle.write_all(&junk).await;
    });
    let data = pattern(3, 10 << 20);
    let d2 = data.clone();
    let w = tokio::spawn(async move {
        busy.write_all(&d2).await.unwrap();
        busy.shutdown().await.unwrap();
        busy
    });
    let mut got = Vec::new();
    busy_peer.read_to_end(&mut got).await.unwrap();
    assert_eq!(Sha256::digest(&got), Sha256::digest(&data));
    w.await.unwrap();
    assert!(!filler.is_finished());
    filler.abort();
}

#[tokio::test]
async fn shaper_interleaves_streams_fairly() {
    for v in [Version::V1, Version::V2] {
        let mut c = cfg(v);
        c.max_frame_size = 1000;
        let ver = v.byte().unwrap();
        let (cl, mut raw) = raw_server(c, ver);
        let a = cl.open_stream().await.unwrap();
        let b = cl.open_stream().await.unwrap();
        // Both writes are queued before the driver runs (current-thread runtime); the
        // direct path would write `a` at once.
        assert_eq!(a.write_queued(&[1u8; 50_000]), 50_000);
        assert_eq!(b.write_queued(&[2u8; 50_000]), 50_000);
        let mut order = Vec::new();
        while order.len() < 100 {
            if let Some(Frame::Psh(sid, _)) = raw.recv_data().await {
                order.push(sid);
            }
        }
        // Alternating: after any prefix the counts differ by at most one.
        let mut diff = 0i32;
        for sid in &order {
            diff += if *sid == 3 { 1 } else { -1 };
            assert!(diff.abs() <= 1, "{v:?} {order:?}");
        }
    }
}

#[tokio::test]
async fn cancelled_writes_report_exactly_what_was_committed() {
    let mut c = cfg(Version::V2);
    c.max_stream_send_buffer = 10_000;
    let (cl, sv) = pair(c.clone(), c);
    let mut a = cl.open_stream().await.unwrap();
    let mut b = sv.accept_stream().await.unwrap();
    let data = pattern(9, 2_000_000);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 7000];
        loop {
            let n = b.read(&mut buf).await.unwrap();
            if n == 0 {
                return got;
            }
            got.extend_from_slice(&buf[..n]);
            // A slow reader, so writers often time out.
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    });
    let mut off = 0;
    let mut timeouts = 0;
    while off < data.len() {
        let end = (off + 100_000).min(data.len());
        // A very short timeout: the write is often cancelled while pending.
        match tokio::time::timeout(Duration::from_micros(50), a.write(&data[off..end])).await {
            Ok(r) => off += r.unwrap(),
            Err(_) => timeouts += 1,
        }
    }
    a.shutdown().await.unwrap();
    let got = reader.await.unwrap();
    assert!(timeouts > 0);
    assert_eq!(got.len(), data.len());
    assert!(got == data);
}

#[tokio::test]
async fn auto_version_detection() {
    for v in [Version::V1, Version::V2] {
        let (c, s) = pair(cfg(v), cfg(Version::Auto));
        assert_eq!(s.version(), None);
        tokio::spawn(echo_server(s));
        echo_check(&c, 5, 100_000).await;
    }
    // A server must see the version before it can open streams.
    let (s, mut raw) = raw_client(cfg(Version::Auto), 2);
    let opener = tokio::spawn(async move {
        let st = s.open_stream().await.unwrap();
        (s, st.id())
    });
    tokio::task::yield_now().await;
    raw.send(Frame::Nop(0)).await;
    let (s, id) = opener.await.unwrap();
    assert_eq!((s.version(), id), (Some(Version::V2), 2));
    // Not smux at all.
    let (s, mut raw) = raw_client(cfg(Version::Auto), 1);
    raw.send_raw(b"GET / HTTP/1.1\r\n\r\n").await;
    let err = s.accept_stream().await.unwrap_err();
    assert!(matches!(err, Error::NotSmuxPeer(_)), "{err:?}");
    assert!(err.to_string().contains("not an smux peer"));
    assert!(matches!(
        Session::new(duplex(10).0, cfg(Version::Auto), crate::Role::Client),
        Err(crate::ConfigError::AutoVersionOnClient)
    ));
}

#[tokio::test]
async fn close_wakes_streams_and_ends_transport() {
    let (c, mut raw) = raw_server(cfg(Version::V1), 1);
    let mut a = c.open_stream().await.unwrap();
    a.write_all(b"committed").await.unwrap();
    let reader = tokio::spawn(async move {
        let mut b = [0u8; 4];
        a.read(&mut b).await
    });
    tokio::task::yield_now().await;
    c.close().await.unwrap();
    assert!(c.is_closed());
    assert!(reader.await.unwrap().is_err());
    assert!(matches!(c.open_stream().await, Err(Error::SessionClosed)));
    // Committed data was flushed before the transport closed.
    assert_eq!(raw.recv_data().await, Some(Frame::Syn(3)));
    assert_eq!(
        raw.recv_data().await,
        Some(Frame::Psh(3, bytes::Bytes::from_static(b"committed")))
    );
    assert_eq!(raw.recv_data().await, None);
    c.close().await.unwrap();
}

#[tokio::test]
async fn peer_eof_fails_session() {
    let (s, raw) = raw_client(cfg(Version::V1), 1);
    drop(raw);
    assert!(matches!(
        s.accept_stream().await,
        Err(Error::ConnectionClosed)
    ));
}

#[tokio::test]
async fn dropping_everything_closes_the_transport() {
    let (c, mut raw) = raw_server(cfg(Version::V1), 1);
    let a = c.open_stream().await.unwrap();
    drop(c);
    assert_eq!(raw.recv_data().await, Some(Frame::Syn(3)));
    drop(a);
    assert_eq!(raw.recv_data().await, Some(Frame::Fin(3)));
    assert_eq!(raw.recv_data().await, None);
}

#[tokio::test]
async fn window_autotune_grows_only_when_window_limits() {
    let mut c = cfg(Version::V2);
    c.max_stream_buffer = 1 << 20;
    let (cl, sv) = pair(c.clone(), c);
    let mut a = cl.open_stream().await.unwrap();
    let mut b = sv.accept_stream().await.unwrap();
    assert_eq!(b.advertised_window(), 65536);
    let w = tokio::spawn(async move {
        a.write_all(&vec![0u8; 8 << 20]).await.unwrap();
        a.shutdown().await.unwrap();
        a
    });
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), 8 << 20);
    // The window grows past max_stream_buffer, up to the receive buffer.
    let win = b.advertised_window();
    assert!(win > 65536 && win <= 4 << 20, "{win}");
    w.await.unwrap();

    // An idle reader never makes the window grow.
    let mut c = cfg(Version::V2);
    c.max_stream_buffer = 1 << 20;
    let (cl, sv) = pair(c.clone(), c);
    let mut a = cl.open_stream().await.unwrap();
    let b = sv.accept_stream().await.unwrap();
    let _w = tokio::spawn(async move { a.write_all(&vec![0u8; 4 << 20]).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(b.advertised_window(), 65536);
}

#[tokio::test]
async fn fair_share_window_never_stalls_a_stream() {
    // 8 live streams share a 64 KiB receive buffer: each gets a 4 KiB window, well
    // below max_stream_buffer/2, and UPD must still flow at half that window.
    let mut c = cfg(Version::V2);
    c.max_receive_buffer = 64 * 1024;
    c.max_stream_buffer = 64 * 1024;
    let (cl, sv) = pair(c.clone(), c);
    let mut keep = Vec::new();
    for _ in 0..7 {
        keep.push(cl.open_stream().await.unwrap());
        keep.push(sv.accept_stream().await.unwrap());
    }
    let mut a = cl.open_stream().await.unwrap();
    let mut b = sv.accept_stream().await.unwrap();
    let data = pattern(11, 1 << 20);
    let d2 = data.clone();
    let w = tokio::spawn(async move {
        a.write_all(&d2).await.unwrap();
        a.shutdown().await.unwrap();
        a
    });
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert!(got == data);
    assert!(b.advertised_window() <= 64 * 1024);
    w.await.unwrap();
}
