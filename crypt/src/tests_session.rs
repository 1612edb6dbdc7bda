//! Tests of the per-session AEAD layout (`aead_session.rs`).

use proptest::prelude::*;

use super::*;
use crate::REPLAY_WINDOW;

const T: u64 = 1_700_000_000_000;

fn keys(kind: CipherKind) -> PacketCrypt {
    PacketCrypt::new(kind, &[9u8; 32])
}

fn pair(kind: CipherKind, c: SessionId, s: SessionId) -> (SessionCrypt, SessionCrypt) {
    let k = keys(kind);
    (k.client_session(c), k.server_session(c, s))
}

fn sealed(sc: &mut SessionCrypt, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; sc.header_len() + payload.len() + sc.trailer_len()];
    b[sc.header_len()..][..payload.len()].copy_from_slice(payload);
    sc.seal(&mut b);
    b
}

fn open_ok(sc: &mut SessionCrypt, dgram: &[u8]) -> Result<(Vec<u8>, Opened), CryptError> {
    let mut b = dgram.to_vec();
    let o = sc.open(&mut b)?;
    Ok((b[o.payload.clone()].to_vec(), o))
}

fn kind_strategy() -> impl Strategy<Value = CipherKind> {
    prop_oneof![
        Just(CipherKind::Aes256Gcm),
        Just(CipherKind::ChaCha20Poly1305)
    ]
}

fn id_strategy() -> impl Strategy<Value = SessionId> {
    (any::<u64>(), any::<[u8; 8]>()).prop_map(|(t, r)| SessionId::new(t, r))
}

/// HKDF inputs and outputs checked against an independent computation (Python's hmac module,
/// RFC 5869 by hand), so the construction documented on `SessionCrypt` is the one implemented.
#[test]
fn derived_keys_match_the_documented_construction() {
    let m = MasterKey::new(CipherKind::Aes256Gcm, &[9u8; 32]);
    let c = SessionId::new(1_700_000_000_123, [1, 2, 3, 4, 5, 6, 7, 8]);
    let s = SessionId::new(1_700_000_000_456, [0xaa; 8]);
    let hex = |k: [u8; 32]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(
        hex(m.c2s_key(&c)),
        "497cfb7b44b31a1112e57cd2f90e3fbb67883c85ca66e6676616b812e23f7127"
    );
    assert_eq!(
        hex(m.s2c_key(&c, &s)),
        "7cd52e378e55136a151be21ec043be8617bb7dbc6115fcfe3919adaa018f7877"
    );
    // Another cipher, another master.
    let m2 = MasterKey::new(CipherKind::ChaCha20Poly1305, &[9u8; 32]);
    assert_ne!(m.c2s_key(&c), m2.c2s_key(&c));
}

#[test]
fn halves_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SessionCrypt>();
    check::<SessionSealer>();
    check::<SessionOpener>();
    check::<crate::FreshnessRecord>();
}

#[test]
fn layout_overhead_and_peek() {
    let c = SessionId::new(T, [1; 8]);
    let s = SessionId::new(T + 1, [2; 8]);
    let (mut cl, mut sv) = pair(CipherKind::Aes256Gcm, c, s);
    assert_eq!(
        (cl.header_len(), cl.trailer_len(), cl.overhead()),
        (24, 16, 40)
    );
    let d0 = sealed(&mut cl, b"abc");
    let d1 = sealed(&mut cl, b"abc");
    assert_eq!(d0.len(), 43);
    assert_eq!(peek_session_id(&d0), Some(c));
    assert_eq!(&d0[16..24], &0u64.to_be_bytes());
    assert_eq!(&d1[16..24], &1u64.to_be_bytes());
    assert_ne!(d0[24..], d1[24..], "another nonce, another ciphertext");
    assert_eq!(peek_session_id(&d0[..39]), None);
    open_ok(&mut sv, &d0).unwrap();
    let r = sealed(&mut sv, b"xyz");
    assert_eq!(peek_session_id(&r), Some(s), "server datagrams carry S");
    assert_eq!(cl.peer_id(), None);
    open_ok(&mut cl, &r).unwrap();
    assert_eq!(cl.peer_id(), Some(s));
    assert_eq!(sv.peer_id(), Some(c));
    assert_eq!((cl.local_id(), sv.local_id()), (Some(c), Some(s)));
    assert_eq!((cl.role(), sv.role()), (Role::Client, Role::Server));
}

#[test]
fn replayed_refused_reordered_accepted_too_old_refused() {
    let (mut cl, mut sv) = pair(
        CipherKind::Aes256Gcm,
        SessionId::new(T, [1; 8]),
        SessionId::new(T, [2; 8]),
    );
    let d: Vec<Vec<u8>> = (0..REPLAY_WINDOW + 10)
        .map(|i| sealed(&mut cl, &i.to_le_bytes()))
        .collect();
    // Reordered within the window: all accepted, each once.
    for i in [3usize, 0, 2, 1] {
        let (p, o) = open_ok(&mut sv, &d[i]).unwrap();
        assert_eq!(p, (i as u64).to_le_bytes());
        assert_eq!(o.counter, Some(i as u64));
        assert_eq!(o.newest, i == 3, "{i}");
        assert_eq!(
            open_ok(&mut sv, &d[i]),
            Err(CryptError::Replayed { counter: i as u64 })
        );
    }
    let last = d.len() - 1;
    assert!(open_ok(&mut sv, &d[last]).unwrap().1.newest);
    // 4..9 are now REPLAY_WINDOW or more behind the newest: too old.
    assert_eq!(
        open_ok(&mut sv, &d[4]),
        Err(CryptError::Replayed { counter: 4 })
    );
    let inside = last - (REPLAY_WINDOW as usize - 1);
    assert!(!open_ok(&mut sv, &d[inside]).unwrap().1.newest);
    assert!(open_ok(&mut sv, &d[inside - 1]).is_err());
}

#[test]
fn failed_authentication_does_not_advance_the_window() {
    let (mut cl, mut sv) = pair(
        CipherKind::ChaCha20Poly1305,
        SessionId::new(T, [1; 8]),
        SessionId::new(T, [2; 8]),
    );
    let d0 = sealed(&mut cl, b"first");
    // A forgery far ahead: refused, and the window must not jump to it.
    let mut forged = d0.clone();
    forged[16..24].copy_from_slice(&1_000_000u64.to_be_bytes());
    assert_eq!(
        open_ok(&mut sv, &forged),
        Err(CryptError::AuthenticationFailed)
    );
    assert_eq!(sv.opener.newest_counter(), None);
    // A forgery of counter 0: refused, and counter 0 not burnt.
    let mut bad_tag = d0.clone();
    *bad_tag.last_mut().unwrap() ^= 1;
    assert_eq!(
        open_ok(&mut sv, &bad_tag),
        Err(CryptError::AuthenticationFailed)
    );
    assert_eq!(open_ok(&mut sv, &d0).unwrap().0, b"first");
    // Once the genuine one is in, its forged copy is refused as a replay, before any crypto.
    assert_eq!(
        open_ok(&mut sv, &bad_tag),
        Err(CryptError::Replayed { counter: 0 })
    );
}

#[test]
fn client_binds_to_the_first_authenticated_server_id() {
    let c = SessionId::new(T, [1; 8]);
    let k = keys(CipherKind::Aes256Gcm);
    let mut cl = k.client_session(c);
    let mut s1 = k.server_session(c, SessionId::new(T, [2; 8]));
    let mut s2 = k.server_session(c, SessionId::new(T, [3; 8]));
    // A forged server id is never bound.
    let mut junk = sealed(&mut s1, b"x");
    junk[8] ^= 1;
    assert!(open_ok(&mut cl, &junk).is_err());
    assert_eq!(cl.peer_id(), None);
    open_ok(&mut cl, &sealed(&mut s1, b"one")).unwrap();
    // A second server session for the same C (a replay of C elsewhere) is not heard.
    assert_eq!(
        open_ok(&mut cl, &sealed(&mut s2, b"two")),
        Err(CryptError::AuthenticationFailed)
    );
    assert_eq!(cl.peer_id(), s1.local_id());
}

#[test]
fn reflected_and_cross_session_datagrams_fail() {
    let k = keys(CipherKind::Aes256Gcm);
    let c = SessionId::new(T, [1; 8]);
    let mut cl = k.client_session(c);
    let mut sv = k.server_session(c, SessionId::new(T, [2; 8]));
    let mut other = k.server_session(SessionId::new(T, [4; 8]), SessionId::new(T, [5; 8]));
    let d = sealed(&mut cl, b"hi");
    assert_eq!(
        open_ok(&mut other, &d),
        Err(CryptError::AuthenticationFailed),
        "another session's opener"
    );
    // The client's own datagram reflected back to it (as if from a server with S = C).
    assert!(open_ok(&mut cl, &d).is_err(), "reflection");
    let r = sealed(&mut sv, b"back");
    assert!(open_ok(&mut sv, &r).is_err(), "server reflection");
    // Another passphrase or another cipher: nothing opens.
    let mut foreign = PacketCrypt::new(CipherKind::Aes256Gcm, &[8u8; 32])
        .server_session(c, SessionId::new(T, [2; 8]));
    assert!(open_ok(&mut foreign, &d).is_err());
    let mut chacha =
        keys(CipherKind::ChaCha20Poly1305).server_session(c, SessionId::new(T, [2; 8]));
    assert!(open_ok(&mut chacha, &d).is_err());
    // `PacketCrypt` itself opens no AEAD datagram.
    assert_eq!(k.open(&mut d.clone()), Err(CryptError::SessionRequired));
}

#[test]
fn seal_errors() {
    let (mut cl, _) = pair(
        CipherKind::Aes256Gcm,
        SessionId::new(T, [1; 8]),
        SessionId::new(T, [2; 8]),
    );
    let mut small = [0u8; 39];
    assert_eq!(
        cl.try_seal(&mut small),
        Err(CryptError::SealBufferTooSmall { len: 39, min: 40 })
    );
    assert_eq!(small, [0u8; 39]);
    if let Sealer::Aead { next, .. } = &mut cl.sealer.0 {
        *next = u64::MAX - 1;
    }
    let mut b = [0u8; 40];
    assert_eq!(cl.try_seal(&mut b), Ok(()));
    assert_eq!(cl.try_seal(&mut b), Err(CryptError::CounterExhausted));
    assert_eq!(cl.sealer.next_counter(), Some(u64::MAX));
}

#[test]
fn kcp_go_kinds_delegate_to_packet_crypt() {
    let kinds = [CipherKind::Aes, CipherKind::None, CipherKind::Salsa20];
    for kind in kinds.into_iter().filter(CipherKind::is_available) {
        let k = keys(kind);
        let c = SessionId::new(T, [1; 8]);
        let mut cl = k.client_session(c);
        let mut sv = k.server_session(c, SessionId::new(T, [2; 8]));
        assert_eq!(
            (cl.header_len(), cl.trailer_len()),
            (k.header_len(), k.trailer_len())
        );
        assert_eq!(cl.local_id(), None);
        let d = sealed(&mut cl, b"kcp");
        // Byte-compatible with PacketCrypt both ways, replays included (kcp-go has no window).
        for _ in 0..2 {
            let (p, o) = open_ok(&mut sv, &d).unwrap();
            assert_eq!(
                (p.as_slice(), o.counter, o.newest),
                (&b"kcp"[..], None, true)
            );
        }
        let r = k.open(&mut d.clone()).unwrap();
        assert_eq!(r, k.header_len()..d.len());
        let mut from_pc = vec![0u8; k.header_len() + 3];
        from_pc[k.header_len()..].copy_from_slice(b"old");
        k.seal(&mut from_pc);
        assert_eq!(open_ok(&mut cl, &from_pc).unwrap().0, b"old");
    }
}

#[test]
fn split_halves_work_apart() {
    let (cl, sv) = pair(
        CipherKind::Aes256Gcm,
        SessionId::new(T, [1; 8]),
        SessionId::new(T, [2; 8]),
    );
    let (mut tx, _) = cl.split();
    let (_, mut rx) = sv.split();
    assert_eq!(
        (
            tx.header_len(),
            tx.trailer_len(),
            rx.header_len(),
            rx.trailer_len()
        ),
        (24, 16, 24, 16)
    );
    let mut b = vec![0u8; 24 + 4 + 16];
    tx.seal(&mut b);
    assert_eq!(tx.next_counter(), Some(1));
    assert_eq!(rx.open(&mut b).unwrap().payload, 24..28);
    assert_eq!(rx.newest_counter(), Some(0));
}

proptest! {
    #[test]
    fn round_trip_both_roles(
        kind in kind_strategy(),
        c in id_strategy(),
        s in id_strategy(),
        msgs in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..1500)), 1..12),
    ) {
        let (mut cl, mut sv) = pair(kind, c, s);
        // The server speaks only after hearing the client (as a listener does).
        let first = sealed(&mut cl, b"syn");
        prop_assert_eq!(open_ok(&mut sv, &first).unwrap().0, b"syn".to_vec());
        let (mut up, mut down) = (1u64, 0u64);
        for (to_server, m) in msgs {
            let (tx, rx, n) = if to_server { (&mut cl, &mut sv, &mut up) } else { (&mut sv, &mut cl, &mut down) };
            let d = sealed(tx, &m);
            prop_assert_eq!(d.len(), m.len() + SESSION_OVERHEAD);
            let (p, o) = open_ok(rx, &d).unwrap();
            prop_assert_eq!(p, m);
            prop_assert_eq!(o.counter, Some(*n));
            prop_assert!(o.newest);
            *n += 1;
        }
    }

    /// Any changed byte (header, ciphertext, tag) or truncation fails, and leaves the window
    /// as it was: the genuine datagram still opens afterwards.
    #[test]
    fn tampering_any_byte_fails(
        kind in kind_strategy(),
        to_server in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        pos in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
        cut in 1usize..40,
    ) {
        let (mut cl, mut sv) = pair(kind, SessionId::new(T, [1; 8]), SessionId::new(T, [2; 8]));
        let hello = sealed(&mut cl, b"");
        open_ok(&mut sv, &hello).unwrap();
        let (tx, rx) = if to_server { (&mut cl, &mut sv) } else { (&mut sv, &mut cl) };
        let d = sealed(tx, &payload);
        let mut t = d.clone();
        t[pos.index(d.len())] ^= flip;
        prop_assert!(open_ok(rx, &t).is_err());
        prop_assert!(open_ok(rx, &d[..d.len() - cut]).is_err());
        let mut longer = d.clone();
        longer.push(0);
        prop_assert!(open_ok(rx, &longer).is_err());
        prop_assert_eq!(open_ok(rx, &d).unwrap().0, payload);
    }

    /// Distinct sessions never share a key: c2s keys differ for distinct C, s2c keys differ for
    /// distinct (C, S), and no c2s key equals an s2c key.
    #[test]
    fn distinct_sessions_never_share_a_key(
        kind in kind_strategy(),
        c1 in id_strategy(), c2 in id_strategy(), s1 in id_strategy(), s2 in id_strategy(),
    ) {
        let m = MasterKey::new(kind, &[9u8; 32]);
        prop_assert_eq!(m.c2s_key(&c1) == m.c2s_key(&c2), c1 == c2);
        prop_assert_eq!(m.s2c_key(&c1, &s1) == m.s2c_key(&c1, &s2), s1 == s2);
        prop_assert_eq!(m.s2c_key(&c1, &s1) == m.s2c_key(&c2, &s1), c1 == c2);
        prop_assert_ne!(m.c2s_key(&c1), m.s2c_key(&c1, &s1));
        prop_assert_ne!(m.c2s_key(&c1), m.s2c_key(&c2, &s2));
    }

    /// Within a session the counters, hence the nonces, of one direction never repeat.
    #[test]
    fn counters_never_repeat(n in 1usize..300) {
        let (mut cl, _) = pair(CipherKind::Aes256Gcm, SessionId::new(T, [1; 8]), SessionId::new(T, [2; 8]));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..n {
            let d = sealed(&mut cl, b"");
            prop_assert!(seen.insert(d[16..24].to_vec()));
        }
    }
}
