#!/usr/bin/env bash
# The "Hostile traffic" figures of benches/RESULTS.md: tunnel-server under a flood (`kcpbench flood`),
# throughput of a live transfer before/during, RSS, sessions created (PassiveOpens from SIGUSR1), lockout of a
# new real client, replays of a recorded session.
#
#   cargo build --release -p kcpbench -p rkcp-examples
#   benches/hostile.sh CRYPT [COUNT] [RATE] [PORTS] [SRC_IPS]       e.g. benches/hostile.sh aes 1000000 100000 1000 1
#   CRYPT: a kcptun --crypt name, or aead:aes-256-gcm / aead:chacha20-poly1305 (the tunnel's --aead; the
#   `starts` flood is then skipped: those kinds seal per session).
#
# Loopback, everything on this machine: the flood sender, the tunnel, the probes share its cores.
set -u
CRYPT=${1:-none}
COUNT=${2:-1000000}
RATE=${3:-100000}
PORTS=${4:-1000}
SRC_IPS=${5:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${BIN_DIR:-$ROOT/target/release}
H="python3 $ROOT/benches/hostile.py"
W=$(mktemp -d /tmp/hostile.XXXXXX)
KEY=hostile-key
TGT=127.0.0.1:7300 SRV=127.0.0.1:7310 CLI=127.0.0.1:7311 CLI2=127.0.0.1:7312 RLY=127.0.0.1:7313 CLI3=127.0.0.1:7314
if [[ $CRYPT == aead:* ]]; then
  CFLAGS=(--aead "${CRYPT#aead:}" --key "$KEY"); FLOODCRYPT=""
else
  CFLAGS=(--crypt "$CRYPT" --key "$KEY"); FLOODCRYPT=$CRYPT
fi
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null

$H target --listen $TGT --log "$W/requests.log" >"$W/target.out" 2>&1 & PIDS+=($!)
"$B/tunnel-server" -l $SRV -t $TGT "${CFLAGS[@]}" --quiet >"$W/server.out" 2>&1 & SPID=$!; PIDS+=($SPID)
"$B/tunnel-client" -l $CLI -r $SRV "${CFLAGS[@]}" --quiet >"$W/client.out" 2>&1 & PIDS+=($!)
sleep 1

mem() { awk '/VmRSS|VmHWM/ {printf "%s %d KiB  ", $1, $2}' /proc/$SPID/status; echo; }
opens() { kill -USR1 $SPID; sleep 0.3; grep 'KCP SNMP' "$W/server.out" | tail -1 | grep -o 'PassiveOpens:[0-9]*\|CurrEstab:[0-9]*\|InCsumErrors:[0-9]*' | tr '\n' ' '; echo; }
requests() { wc -l <"$W/requests.log" 2>/dev/null || echo 0; }

echo "== crypt $CRYPT, flood $COUNT datagrams at $RATE/s from $PORTS ports over $SRC_IPS source IPs; work dir $W"
$H get --connect $CLI
echo "-- before: server $(mem)"; echo "-- before: $(opens)"
echo "-- baseline throughput (10 s of 64 MiB transfers):"; $H push --connect $CLI --secs 10 | tail -1

kinds="garbage"; [[ -n $FLOODCRYPT ]] && kinds="starts garbage"
for kind in $kinds; do
  echo "-- flood $kind: server $(mem)"
  fl=(--target $SRV --kind "$kind" --count "$COUNT" --rate "$RATE" --ports "$PORTS" --src-ips "$SRC_IPS" --quiet)
  [[ $kind == starts ]] && fl+=(--crypt "$FLOODCRYPT" --key "$KEY")
  "$B/kcpbench" flood "${fl[@]}" >"$W/flood-$kind.out" 2>&1 & FPID=$!
  sleep 0.5
  $H push --connect $CLI --secs 5 >"$W/push-$kind.out" 2>&1 & PPID2=$!
  # Lockout: a new real client (its own process and port) 2 s into the flood; time from its start to the answer.
  sleep 1.5
  t0=$(date +%s.%N)
  "$B/tunnel-client" -l $CLI2 -r $SRV "${CFLAGS[@]}" --quiet >"$W/client2-$kind.out" 2>&1 & C2=$!; PIDS+=($C2)
  sleep 0.2
  $H get --connect $CLI2 --timeout 30 >"$W/get-$kind.out" 2>&1
  t1=$(date +%s.%N)
  kill $C2
  wait $PPID2; wait $FPID
  echo "   $(cat "$W/flood-$kind.out")"
  echo "   throughput during: $(tail -1 "$W/push-$kind.out")"
  echo "   new client served: $(cat "$W/get-$kind.out") (from client start: $(echo "$t1 - $t0" | bc) s)"
  echo "   after: server $(mem)"; echo "   after: $(opens)"
  sleep 2
done
echo "-- throughput after the floods:"; $H push --connect $CLI --secs 5 | tail -1

# Replay: one request through a recording relay, then that session's datagrams from 100 new ports.
"$B/kcpbench" relay --listen $RLY --to $SRV --record "$W/session.rec" >"$W/relay.out" 2>&1 & PIDS+=($!)
sleep 0.3
"$B/tunnel-client" -l $CLI3 -r $RLY "${CFLAGS[@]}" --quiet >"$W/client3.out" 2>&1 & C3=$!; PIDS+=($C3)
sleep 0.5
r0=$(requests)
$H get --connect $CLI3
sleep 1
kill $C3
r1=$(requests)
n=$(python3 -c "import sys; d=open(sys.argv[1],'rb').read(); i=c=0
while i+4<=len(d): i+=4+int.from_bytes(d[i:i+4],'little'); c+=1
print(c)" "$W/session.rec")
echo "-- replay: recorded $n datagrams carrying $((r1 - r0)) request(s); replaying them 100 times from 100 new ports"
"$B/kcpbench" flood --target $SRV --kind replay --file "$W/session.rec" --count $((n * 100)) --rate 20000 --ports 100 --quiet
sleep 3
r2=$(requests)
echo "   requests at the target: $r1 before the replay, $r2 after: $((r2 - r1)) re-executed"
echo "   server $(mem)"; echo "   $(opens)"
