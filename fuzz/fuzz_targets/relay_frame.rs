//! Relay control-frame decoder (`docs/relay.md`): arbitrary bytes, parsed frame after frame, must never
//! panic; every frame decoded re-encodes to a frame that decodes again (to the same bytes, except an ERROR's
//! text, which is decoded lossily), and the async reader agrees with the synchronous parser on the first
//! frame.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use rkcp_examples::relay::{Frame, read_frame};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((f, n))) = Frame::parse(rest) {
        assert!((4..=rest.len()).contains(&n));
        let enc = f.encode();
        let (g, m) = Frame::parse(&enc)
            .expect("a re-encoded frame decodes")
            .expect("a re-encoded frame is whole");
        assert_eq!(m, enc.len());
        if !matches!(f, Frame::Error(_)) {
            assert_eq!(g, f);
            assert_eq!(&enc[..], &rest[..n]);
        }
        rest = &rest[n..];
    }

    // Reading from a slice never waits: one poll finishes.
    let mut slice = data;
    let mut fut = pin!(read_frame(&mut slice));
    let read = match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("read_frame pended on a slice"),
    };
    match (Frame::parse(data), read) {
        (Ok(Some((f, _))), Ok(g)) => assert_eq!(f, g),
        (Ok(Some(_)), Err(e)) => panic!("parse accepted what read_frame refused: {e}"),
        (Ok(None) | Err(_), Ok(g)) => panic!("read_frame accepted {g:?} that parse did not"),
        (Ok(None) | Err(_), Err(_)) => {}
    }
});
