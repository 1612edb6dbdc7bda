//! Fuzzes `rkcp_crypt::PacketCrypt::open` with arbitrary datagrams for every cipher kind (it must
//! never panic, and a returned range must lie inside the buffer), and checks that whatever the
//! input, sealing it as a payload and opening it again gives it back.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rkcp_crypt::{CipherKind, PacketCrypt};

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
    if let Ok(r) = pc.open(&mut buf) {
        assert!(r.start <= r.end && r.end <= buf.len());
        assert_eq!(r.start, pc.header_len());
    }

    let h = pc.header_len();
    let mut sealed = vec![0u8; h + rest.len() + pc.trailer_len()];
    sealed[h..h + rest.len()].copy_from_slice(rest);
    pc.seal(&mut sealed);
    let r = pc.open(&mut sealed).expect("own packet opens");
    assert_eq!(&sealed[r], rest);
});
