#!/usr/bin/env bash
# Regenerates benches/RESULTS.md: every row of the benchmark issue's target table, measured side by side
# (rkcp, kcp-go, kernel TCP) in the same runs, plus the criterion baseline table and the plots.
#
#   sudo benches/results.sh            # everything (≈35 min, of which ≈15 are TCP CUBIC at 1-10 % loss, about
#                                      # 0.1-0.4 MB/s there): loopback, lossy link, bulk link, lossy bulk sweep,
#                                      # 10,000 sessions, the simulated latency table
#   ONLY=lossybulk LOSSES=0.05 BULK_BYTES=8MiB benches/results.sh   # one loss level, quickly
#   ONLY="loopback sessions" benches/results.sh   # a subset (keeps the other JSON files of the last run)
#
# Sections (ONLY takes any of them; default: all, in this order):
#   loopback    rows 1, 2, 6: one stream over smux/KCP, TCP, smux/TCP on 127.0.0.1
#   lossy       row 3: 30 ms / 10 % loss each way, 64 B every 20 ms echoed: rkcp and kcp-go fast3 (no FEC, FEC
#               1/2), TCP per congestion control ($TCP_CCS), then rkcp-only rows: adaptive FEC (--fec auto),
#               and $RKCP_LOSSY_OPTS without FEC and with --fec auto
#   bulk        row 4: 100 Mbit/s, 20 ms each way, 1 % loss, 1 MB queue; smux/KCP vs TCP vs kcp-go
#   lossybulk   issue 14: the same bulk link at each loss of $LOSSES: TCP per congestion control ($TCP_CCS),
#               kcp-go fast3, rkcp fast3, rkcp --cc tolerant and --cc rate (windows 4096), $BULK_BYTES one-way
#               each, with wire ÷ payload and the sender's queue delay; one table per loss
#   sessions    row 5: 10,000 sessions × 16 B/s
#   simtable    the rkcp-engine latency_table example (deterministic simulation), appended as text
#
# Knobs (environment): TCP_CCS (default bbr,cubic: one TCP row per algorithm, set per socket with
# TCP_CONGESTION, so it works inside the namespaces where the sysctl is refused; see
# /proc/sys/net/ipv4/tcp_available_congestion_control), LOSSES (default "0 0.01 0.05 0.1"), BULK_BYTES
# (default 32MiB), BULK_TIMEOUT (default 600s: the longest one lossybulk row may take; TCP CUBIC needs minutes
# for 32 MiB at 5-10 % loss, about 0.1-0.2 MB/s), RKCP_LOSSY_OPTS (kcpbench flags of the extra rkcp lossy-latency rows, default
# "--rack --tlp --bundle": time-based loss detection, tail loss probes and redundant bundling of a thin stream's
# unacknowledged segments, the engine options for latency on lossy links; empty: no such rows).
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
only=${ONLY:-loopback lossy bulk lossybulk sessions simtable}
tcp_ccs=${TCP_CCS-bbr,cubic}
losses=${LOSSES:-0 0.01 0.05 0.1}
bulk_bytes=${BULK_BYTES:-32MiB}
bulk_timeout=${BULK_TIMEOUT:-600s}
rkcp_lossy_opts=${RKCP_LOSSY_OPTS---rack --tlp --bundle}
# "1" for 0.01: the loss in percent, for labels and file names.
pct() { awk -v l="$1" 'BEGIN { printf "%g", l * 100 }'; }
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
    if ! grep -q ready "$logs/link.log"; then
      echo "LINK_EMULATOR did not say ready within 10 s:" >&2
      cat "$logs/link.log" >&2
      exit 1
    fi
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
    # TCP once per congestion control. Then rkcp-only rows (no kcp-go twin): adaptive FEC, and the options
    # meant for random loss ($RKCP_LOSSY_OPTS) without FEC and with adaptive FEC.
    link_up --delay 30ms --loss 0.1
    run ip netns exec kra "$K" latency --quiet --connect 10.77.0.2:7000 --go "$go_flag" --transport kcp,tcp \
      --tcp-cc "$tcp_ccs" --mode fast3 --fec 0/0,1/2 --size 64 --period 20ms --count 500 --json "$out/lossy.json"
    run ip netns exec kra "$K" latency --quiet --connect 10.77.0.2:7000 --go off --transport kcp \
      --mode fast3 --fec auto --size 64 --period 20ms --count 500 --json "$out/lossy-auto.json"
    rm -f "$out/lossy-opts.json"
    if [ -n "$rkcp_lossy_opts" ]; then
      # shellcheck disable=SC2086 # a list of flags
      run ip netns exec kra "$K" latency --quiet --connect 10.77.0.2:7000 --go off --transport kcp \
        --mode fast3 $rkcp_lossy_opts --fec 0/0,auto --size 64 --period 20ms --count 500 \
        --json "$out/lossy-opts.json"
    fi
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
  lossybulk)
    # Issue 14: bulk over the 100 Mbit/s link at each loss; one table per loss (--scenario), every row one-way
    # $BULK_BYTES. TCP per congestion control and kcp-go fast3 beside rkcp fast3 (one run), then rkcp with the
    # loss-tolerant window and with the delivery-rate controller, windows above the path's capacity.
    for loss in $losses; do
      p=$(pct "$loss")
      scen="bulk link, $p % loss"
      link_up --delay 20ms --loss "$loss" --rate 100 --queue 1000000
      run ip netns exec kra "$K" throughput --quiet --connect 10.77.0.2:7000 --go "$go_flag" \
        --transport tcp,kcp --tcp-cc "$tcp_ccs" --mode fast3 --op oneway --bytes "$bulk_bytes" \
        --timeout "$bulk_timeout" --scenario "$scen" --json "$out/lossybulk-$p.json"
      for cc in tolerant rate; do
        run ip netns exec kra "$K" throughput --quiet --connect 10.77.0.2:7000 --go off --transport kcp \
          --mode fast3 --cc $cc --sndwnd 4096 --rcvwnd 4096 --op oneway --bytes "$bulk_bytes" \
          --scenario "$scen" --json "$out/lossybulk-$p-$cc.json"
      done
      cleanup
    done
    ;;
  simtable)
    # The deterministic simulation of the classic KCP latency table (no link, no root needed).
    cargo run -q --release -p rkcp-engine --example latency_table > "$out/latency_table.txt"
    ;;
  sessions)
    # Row 5: 10,000 sessions × 16 B/s (kcptun's default mode, fast); kcp-go with 5,000 as in the reference.
    run "$K" sessions --quiet --sessions 10000 --go-sessions 5000 --secs 20 --size 16 --rate 1 --mode fast \
      --json "$out/sessions.json"
    ;;
  esac
done

# The lossybulk rows side by side, one line per loss (needs jq; without it the per-loss tables above stand alone).
lossybulk_summary() {
  command -v jq > /dev/null || return 0
  local per=() loss p f
  for loss in $losses; do
    p=$(pct "$loss")
    f=()
    for n in "lossybulk-$p" "lossybulk-$p-tolerant" "lossybulk-$p-rate"; do
      [ -f "$out/$n.json" ] && f+=("$out/$n.json")
    done
    [ ${#f[@]} -gt 0 ] && per+=("$(jq -c -s --argjson loss "$loss" '{loss: $loss, rows: [.[].rows[]]}' "${f[@]}")")
  done
  [ ${#per[@]} -gt 0 ] || return 0
  echo
  echo "## Lossy bulk at a glance (issue 14)"
  echo
  echo "MB/s (wire ÷ payload, queue delay in ms) of each row of the per-loss tables above (their titles give the"
  echo "size sent one-way) over 100 Mbit/s (12.5 MB/s), 20 ms each way, 1 MB queue. Targets for rkcp: ≥ TCP BBR of the same run,"
  echo "≥ 0.9 × (1 − loss) × 12.5 MB/s, wire ÷ payload ≤ 1/(1 − loss) + 0.1; at 0 % loss ≥ 11.25 MB/s with a"
  echo "queue delay under 10 ms."
  echo
  printf '%s\n' "${per[@]}" | jq -r -s '
    def r1: (. * 10 | round) as $x | "\($x / 10 | floor).\($x % 10)";
    def r3: (. * 1000 | round) as $x | "\($x / 1000 | floor).\("00\($x % 1000)" | .[-3:])";
    def name: if .implementation == "tcp" then .label
              else .implementation + " " + (.label | sub("^kcp "; "") | sub(" wnd 4096/4096"; "")) end;
    def cell: .result as $m
      | if $m.kind == "throughput" then
          ($m.bytes / $m.secs / 1e6 | r1)
          + (if $m.wire_bytes or $m.queue_delay_ms then
               " (" + ([(if $m.wire_bytes then ($m.wire_bytes / $m.bytes | r3) else empty end),
                        (if $m.queue_delay_ms then ($m.queue_delay_ms | r1) + " ms" else empty end)]
                       | join(", ")) + ")"
             else "" end)
        elif $m.kind == "skipped" then "skipped"
        elif ($m.error // "" | test("timed out")) then "timed out" else "failed" end;
    ([.[].rows[] | name] | reduce .[] as $n ([]; if index([$n]) then . else . + [$n] end)) as $cols
    | "| loss | " + ($cols | join(" | ")) + " | target MB/s, wire ÷ payload |",
      "|---|" + ($cols | map("---:") | join("|")) + "|---:|",
      (.[] | . as $l
        | "| " + ($l.loss * 1000 | round / 10 | tostring) + " % | "
          + ($cols | map(. as $c | [$l.rows[] | select(name == $c) | cell] | first // "") | join(" | "))
          + " | " + (0.9 * (1 - $l.loss) * 12.5 | r1) + ", " + (1 / (1 - $l.loss) + 0.1 | r3) + " |")'
}

files=()
names=(loopback lossy lossy-auto lossy-opts bulk bulk-inflight)
for loss in $losses; do
  p=$(pct "$loss")
  names+=("lossybulk-$p" "lossybulk-$p-tolerant" "lossybulk-$p-rate")
done
names+=(sessions)
for f in "${names[@]}"; do [ -f "$out/$f.json" ] && files+=("$out/$f.json"); done
# Every plot is drawn again from the JSON files; numbered by group, so stale ones would linger.
rm -f "$out"/plots/*.png
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
  lossybulk_summary
  if [ -f "$out/latency_table.txt" ]; then
    echo
    echo "## Simulated latency table"
    echo
    echo "\`cargo run --release -p rkcp-engine --example latency_table\` (deterministic: the simulated network of the"
    echo "classic KCP test program, not a measurement of this machine):"
    echo
    echo '```text'
    cat "$out/latency_table.txt"
    echo '```'
  fi
  # Measured by hand with benches/hostile.sh (not rerun here): kept across regenerations.
  [ -f benches/results-hostile.md ] && echo && cat benches/results-hostile.md
} > benches/RESULTS.md
echo "wrote benches/RESULTS.md" >&2
