//! Buffers that engines going idle hand to the next engine on the same thread.
//!
//! An idle engine keeps no buffers (see `Kcp::arm`), so 10,000 quiet sessions cost no payload memory. A
//! session that wakes for one message then allocated and zero-filled an MTU-sized scratch datagram and a
//! segment buffer or two, and freed them again a few hundred microseconds later: on a server with
//! thousands of such sessions that was about 4 % of its CPU samples (`malloc`, `memset`). Instead, an
//! engine going idle leaves its buffers here, and an engine starting to work takes them back, on the
//! same thread: a few buffers per thread, bounded in count and size, whatever the number of engines.
//!
//! A recycled scratch datagram holds bytes another engine sent; the engine only ever emits what it
//! wrote (`Writer::emit`), and [`take_scratch`] zeroes the front the caller reserved for its own
//! headers, so nothing of one conversation reaches another's datagrams.

use std::cell::RefCell;

/// Scratch datagrams a thread keeps.
const SCRATCH_MAX: usize = 8;
/// Segment buffers a thread keeps.
const SEGMENTS_MAX: usize = 64;
/// Larger buffers (a jumbo MTU, an oversized segment) are freed rather than kept.
const KEEP_MAX_BYTES: usize = 9216;

#[derive(Default)]
struct Spare {
    scratch: Vec<Vec<u8>>,
    segments: Vec<Vec<u8>>,
}

thread_local! {
    static SPARE: RefCell<Spare> = RefCell::new(Spare::default());
}

/// A spare scratch datagram of at least `len` bytes with its first `reserved` bytes zeroed, if this
/// thread has one.
pub(super) fn take_scratch(len: usize, reserved: usize) -> Option<Vec<u8>> {
    let mut b = SPARE
        .try_with(|s| s.borrow_mut().scratch.pop())
        .ok()
        .flatten()?;
    if b.len() < len {
        b.resize(len, 0);
    }
    let front = reserved.min(b.len());
    b[..front].fill(0);
    Some(b)
}

/// Gives a scratch datagram back (freed if the thread keeps enough, or it is large).
pub(super) fn put_scratch(b: Vec<u8>) {
    if b.capacity() == 0 || b.capacity() > KEEP_MAX_BYTES {
        return;
    }
    let _ = SPARE.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.scratch.len() < SCRATCH_MAX {
            s.scratch.push(b);
        }
    });
}

/// A spare (empty) segment buffer, if this thread has one.
pub(super) fn take_segment() -> Option<Vec<u8>> {
    SPARE
        .try_with(|s| s.borrow_mut().segments.pop())
        .ok()
        .flatten()
}

/// Gives an engine's segment buffers back (up to the thread's bound; the rest are freed).
pub(super) fn put_segments(pool: Vec<Vec<u8>>) {
    if pool.is_empty() {
        return;
    }
    let _ = SPARE.try_with(|s| {
        let mut s = s.borrow_mut();
        for mut b in pool {
            if s.segments.len() >= SEGMENTS_MAX {
                break;
            }
            if b.capacity() > 0 && b.capacity() <= KEEP_MAX_BYTES {
                b.clear();
                s.segments.push(b);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_scratch_comes_back_with_its_reserved_front_zeroed_and_bounds_hold() {
        std::thread::spawn(|| {
            put_scratch(vec![0xAB; 1400]);
            let b = take_scratch(1400, 26).unwrap();
            assert_eq!(b.len(), 1400);
            assert!(b[..26].iter().all(|&x| x == 0));
            assert!(b[26..].iter().all(|&x| x == 0xAB));
            assert!(take_scratch(1400, 26).is_none());
            // A shorter one grows to the length asked for.
            put_scratch(vec![1; 100]);
            assert_eq!(take_scratch(1400, 0).unwrap().len(), 1400);
            // Bounded: large ones and those beyond the count are freed.
            put_scratch(vec![0; KEEP_MAX_BYTES + 1]);
            assert!(take_scratch(10, 0).is_none());
            for _ in 0..SCRATCH_MAX + 5 {
                put_scratch(vec![0; 1400]);
            }
            let mut n = 0;
            while take_scratch(1400, 0).is_some() {
                n += 1;
            }
            assert_eq!(n, SCRATCH_MAX);
            put_segments(vec![vec![7; 100]; SEGMENTS_MAX + 3]);
            let mut n = 0;
            while let Some(b) = take_segment() {
                assert!(b.is_empty() && b.capacity() >= 100);
                n += 1;
            }
            assert_eq!(n, SEGMENTS_MAX);
        })
        .join()
        .unwrap();
    }
}
