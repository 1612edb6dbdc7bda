//! Interop with the real kcp-go FEC decoder: our encoder's stream, with the parity count
//! changed mid-stream as the adaptive policy does and up to `ps` data packets lost per group,
//! is fed to kcp-go 5.6.1's own `fecDecoder` (an unexported type, so the Go side is a test file
//! dropped into a temporary copy of the Debian package's source). kcp-go must follow each
//! change through autotune and rebuild every lost packet intact once it has locked on.
//!
//! Run: `cargo test -p rkcp-fec --release -- --ignored interop_`

use std::path::{Path, PathBuf};
use std::process::Command;

use rkcp_fec::{FecEncoder, HEADER_SIZE_PLUS2};

const KCP_GO: &str = "/usr/share/gocode/src/github.com/xtaci/kcp-go";

const GO_TEST: &str = r#"package kcp

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"os"
	"testing"
)

// Reads length-prefixed FEC packets, feeds kcp-go's decoder, writes each rebuilt packet's
// KCP bytes (size field validated as sess.go does) as a hex line.
func TestRkcpInterop(t *testing.T) {
	in, err := os.ReadFile(os.Getenv("RKCP_IN"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(os.Getenv("RKCP_OUT"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	defer w.Flush()
	dec := newFECDecoder(10, 3)
	for len(in) >= 2 {
		n := int(binary.LittleEndian.Uint16(in))
		pkt := make([]byte, n)
		copy(pkt, in[2:2+n])
		in = in[2+n:]
		for _, r := range dec.decode(fecPacket(pkt)) {
			if len(r) >= 2 {
				sz := int(binary.LittleEndian.Uint16(r))
				if sz >= 2 && sz <= len(r) {
					w.WriteString(hex.EncodeToString(r[2:sz]) + "\n")
				}
			}
		}
	}
}
"#;

fn payload(id: u32, len: usize) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    let mut x = id.wrapping_mul(2_654_435_761) | 1;
    while v.len() < len.max(4) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    v
}

fn go_workspace() -> PathBuf {
    let root = std::env::temp_dir().join(format!("rkcp-fec-interop-{}", std::process::id()));
    let pkg = root.join("src/github.com/xtaci/kcp-go");
    std::fs::create_dir_all(&pkg).unwrap();
    for entry in std::fs::read_dir(KCP_GO).expect("kcp-go source (golang-github-xtaci-kcp-dev)") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // Its own tests need testify, which the Debian package does not pull in.
        if name.ends_with(".go") && !name.ends_with("_test.go") {
            std::fs::copy(&path, pkg.join(&name)).unwrap();
        }
    }
    std::fs::write(pkg.join("rkcp_interop_test.go"), GO_TEST).unwrap();
    root
}

fn run_go(root: &Path, input: &Path, output: &Path) {
    let pkg = root.join("src/github.com/xtaci/kcp-go");
    let status = Command::new("go")
        .args(["test", "-count=1", "-run", "TestRkcpInterop", "."])
        .current_dir(&pkg)
        .env("GOPATH", format!("{}:/usr/share/gocode", root.display()))
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("RKCP_IN", input)
        .env("RKCP_OUT", output)
        .status()
        .expect("`go` must be installed to run interop tests (apt-get install golang-go)");
    assert!(status.success(), "go test failed: {status}");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
#[ignore = "needs Go and the xtaci Debian packages; see README"]
fn interop_kcp_go_decodes_our_stream_with_changing_parity() {
    let root = go_workspace();
    let mut enc = FecEncoder::new(10, 3, 0).unwrap();
    let mut stream = Vec::new();
    // Ids whose loss kcp-go must repair: lost after it has locked on to the current ps.
    let mut must_recover = Vec::new();
    let mut id = 0u32;
    for ps in [3usize, 1, 5, 2] {
        enc.set_parity_shards(ps).unwrap();
        // Clean groups: the 258-sample autotune ring is refilled with the new pattern.
        let clean = if id == 0 { 30 } else { 300 };
        for phase_id in 0..clean + 400 {
            let mut pkt = vec![0u8; HEADER_SIZE_PLUS2];
            pkt.extend_from_slice(&payload(id, 24 + (id as usize * 53) % 1300));
            let mut parity = Vec::new();
            enc.encode(&mut pkt, |p| parity.push(p.to_vec()));
            let lost = phase_id >= clean && (id % 10) < ps as u32;
            if lost {
                must_recover.push(id);
            } else {
                stream.push(pkt);
            }
            stream.extend(parity);
            id += 1;
        }
    }
    let input = root.join("in.bin");
    let output = root.join("out.txt");
    let mut bytes = Vec::new();
    for p in &stream {
        bytes.extend_from_slice(&(p.len() as u16).to_le_bytes());
        bytes.extend_from_slice(p);
    }
    std::fs::write(&input, bytes).unwrap();
    run_go(&root, &input, &output);

    let text = std::fs::read_to_string(&output).unwrap();
    let mut intact = Vec::new();
    let mut corrupt = 0;
    for line in text.lines() {
        let kcp = hex(line);
        let rid = u32::from_le_bytes(kcp[..4].try_into().unwrap());
        if kcp == payload(rid, kcp.len()) {
            intact.push(rid);
        } else {
            corrupt += 1;
        }
    }
    intact.sort_unstable();
    intact.dedup();
    let missing: Vec<u32> = must_recover
        .iter()
        .copied()
        .filter(|i| intact.binary_search(i).is_err())
        .collect();
    std::fs::remove_dir_all(&root).ok();
    assert_eq!(corrupt, 0, "kcp-go rebuilt corrupt packets");
    assert!(
        missing.is_empty(),
        "kcp-go did not rebuild {} lost packets: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(must_recover.len(), 40 * (3 + 1 + 5 + 2));
}
