//! Unit tests for a build without the `legacy-ciphers` feature: the old kinds report a clear
//! error, everything else still seals and opens.

use crate::*;

#[test]
fn legacy_kinds_are_unavailable() {
    let key = derive_key(b"secret");
    for kind in CipherKind::ALL {
        assert_eq!(kind.is_available(), !kind.is_legacy(), "{kind}");
        if kind.is_legacy() {
            assert!(new_block_crypt(kind, &key).is_none(), "{kind}");
            let err = PacketCrypt::try_new(kind, &key).unwrap_err();
            assert_eq!(err, CryptError::CipherUnavailable { kind });
            assert!(err.to_string().contains("legacy-ciphers"), "{err}");
        }
    }
}

#[test]
fn other_kinds_round_trip() {
    let key = derive_key(b"secret");
    for kind in CipherKind::ALL.into_iter().filter(|k| !k.is_legacy()) {
        let pc = PacketCrypt::try_new(kind, &key).unwrap();
        let mut buf = vec![0u8; pc.overhead() + 5];
        buf[pc.header_len()..pc.header_len() + 5].copy_from_slice(b"hello");
        let range = if kind.is_authenticated() {
            // The authenticated kinds seal and open per session only.
            assert_eq!(pc.try_seal(&mut buf), Err(CryptError::SessionRequired));
            let c = SessionId::now();
            pc.client_session(c).seal(&mut buf);
            let mut server = pc.server_session(c, SessionId::now());
            server.open(&mut buf).unwrap().payload
        } else {
            pc.seal(&mut buf);
            pc.open(&mut buf).unwrap()
        };
        assert_eq!(&buf[range], b"hello", "{kind}");
    }
}

#[test]
#[should_panic(expected = "legacy-ciphers")]
fn new_panics_with_the_feature_name() {
    let _ = PacketCrypt::new(CipherKind::Blowfish, &[7; 32]);
}
