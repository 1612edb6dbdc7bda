//! Unit tests: docs/wire-format.md#vectors, round trips and rejection of bad input.

use proptest::prelude::*;

use crate::block::xor_table;
use crate::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const DEFAULT_KEY: &[u8] = b"it's a secrect";

/// docs/wire-format.md#vectors: the 45 bytes 00..2c encrypted by kcp-go 5.6.1 with each kcptun cipher.
const VECTORS: [(CipherKind, &str); 13] = [
    (
        CipherKind::Aes,
        "86834343335b168ca911bf584a05f9900e1c6fda2c822a981eb60909411c15690afb116b0d6073935dd1a399f9",
    ),
    (
        CipherKind::Aes128,
        "ddd7e0a7981ba3e2a7f6d51f2a2663184531e844fe0ddec4d65df15b489c5ba3e15ff1881eaf077a23107a1086",
    ),
    (
        CipherKind::Aes192,
        "b9db59f7dd1bce4922855fb7f8f8e261a4937c0d7360349b24871684eb7bca422017d9f232c59cd2e4603e8463",
    ),
    (
        CipherKind::Salsa20,
        "00010203040506079aaa6e7faf75365c40a4761a0c7be4446a8a411f62e5954a4ac802ddae0f35e6455e56815a",
    ),
    (
        CipherKind::Blowfish,
        "186797305116055ece6531b898c4b2352cc7452301c8434ae21a1256aeb7305fb08d8648ad906dcc13c8fef8f0",
    ),
    (
        CipherKind::Twofish,
        "79a0668add94e7387471af7514bb1065027a4425d5bd62db2ba645c8b7f41fe83931f68d4c3ad655e8b3727308",
    ),
    (
        CipherKind::Cast5,
        "bb8f8d2209e0131c7d027b3e28d6b45788b9c798dc5b25fc905f95636f61bb1cf570dd159b95dc560e2c33a7ce",
    ),
    (
        CipherKind::TripleDes,
        "5dca5d4fac8f6accf083365ae9eb528a24c6879fd6daee12f406f9a17955efec4fa86c417ab7d94fa773772244",
    ),
    (
        CipherKind::Tea,
        "fc9c4eb4a8e9502bde3d3c8b0679084d963bc6bfca609b1ba987df5d5e088440024c54fe55fe7a44ffe41b540e",
    ),
    (
        CipherKind::Xtea,
        "09256989438dfb5af0f2a323dfd1ac2c9af741cc94cf83fec52a72395260600933396d604d06cba2459225658d",
    ),
    (
        CipherKind::Sm4,
        "0340e44fd923bb2259e375a7ab6ee54de9bca063ac2859b4bfd05a8a7ada8cfee0ee39b42f17db450a2e938ba4",
    ),
    (
        CipherKind::Xor,
        "0fff8b84a99173765c7011c3f60cb8237bdf1315a6805604d54b25a70367b293d08e441c63be35690d89fadcb2",
    ),
    (
        CipherKind::None,
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c",
    ),
];

fn plaintext45() -> Vec<u8> {
    (0u8..45).collect()
}

#[test]
fn derived_keys_match_protocol_d5() {
    assert_eq!(
        derive_key(DEFAULT_KEY).to_vec(),
        hex("25d7d7bd51050742d8d791f2b653c6c8b2366b7e25a124cf7a2e12eaf4ffa444")
    );
    assert_eq!(
        derive_key(b"secret").to_vec(),
        hex("2f556efba9b64bffb01a4fdeaefc5a378874ba1e24c6932534ab5135b4bfecc9")
    );
}

#[test]
fn xor_table_prefix_matches_protocol_d4() {
    let t = xor_table(&derive_key(DEFAULT_KEY));
    assert_eq!(t.len(), 1500);
    assert_eq!(t[..16].to_vec(), hex("0ffe8987ad94757154791bc8fa01b62c"));
}

#[test]
fn appendix_g_vectors_byte_for_byte() {
    let key = derive_key(DEFAULT_KEY);
    let mut failures = Vec::new();
    for (kind, expected) in VECTORS {
        let bc = new_block_crypt(kind, &key).unwrap();
        let mut buf = plaintext45();
        bc.encrypt(&mut buf);
        if buf != hex(expected) {
            failures.push(kind);
        }
        bc.decrypt(&mut buf);
        assert_eq!(buf, plaintext45(), "{kind} does not round-trip");
    }
    assert!(failures.is_empty(), "vector mismatch for {failures:?}");
}

#[test]
fn vectors_cover_every_kcptun_kind() {
    let covered: Vec<_> = VECTORS.iter().map(|(k, _)| *k).collect();
    assert_eq!(covered, CipherKind::KCPTUN.to_vec());
}

#[test]
fn every_kcptun_kind_constructs() {
    let key = derive_key(b"secret");
    for kind in CipherKind::KCPTUN {
        assert!(new_block_crypt(kind, &key).is_some(), "{kind}");
    }
    for kind in CipherKind::AUTHENTICATED {
        assert!(new_block_crypt(kind, &key).is_none(), "{kind}");
    }
}

#[test]
fn legacy_kinds_are_compiled_in_by_default() {
    let legacy: Vec<_> = CipherKind::ALL
        .into_iter()
        .filter(|k| k.is_legacy())
        .collect();
    assert_eq!(legacy.len(), 8);
    assert!(CipherKind::ALL.iter().all(|k| k.is_available()));
}

#[test]
fn names_round_trip_and_fallback() {
    for kind in CipherKind::ALL {
        assert_eq!(kind.name().parse::<CipherKind>(), Ok(kind));
        assert_eq!(kind.to_string(), kind.name());
    }
    for kind in CipherKind::KCPTUN {
        assert_eq!(CipherKind::from_kcptun_name(kind.name()), kind);
        assert_eq!(CipherKind::kcptun_lookup(kind.name()), Some(kind));
    }
    // A Go peer reads the Rust-only names as `aes` (AES-256-CFB): so does the kcptun mapping.
    for kind in CipherKind::AUTHENTICATED {
        assert_eq!(CipherKind::from_kcptun_name(kind.name()), CipherKind::Aes);
        assert_eq!(CipherKind::kcptun_lookup(kind.name()), None);
    }
    assert_eq!(CipherKind::from_kcptun_name(""), CipherKind::Aes);
    assert_eq!(CipherKind::from_kcptun_name("AES"), CipherKind::Aes);
    assert_eq!(CipherKind::from_kcptun_name("des"), CipherKind::Aes);
    assert!(matches!(
        "blowfishy".parse::<CipherKind>(),
        Err(CryptError::UnknownCipher { name }) if name == "blowfishy"
    ));
}

#[test]
fn header_sizes() {
    let key = [7u8; 32];
    for kind in CipherKind::KCPTUN {
        let pc = PacketCrypt::new(kind, &key);
        assert_eq!((pc.header_len(), pc.trailer_len()), (20, 0), "{kind}");
        assert_eq!(pc.kind(), kind);
    }
    // The authenticated kinds report their sessions' layout (docs/wire-format.md#crypt-aead).
    for kind in CipherKind::AUTHENTICATED {
        let pc = PacketCrypt::new(kind, &key);
        assert_eq!((pc.header_len(), pc.trailer_len()), (24, 16), "{kind}");
        assert_eq!(pc.overhead(), SESSION_OVERHEAD, "{kind}");
        let sc = pc.client_session(SessionId::new(T, [1; 8]));
        assert_eq!((sc.header_len(), sc.trailer_len()), (24, 16), "{kind}");
    }
}

/// What kcp-go's receiver does (docs/wire-format.md#session-input-crypt), written out independently of
/// `PacketCrypt::open`: decrypt with the bare cipher, then check LE CRC32 of `[20..]`.
#[test]
fn sealed_packets_have_kcp_go_layout() {
    let key = derive_key(DEFAULT_KEY);
    for kind in CipherKind::KCPTUN {
        let pc = PacketCrypt::new(kind, &key);
        let bc = new_block_crypt(kind, &key).unwrap();
        let mut buf = vec![0u8; 20];
        buf.extend_from_slice(b"some kcp segment bytes");
        pc.seal(&mut buf);
        bc.decrypt(&mut buf);
        let crc = u32::from_le_bytes(buf[16..20].try_into().unwrap());
        assert_eq!(crc, crc32fast::hash(&buf[20..]), "{kind}");
        assert_eq!(&buf[20..], b"some kcp segment bytes", "{kind}");
    }
}

#[test]
fn nonces_differ_between_packets() {
    let pc = PacketCrypt::new(CipherKind::None, &[1; 32]);
    let mut a = [0u8; 20];
    let mut b = [0u8; 20];
    pc.seal(&mut a);
    pc.clone().seal(&mut b);
    assert_ne!(a[..16], b[..16]);
    // `none` keeps the header in clear: CRC of the empty payload.
    assert_eq!(a[16..], crc32fast::hash(&[]).to_le_bytes());
}

#[test]
fn equal_payloads_encrypt_differently() {
    let pc = PacketCrypt::new(CipherKind::Aes, &[1; 32]);
    let mut a = [0u8; 64];
    let mut b = [0u8; 64];
    pc.seal(&mut a);
    pc.seal(&mut b);
    assert_ne!(a[20..], b[20..]);
}

#[test]
fn short_packets_rejected() {
    for kind in CipherKind::KCPTUN {
        let pc = PacketCrypt::new(kind, &[3; 32]);
        let min = pc.overhead();
        for len in 0..min {
            let mut buf = vec![0xAAu8; len];
            assert_eq!(
                pc.open(&mut buf),
                Err(CryptError::TooShort { len, min }),
                "{kind} len {len}"
            );
            assert_eq!(
                pc.try_seal(&mut buf),
                Err(CryptError::SealBufferTooSmall { len, min }),
                "{kind} len {len}"
            );
        }
    }
}

#[test]
#[should_panic(expected = "cannot hold")]
fn seal_panics_on_caller_bug() {
    PacketCrypt::new(CipherKind::Aes, &[3; 32]).seal(&mut [0u8; 19]);
}

#[test]
fn crc_mismatch_rejected() {
    for kind in CipherKind::KCPTUN {
        let pc = PacketCrypt::new(kind, &[5; 32]);
        let mut buf = vec![0u8; 100];
        pc.seal(&mut buf);
        // Flip a bit in the final partial block (bytes 96..100 for 8- and 16-byte blocks):
        // every kcp-go cipher turns it into exactly one flipped plaintext bit, which CRC32
        // always detects.
        buf[98] ^= 0x10;
        assert!(
            matches!(pc.open(&mut buf), Err(CryptError::ChecksumMismatch { .. })),
            "{kind}"
        );
    }
}

#[test]
fn wrong_key_rejected() {
    for kind in CipherKind::KCPTUN {
        if kind == CipherKind::None {
            continue; // `none` has no key
        }
        let tx = PacketCrypt::new(kind, &[5; 32]);
        let rx = PacketCrypt::new(kind, &[6; 32]);
        let mut buf = vec![0u8; 100];
        tx.seal(&mut buf);
        assert!(rx.open(&mut buf).is_err(), "{kind}");
    }
    for kind in CipherKind::AUTHENTICATED {
        let (c, s) = (SessionId::new(T, [1; 8]), SessionId::new(T, [2; 8]));
        let mut tx = PacketCrypt::new(kind, &[5; 32]).client_session(c);
        let mut rx = PacketCrypt::new(kind, &[6; 32]).server_session(c, s);
        let mut buf = vec![0u8; 100];
        tx.seal(&mut buf);
        assert_eq!(
            rx.open(&mut buf),
            Err(CryptError::AuthenticationFailed),
            "{kind}"
        );
    }
}

/// The authenticated kinds seal and open only per session: `PacketCrypt` refuses them with
/// `SessionRequired` whatever the buffer, touches nothing, and `open` never panics.
#[test]
fn packet_crypt_refuses_aead_kinds() {
    for kind in CipherKind::AUTHENTICATED {
        let pc = PacketCrypt::new(kind, &[3; 32]);
        for len in [0, 1, 12, 23, 24, 39, 40, 41, 68, 100, 1500] {
            let orig: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = orig.clone();
            assert_eq!(
                pc.try_seal(&mut buf),
                Err(CryptError::SessionRequired),
                "{kind} len {len}"
            );
            assert_eq!(buf, orig, "{kind} len {len}");
            assert_eq!(
                pc.open(&mut buf),
                Err(CryptError::SessionRequired),
                "{kind} len {len}"
            );
            assert_eq!(buf, orig, "{kind} len {len}");
        }
        // A datagram its sessions sealed does not open through `PacketCrypt` either.
        let mut d = vec![0u8; SESSION_OVERHEAD + 5];
        pc.client_session(SessionId::new(T, [1; 8])).seal(&mut d);
        assert_eq!(pc.open(&mut d), Err(CryptError::SessionRequired), "{kind}");
    }
    assert!(
        CryptError::SessionRequired
            .to_string()
            .contains("client_session/server_session")
    );
}

#[test]
#[should_panic(expected = "PacketCrypt::seal: the authenticated kinds seal and open per session")]
fn seal_panics_for_aead_kinds() {
    PacketCrypt::new(CipherKind::ChaCha20Poly1305, &[3; 32]).seal(&mut [0u8; 100]);
}

/// A client session's datagram opened by the server session, and the reverse; every single bit
/// flipped anywhere (id, counter, ciphertext, tag) fails without burning the counter, and an
/// exact replay of an opened datagram is refused.
#[test]
fn aead_session_rejects_every_single_bitflip() {
    for kind in CipherKind::AUTHENTICATED {
        let (mut cl, mut sv) = session_pair(kind);
        for to_server in [true, false] {
            let (tx, rx) = if to_server {
                (&mut cl, &mut sv)
            } else {
                (&mut sv, &mut cl)
            };
            let mut sealed = vec![0u8; 24 + 40 + 16];
            sealed[24..64].copy_from_slice(&[0x5A; 40]);
            tx.seal(&mut sealed);
            for bit in 0..sealed.len() * 8 {
                let mut buf = sealed.clone();
                buf[bit / 8] ^= 1 << (bit % 8);
                assert!(rx.open(&mut buf).is_err(), "{kind} bit {bit}");
            }
            let mut buf = sealed.clone();
            assert_eq!(rx.open(&mut buf).map(|o| o.payload), Ok(24..64), "{kind}");
            assert_eq!(buf[24..64], [0x5A; 40]);
            let mut again = sealed.clone();
            assert!(
                matches!(rx.open(&mut again), Err(CryptError::Replayed { .. })),
                "{kind}"
            );
        }
    }
}

#[test]
fn aead_session_rejects_truncation_and_extension() {
    for kind in CipherKind::AUTHENTICATED {
        let (mut cl, mut sv) = session_pair(kind);
        let mut sealed = vec![0u8; 24 + 40 + 16];
        cl.seal(&mut sealed);
        for cut in 1..=40 {
            let mut buf = sealed[..sealed.len() - cut].to_vec();
            assert_eq!(
                sv.open(&mut buf),
                Err(CryptError::AuthenticationFailed),
                "{kind}"
            );
            let mut buf = sealed[cut..].to_vec();
            assert_eq!(
                sv.open(&mut buf),
                Err(CryptError::AuthenticationFailed),
                "{kind}"
            );
        }
        let mut buf = sealed[..39].to_vec();
        assert_eq!(
            sv.open(&mut buf),
            Err(CryptError::TooShort { len: 39, min: 40 }),
            "{kind}"
        );
        let mut buf = sealed.clone();
        buf.push(0);
        assert_eq!(
            sv.open(&mut buf),
            Err(CryptError::AuthenticationFailed),
            "{kind}"
        );
        // None of that burnt counter 0.
        assert!(sv.open(&mut sealed).is_ok(), "{kind}");
    }
}

#[test]
fn xor_leaves_bytes_past_1500_in_clear() {
    let bc = new_block_crypt(CipherKind::Xor, &[4; 32]).unwrap();
    let mut buf = vec![0u8; 1600];
    bc.encrypt(&mut buf);
    assert_eq!(buf[..1500], xor_table(&[4; 32])[..]);
    assert!(buf[1500..].iter().all(|&b| b == 0));
}

#[test]
fn bare_ciphers_accept_tiny_buffers() {
    let key = derive_key(b"secret");
    for kind in CipherKind::KCPTUN {
        let bc = new_block_crypt(kind, &key).unwrap();
        for len in 0..=17 {
            let orig: Vec<u8> = (0..len as u8).collect();
            let mut buf = orig.clone();
            bc.encrypt(&mut buf);
            bc.decrypt(&mut buf);
            assert_eq!(buf, orig, "{kind} len {len}");
        }
    }
}

/// A client's session start time for the AEAD tests (any value works: freshness is the
/// listener's business, not `SessionCrypt`'s).
const T: u64 = 1_700_000_000_000;

/// Both ends of one AEAD session under a fixed key, the server having heard the client first
/// (as a listener does), so either may seal to the other.
fn session_pair(kind: CipherKind) -> (SessionCrypt, SessionCrypt) {
    let pc = PacketCrypt::new(kind, &[9; 32]);
    let c = SessionId::new(T, [1; 8]);
    let mut cl = pc.client_session(c);
    let mut sv = pc.server_session(c, SessionId::new(T + 1, [2; 8]));
    let mut hello = vec![0u8; SESSION_OVERHEAD];
    cl.seal(&mut hello);
    sv.open(&mut hello).expect("the client's first datagram");
    (cl, sv)
}

fn any_kind() -> impl Strategy<Value = CipherKind> {
    proptest::sample::select(CipherKind::ALL.to_vec())
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(any::<u8>(), 1500..=1500),
        proptest::collection::vec(any::<u8>(), 0..1600),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// kcp-go kinds through `PacketCrypt`, the authenticated ones through a client session
    /// sealing and a server session opening.
    #[test]
    fn prop_seal_open_round_trip(kind in any_kind(), key in any::<[u8; 32]>(), data in payload()) {
        let pc = PacketCrypt::new(kind, &key);
        let h = pc.header_len();
        let mut buf = vec![0u8; h + data.len() + pc.trailer_len()];
        buf[h..h + data.len()].copy_from_slice(&data);
        let range = if kind.is_authenticated() {
            let c = SessionId::new(T, [1; 8]);
            pc.client_session(c).seal(&mut buf);
            let opened = pc
                .server_session(c, SessionId::new(T, [2; 8]))
                .open(&mut buf)
                .unwrap();
            prop_assert_eq!(opened.counter, Some(0));
            opened.payload
        } else {
            pc.seal(&mut buf);
            pc.open(&mut buf).unwrap()
        };
        prop_assert_eq!(range.clone(), h..h + data.len());
        prop_assert_eq!(&buf[range], &data[..]);
    }

    /// Arbitrary bytes: `PacketCrypt::open` of every kind, and both ends of an AEAD session,
    /// never panic and give a payload range inside the buffer.
    #[test]
    fn prop_open_never_panics(kind in any_kind(), data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let pc = PacketCrypt::new(kind, &[0x11; 32]);
        let mut buf = data.clone();
        match pc.open(&mut buf) {
            Ok(r) => prop_assert!(r.start <= r.end && r.end <= buf.len()),
            Err(e) if kind.is_authenticated() => prop_assert_eq!(e, CryptError::SessionRequired),
            Err(_) => {}
        }
        let c = SessionId::new(T, [1; 8]);
        for mut sc in [pc.client_session(c), pc.server_session(c, SessionId::new(T, [2; 8]))] {
            let mut buf = data.clone();
            if let Ok(o) = sc.open(&mut buf) {
                prop_assert!(o.payload.start <= o.payload.end && o.payload.end <= buf.len());
            }
        }
    }
}
