//! Byte-compatibility with the real kcp-go: a small Go program (`tests/go/crypt_peer`) seals and
//! opens datagrams with kcp-go's own `BlockCrypt`s, built as kcptun builds them, and the same
//! header as kcp-go's session. Needs `go` and the Debian packages golang-github-xtaci-kcp-dev
//! (with its x/crypto and gmsm dependencies) under /usr/share/gocode; fails if they are missing.
#![cfg(feature = "legacy-ciphers")]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use rkcp_crypt::{CipherKind, PacketCrypt, SessionId};

const PASSPHRASE: &str = "interop passphrase";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex from the Go peer"))
        .collect()
}

fn build_peer() -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/go/crypt_peer");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("crypt_peer");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg("./main.go")
        .current_dir(&src)
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .status()
        .expect("`go` must be installed to run interop tests (apt-get install golang-go)");
    assert!(
        status.success(),
        "building the Go peer failed: install golang-github-xtaci-kcp-dev"
    );
    out
}

/// Sends `lines` to the Go peer and returns its answer lines, one per request.
fn ask_go(peer: &PathBuf, lines: Vec<String>) -> Vec<String> {
    let mut child = Command::new(peer)
        .arg(PASSPHRASE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the Go peer");
    let mut stdin = child.stdin.take().expect("stdin");
    let n = lines.len();
    // Write from another thread so neither side blocks on a full pipe.
    let writer = std::thread::spawn(move || {
        for l in lines {
            writeln!(stdin, "{l}").expect("write to Go peer");
        }
    });
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let answers: Vec<String> = stdout.lines().map(|l| l.expect("read")).collect();
    writer.join().expect("writer thread");
    assert!(child.wait().expect("wait").success());
    assert_eq!(answers.len(), n, "one answer per request");
    answers
}

fn payloads() -> Vec<Vec<u8>> {
    [0usize, 1, 7, 8, 9, 15, 16, 17, 100, 1330, 1480, 1600]
        .iter()
        .map(|&len| (0..len).map(|i| (i * 37 + len) as u8).collect())
        .collect()
}

#[test]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
fn interop_go_crypt_both_directions() {
    let peer = build_peer();
    let payloads = payloads();

    // Go seals, Rust opens.
    let mut reqs = Vec::new();
    for kind in CipherKind::KCPTUN {
        for p in &payloads {
            reqs.push(format!("seal {} {}", kind.name(), hex(p)));
        }
    }
    let sealed_by_go = ask_go(&peer, reqs);
    let mut it = sealed_by_go.iter();
    for kind in CipherKind::KCPTUN {
        let pc = PacketCrypt::from_passphrase(kind, PASSPHRASE);
        for p in &payloads {
            let mut pkt = unhex(it.next().expect("answer"));
            assert_eq!(pkt.len(), 20 + p.len());
            let r = pc
                .open(&mut pkt)
                .unwrap_or_else(|e| panic!("{kind}: Go packet rejected: {e}"));
            assert_eq!(&pkt[r], &p[..], "{kind} len {}", p.len());
        }
    }

    // Rust seals, Go opens; then one corrupted packet per cipher must fail Go's CRC.
    let mut reqs = Vec::new();
    let mut expect = Vec::new();
    for kind in CipherKind::KCPTUN {
        let pc = PacketCrypt::from_passphrase(kind, PASSPHRASE);
        for p in &payloads {
            let mut buf = vec![0u8; 20];
            buf.extend_from_slice(p);
            pc.seal(&mut buf);
            reqs.push(format!("open {} {}", kind.name(), hex(&buf)));
            expect.push(hex(p));
        }
        let mut bad = vec![0u8; 20 + 50];
        pc.seal(&mut bad);
        bad[69] ^= 0x01; // last (partial-block) byte: exactly one plaintext bit flips
        reqs.push(format!("open {} {}", kind.name(), hex(&bad)));
        expect.push("ERR csum".to_string());
    }
    let opened_by_go = ask_go(&peer, reqs);
    for (i, (got, want)) in opened_by_go.iter().zip(&expect).enumerate() {
        assert_eq!(got, want, "request {i}");
    }

    // A Rust-only AEAD packet is garbage to kcp-go (documented): it fails the CRC under `aes`.
    let pc = PacketCrypt::from_passphrase(CipherKind::Aes256Gcm, PASSPHRASE);
    let mut buf = vec![0u8; pc.overhead() + 40];
    pc.client_session(SessionId::now()).seal(&mut buf);
    let ans = ask_go(&peer, vec![format!("open aes {}", hex(&buf))]);
    assert_eq!(ans, ["ERR csum"]);
}
