# PROTOCOL.md section -> docs/wire-format.md anchor (kept for repointing; see the report).
MAP = {
 "0": "layering",
 "A": "kcp", "A.1": "kcp-segment", "A.2": "kcp-constants", "A.3": "kcp-state", "A.4": "kcp-send",
 "A.5": "kcp-input", "A.6": "kcp-rto", "A.7": "kcp-flush", "A.8": "kcp-recv", "A.9": "kcp-knobs",
 "A.10": "kcp-vs-ikcp",
 "B": "session", "B.1": "session-headers", "B.2": "session-output", "B.3": "session-input",
 "B.4": "session-listener", "B.5": "session-dial", "B.6": "session-timers", "B.7": "session-read-write",
 "B.8": "session-options", "B.9": "session-batch-io", "B.10": "session-snmp", "B.11": "session-bad-input",
 "B.12": "session-close",
 "C": "fec", "C.1": "fec-header", "C.2": "fec-encoder", "C.3": "fec-decoder", "C.4": "fec-autotune",
 "C.5": "fec-reed-solomon",
 "D": "crypt", "D.1": "crypt-contract", "D.2": "crypt-cfb", "D.3": "crypt-ciphers", "D.4": "crypt-salsa20-xor",
 "D.5": "crypt-kcptun-key",
 "E": "smux", "E.1": "smux-frame", "E.2": "smux-config", "E.3": "smux-session", "E.4": "smux-token-bucket",
 "E.5": "smux-v2-window", "E.6": "smux-writes", "E.7": "smux-close", "E.8": "smux-errors",
 "F": "kcptun", "F.1": "kcptun-flags", "F.2": "kcptun-modes", "F.3": "kcptun-session", "F.4": "kcptun-snappy",
 "F.5": "kcptun-tunnel", "F.6": "kcptun-loopback", "F.7": "kcptun-checks",
 "G": "vectors",
}
# Numbered steps that code cites, with their own anchors.
STEPS = {
 ("A.7", "3"): "kcp-flush-probe", ("A.7", "9.2"): "kcp-flush-fast-resend", ("A.7", "11"): "kcp-flush-cwnd",
 ("B.2", "2"): "session-output-crypt", ("B.3", "1"): "session-input-crypt", ("B.3", "2"): "session-input-length",
 ("B.3", "3"): "session-input-dispatch",
}
