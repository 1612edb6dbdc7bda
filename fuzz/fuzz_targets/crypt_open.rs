//! Fuzzes opening arbitrary datagrams for every cipher kind (it must never panic, and a returned
//! payload range must lie inside the buffer), and checks that whatever the input, sealing it as a
//! payload and opening it again gives it back. The kcp-go kinds go through
//! `rkcp_crypt::PacketCrypt::open`/`seal`; the authenticated kinds, which seal and open per session
//! only (`PacketCrypt` refuses them with `CryptError::SessionRequired`), through a client
//! `SessionCrypt` sealing and a server one opening, and the arbitrary input is also offered to
//! both ends.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rkcp_crypt::{CipherKind, CryptError, PacketCrypt, SessionId};

const CLIENT: u64 = 1_700_000_000_000;

fn crypts() -> &'static [PacketCrypt] {
    static C: OnceLock<Vec<PacketCrypt>> = OnceLock::new();
    C.get_or_init(|| {
        CipherKind::ALL
            .iter()
            .map(|&k| PacketCrypt::new(k, &[0x42; 32]))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let all = crypts();
    let pc = &all[usize::from(sel) % all.len()];

    let mut buf = rest.to_vec();
    match pc.open(&mut buf) {
        Ok(r) => {
            assert!(!pc.kind().is_authenticated());
            assert!(r.start <= r.end && r.end <= buf.len());
            assert_eq!(r.start, pc.header_len());
        }
        Err(e) => assert_eq!(
            e == CryptError::SessionRequired,
            pc.kind().is_authenticated()
        ),
    }

    let h = pc.header_len();
    let mut sealed = vec![0u8; h + rest.len() + pc.trailer_len()];
    sealed[h..h + rest.len()].copy_from_slice(rest);
    if !pc.kind().is_authenticated() {
        pc.seal(&mut sealed);
        let r = pc.open(&mut sealed).expect("own packet opens");
        assert_eq!(&sealed[r], rest);
        return;
    }

    // Fixed ids keep runs reproducible; the fuzzer still reaches every header byte through `rest`.
    let c = SessionId::new(CLIENT, [1; 8]);
    let mut client = pc.client_session(c);
    let mut server = pc.server_session(c, SessionId::new(CLIENT + 1, [2; 8]));
    for end in [&mut client, &mut server] {
        let mut buf = rest.to_vec();
        if let Ok(o) = end.open(&mut buf) {
            assert!(o.payload.start <= o.payload.end && o.payload.end <= buf.len());
        }
    }
    let mut client = pc.client_session(c);
    let mut server = pc.server_session(c, SessionId::new(CLIENT + 1, [2; 8]));
    client.seal(&mut sealed);
    let o = server.open(&mut sealed).expect("own datagram opens");
    assert_eq!(&sealed[o.payload], rest);
});
