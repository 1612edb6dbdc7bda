#!/usr/bin/env bash
# Three floods of 3 M sealed starts (1000 ports, 64 source IPs) 15 s apart at one tunnel-server --crypt aes;
# prints its VmRSS/VmHWM (KiB) and SIGUSR1 counters every 5 s (output: tunnel-aes64-3x3M-rss.txt).
W=$(mktemp -d /tmp/hostile-long.XXXXXX)
B=${BIN_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)/target/release}
$B/tunnel-server -l 127.0.0.1:7330 -t 127.0.0.1:7300 --crypt aes --key k --quiet > $W/srvM.out 2>&1 & SP=$!
sleep 0.5
( $B/kcpbench flood --target 127.0.0.1:7330 --kind starts --crypt aes --key k --count 3000000 --rate 100000 --ports 1000 --src-ips 64 --quiet; sleep 15; $B/kcpbench flood --target 127.0.0.1:7330 --kind starts --crypt aes --key k --count 3000000 --rate 100000 --ports 1000 --src-ips 64 --quiet --seed 99; sleep 15; $B/kcpbench flood --target 127.0.0.1:7330 --kind starts --crypt aes --key k --count 3000000 --rate 100000 --ports 1000 --src-ips 64 --quiet --seed 7 ) > $W/floodM.out 2>&1 & FP=$!
i=0
while kill -0 $FP 2>/dev/null; do sleep 5; i=$((i+5)); kill -USR1 $SP; sleep 0.1; echo "t=$i $(awk '/VmRSS|VmHWM/ {printf "%s %d ", $1, $2}' /proc/$SP/status) $(grep 'KCP SNMP' $W/srvM.out | tail -1 | grep -o 'PassiveOpens:[0-9]*\|CurrEstab:[0-9]*' | tr '\n' ' ')"; done
sleep 15; kill -USR1 $SP; sleep 0.1; echo "end+15s $(awk '/VmRSS|VmHWM/ {printf "%s %d ", $1, $2}' /proc/$SP/status) $(grep 'KCP SNMP' $W/srvM.out | tail -1 | grep -o 'PassiveOpens:[0-9]*\|CurrEstab:[0-9]*' | tr '\n' ' ')"
cat $W/floodM.out
kill $SP
