#!/usr/bin/env bash
# One-way bulk through the tunnel on loopback, one TCP connection, kcptun's defaults (aes, FEC 10/3, compression
# on, mode fast): our tunnel-client/tunnel-server pair vs kcptun-client/kcptun-server, in the same run.
# Reports throughput (MB/s) and CPU seconds per MB (utime+stime of both tunnel processes, /proc/<pid>/stat).
#
# Usage: examples/scripts/tunnel_bench.sh [MB] [rounds] [extra flags for both ends...]
#   build first: cargo build --release (or set BIN_DIR to the directory holding tunnel-client/tunnel-server)
set -euo pipefail
MB=${1:-200}
ROUNDS=${2:-3}
shift $(( $# > 2 ? 2 : $# )) || true
EXTRA=("$@")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
OUR_C=$BIN_DIR/tunnel-client
OUR_S=$BIN_DIR/tunnel-server
GO_C=$(command -v kcptun-client)
GO_S=$(command -v kcptun-server)
for b in "$OUR_C" "$OUR_S" "$GO_C" "$GO_S"; do [ -x "$b" ] || { echo "missing $b" >&2; exit 1; }; done
TICK=$(getconf CLK_TCK)

# A TCP sink plus a one-way source through the tunnel; prints the seconds from the first byte sent until the
# sink has received everything.
BULK_PY='
import socket, sys, threading, time, os
sink_port, tun_port, total = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", sink_port)); ls.listen(1)
done = threading.Event(); got = [0]; end = [0.0]
def sink():
    c, _ = ls.accept()
    while got[0] < total:
        b = c.recv(1 << 20)
        if not b: break
        got[0] += len(b)
    end[0] = time.time(); done.set(); c.close()
threading.Thread(target=sink, daemon=True).start()
for _ in range(100):
    try:
        s = socket.create_connection(("127.0.0.1", tun_port)); break
    except OSError: time.sleep(0.05)
buf = os.urandom(1 << 20)
start = time.time(); sent = 0
while sent < total:
    n = min(len(buf), total - sent); s.sendall(buf[:n]); sent += n
if not done.wait(600): print("TIMEOUT", got[0], file=sys.stderr); sys.exit(1)
s.close()
print("%.3f" % (end[0] - start))
'

PORT=$(( 20000 + ($$ % 1000) * 30 ))
LOGS=$(mktemp -d)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_pair() { # name client server
  local name=$1 cbin=$2 sbin=$3
  PORT=$(( PORT + 3 ))
  local sport=$PORT cport=$(( PORT + 1 )) sink=$(( PORT + 2 ))
  "$sbin" -l "127.0.0.1:$sport" -t "127.0.0.1:$sink" --quiet "${EXTRA[@]}" 2>>"$LOGS/$name-server.log" & local spid=$!
  "$cbin" -l "127.0.0.1:$cport" -r "127.0.0.1:$sport" --quiet "${EXTRA[@]}" 2>>"$LOGS/$name-client.log" & local cpid=$!
  sleep 0.5
  local c0 s0; c0=$(cpu_ticks $cpid); s0=$(cpu_ticks $spid)
  local secs; secs=$(python3 -c "$BULK_PY" "$sink" "$cport" $(( MB * 1000000 )))
  local c1 s1; c1=$(cpu_ticks $cpid) || { echo "$name client died, see $LOGS" >&2; exit 1; }
  s1=$(cpu_ticks $spid) || { echo "$name server died, see $LOGS" >&2; exit 1; }
  kill $cpid $spid 2>/dev/null; wait $cpid $spid 2>/dev/null || true
  awk -v n="$name" -v mb="$MB" -v s="$secs" -v c=$(( c1 - c0 )) -v sv=$(( s1 - s0 )) -v t="$TICK" 'BEGIN {
    printf "%-8s %6d MB in %7.2f s = %7.1f MB/s   CPU client %.2f s + server %.2f s = %.4f CPU-s/MB\n",
      n, mb, s, mb / s, c / t, sv / t, (c + sv) / t / mb }'
}

echo "one TCP connection, $MB MB one-way, defaults (aes, FEC 10/3, compression on, fast) ${EXTRA[*]}"
for r in $(seq "$ROUNDS"); do
  run_pair kcptun "$GO_C" "$GO_S"
  run_pair rkcp "$OUR_C" "$OUR_S"
done
