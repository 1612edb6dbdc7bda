//! smux frame reader: arbitrary bytes, fed in arbitrary pieces, must never panic the
//! codec, and a whole server session (version auto-detection, stream creation, data,
//! UPD, FIN) fed the same bytes must end cleanly with every stream readable.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rkcp_smux::frame::decode_frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

thread_local! {
    // One runtime for every input (building one per input cost more than the session itself). Each
    // input's tasks are all finished or aborted before `block_on` returns, so no state crosses inputs.
    // Only the time driver: the session's timers need it, the in-memory duplex needs no I/O driver.
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
}

fuzz_target!(|data: &[u8]| {
    let (cut, input) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c) + 1, rest),
        None => return,
    };
    for ver in [1u8, 2] {
        let mut buf = BytesMut::new();
        for piece in input.chunks(cut) {
            buf.extend_from_slice(piece);
            loop {
                match decode_frame(&mut buf, ver) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => {
                        buf.clear();
                        break;
                    }
                }
            }
        }
    }

    RT.with(|rt| {
        rt.block_on(async {
            let (a, mut b) = tokio::io::duplex(1 << 16);
            let mut cfg = rkcp_smux::Config::default();
            cfg.version = rkcp_smux::Version::Auto;
            cfg.max_receive_buffer = 1 << 16;
            cfg.max_stream_buffer = 1 << 14;
            cfg.accept_backlog = 8;
            let sess = rkcp_smux::Session::server(a, cfg).unwrap();
            let input = input.to_vec();
            let writer = tokio::spawn(async move {
                for piece in input.chunks(cut) {
                    if b.write_all(piece).await.is_err() {
                        break;
                    }
                }
                let _ = b.shutdown().await;
                // Drain what the session writes back, until it closes.
                let mut sink = [0u8; 4096];
                while let Ok(n) = b.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            });
            let mut readers = JoinSet::new();
            while let Ok(mut st) = sess.accept_stream().await {
                readers.spawn(async move {
                    let mut buf = [0u8; 1000];
                    while let Ok(n) = st.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
            sess.close().await.ok();
            writer.await.unwrap();
            // The per-input runtime used to drop readers still pending here; abort them the same way.
            readers.shutdown().await;
        })
    });
});
