#!/usr/bin/env bash
# Regenerates benches/RESULTS.md: every row of the benchmark issue's target table, measured side by side
# (rkcp, kcp-go, kernel TCP) in the same runs, plus the criterion baseline table and the plots.
#
#   sudo benches/results.sh            # everything (≈15 min): loopback, lossy link, bulk link, 10,000 sessions
#   ONLY="loopback sessions" benches/results.sh   # a subset (keeps the other JSON files of the last run)
#
# Needs root for the emulated links: two network namespaces, kra (10.77.0.1) and krb (10.77.0.2), joined by a
# veth pair whose both ends get a `tc netem` qdisc (the kernel's sch_netem module). On a kernel without netem,
# set LINK_EMULATOR to a user-space emulator command that creates the same two namespaces and addresses from
# the flags `--prefix kr --delay D [--loss P] [--rate MBIT] [--queue BYTES]`, prints a line containing "ready"
# once the link is up, and removes the namespaces when it exits. The kcp-go column needs golang-go
# golang-github-xtaci-kcp-dev golang-github-xtaci-smux-dev; without them those rows say "skipped". Run it on a
# quiet machine: the tables are only as good as the machine is idle.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=benches/results
mkdir -p "$out"
logs=$(mktemp -d) # link emulator and server logs
only=${ONLY:-loopback lossy bulk sessions}
cargo build -q --release -p kcpbench
K=${CARGO_TARGET_DIR:-$root/target}/release/kcpbench
emulator=${LINK_EMULATOR:-}
go_flag=off
# Builds the Go peer (kcpbench-go) next to kcpbench when Go and the xtaci packages are installed.
"$K" latency --quiet --go auto --count 2 --period 1ms --transport kcp --mode fast3 > /dev/null 2>&1 || true

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pids=()
  sleep 1
  if [ -z "$emulator" ]; then ip netns del kra 2>/dev/null || true; ip netns del krb 2>/dev/null || true; fi
}
trap cleanup EXIT

# The netem link: --delay D --loss FRACTION [--rate MBIT --queue BYTES], the same on both directions.
netem_up() {
  local delay= loss=0 rate= queue=
  while [ $# -gt 0 ]; do
    case $1 in
    --delay) delay=$2 ;; --loss) loss=$2 ;; --rate) rate=$2 ;; --queue) queue=$2 ;;
    *) echo "netem_up: unknown flag $1" >&2; exit 1 ;;
    esac
    shift 2
  done
  ip netns add kra
  ip netns add krb
  ip link add krva netns kra type veth peer name krvb netns krb
  ip -n kra addr add 10.77.0.1/24 dev krva
  ip -n krb addr add 10.77.0.2/24 dev krvb
  for ns in kra krb; do ip -n $ns link set lo up; done
  ip -n kra link set krva up
  ip -n krb link set krvb up
  local args=(delay "$delay" loss "$(awk -v l="$loss" 'BEGIN { printf "%g%%", l * 100 }')")
  # netem's limit counts packets: the queue in bytes over a 1500-byte MTU.
  [ -n "$rate" ] && args+=(rate "${rate}mbit" limit "$(( ${queue:-1000000} / 1500 ))")
  ip netns exec kra tc qdisc add dev krva root netem "${args[@]}"
  ip netns exec krb tc qdisc add dev krvb root netem "${args[@]}"
}

# Starts the emulated link with the given flags, and kcpbench + kcpbench-go servers in its B namespace.
link_up() {
  if [ -n "$emulator" ]; then
    $emulator --prefix kr "$@" > "$logs/link.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do grep -q ready "$logs/link.log" && break; sleep 0.2; done
  else
    netem_up "$@"
  fi
  ip netns exec krb "$K" serve --listen 10.77.0.2:7000 > "$logs/serve.log" 2>&1 &
  pids+=($!)
  go_flag=off
  gobin=$(dirname "$K")/kcpbench-go
  if [ -x "$gobin" ]; then
    ip netns exec krb "$gobin" serve --listen 10.77.0.2:7001 > "$logs/serve-go.log" 2>&1 &
    pids+=($!)
    go_flag=10.77.0.2:7001
  fi
  sleep 1
}

run() { echo "== kcpbench $*" >&2; "$@"; }

for s in $only; do
  case $s in
  loopback)
    # Rows 1, 2 and 6: one smux stream over KCP (fast3, wnd 1024, plain and aes + FEC 10/3) and smux over TCP.
    run "$K" throughput --quiet --transport smux-kcp,tcp,smux-tcp --mode fast3 --sndwnd 1024 --rcvwnd 1024 \
      --crypt none,aes --fec 0/0,10/3 --op oneway --bytes 256MiB --json "$out/loopback.json"
    ;;
  lossy)
    # Row 3: 30 ms each way, 10 % loss each way; 64 B every 20 ms echoed, 500 messages. fast3, and fast3 with
    # FEC 1/2 (every datagram sent three times: what a latency-bound user of the stack would pick).
    link_up --delay 30ms --loss 0.1
    run ip netns exec kra "$K" latency --quiet --connect 10.77.0.2:7000 --go "$go_flag" --transport kcp,tcp \
      --mode fast3 --fec 0/0,1/2 --size 64 --period 20ms --count 500 --json "$out/lossy.json"
    cleanup
    ;;
  bulk)
    # Row 4: 100 Mbit/s, 20 ms each way, 1 % loss, 1 MB queue; one-way. kcptun's fast3 as is (with the kcp-go
    # column), then rkcp with windows above the path's capacity and the in-flight cap near BDP + queue.
    link_up --delay 20ms --loss 0.01 --rate 100 --queue 1000000
    run ip netns exec kra "$K" throughput --quiet --connect 10.77.0.2:7000 --go "$go_flag" \
      --transport smux-kcp,tcp,smux-tcp --mode fast3 --op oneway --bytes 64MiB --json "$out/bulk.json"
    run ip netns exec kra "$K" throughput --quiet --connect 10.77.0.2:7000 --go off --transport smux-kcp \
      --mode fast3 --crypt plain --mtu 1400 --sndwnd 4096 --rcvwnd 4096 --inflight 450 --op oneway \
      --bytes 64MiB --json "$out/bulk-inflight.json"
    cleanup
    ;;
  sessions)
    # Row 5: 10,000 sessions × 16 B/s (kcptun's default mode, fast); kcp-go with 5,000 as in the reference.
    run "$K" sessions --quiet --sessions 10000 --go-sessions 5000 --secs 20 --size 16 --rate 1 --mode fast \
      --json "$out/sessions.json"
    ;;
  esac
done

files=()
for f in loopback lossy bulk bulk-inflight sessions; do [ -f "$out/$f.json" ] && files+=("$out/$f.json"); done
"$K" render "${files[@]}" --markdown "$out/report.md" --plots "$out/plots" > /dev/null
{
  echo "# Benchmark results"
  echo
  echo "Regenerated by \`sudo benches/results.sh\` ($(date -u +%Y-%m-%d)). Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, Linux $(uname -r)."
  echo
  [ -f benches/results-targets.md ] && cat benches/results-targets.md && echo
  echo "## Per-layer criterion benches"
  echo
  if [ -d benches/baselines/main ]; then
    echo "Committed baseline \`main\` (\`benches/criterion.sh save\`; compare with \`benches/criterion.sh compare\`):"
    echo
    cargo run -q --release -p kcpbench --bin criterion-table -- benches/baselines/main
  else
    echo "No committed baseline: run \`benches/criterion.sh save\`."
  fi
  echo
  # The rendered report: its image links are relative to benches/results/.
  sed -e 's#](plots/#](results/plots/#g' -e 's/^# kcpbench results/## End-to-end (kcpbench)/' "$out/report.md"
  # Measured by hand with benches/hostile.sh (not rerun here): kept across regenerations.
  [ -f benches/results-hostile.md ] && echo && cat benches/results-hostile.md
} > benches/RESULTS.md
echo "wrote benches/RESULTS.md" >&2
