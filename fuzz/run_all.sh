#!/usr/bin/env bash
# Builds every fuzz target with libFuzzer and coverage instrumentation on the stable toolchain, without
# cargo-fuzz, and runs each one for a fixed number of executions (default 10^7), printing the count, the time
# and the outcome per target. See fuzz/README.md.
#
#   fuzz/run_all.sh                          # every target, 10^7 executions each, one after the other
#   RUNS=1000000 fuzz/run_all.sh kcp_input   # some targets, another count
#   MAX_TIME=600 fuzz/run_all.sh             # also stop each target after 600 s (libFuzzer -max_total_time)
#   EXTRA="-max_len=1500" fuzz/run_all.sh    # more libFuzzer flags
#
# Corpora grow in fuzz/corpus/<target>/ (kept between runs), crashes land in fuzz/artifacts/<target>/, logs in
# fuzz/artifacts/<target>.log (all gitignored). The script exits non-zero if any target failed.
set -euo pipefail
cd "$(dirname "$0")"

RUNS=${RUNS:-10000000}
MAX_TIME=${MAX_TIME:-0}
EXTRA=${EXTRA:-}
ALL=(crypt_open fec_decode kcp_input relay_frame session_packet smux_frame)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${ALL[@]}"); fi

# The flags cargo-fuzz passes (`cargo fuzz build -s none`, i.e. without AddressSanitizer, which needs nightly):
# SanitizerCoverage for libFuzzer's feedback, debug assertions and overflow checks on, `--cfg fuzzing`.
# `--target` keeps RUSTFLAGS away from build scripts and proc macros (they cannot link the coverage hooks).
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --locked --release --target "$host" --bins
bin="$CARGO_TARGET_DIR/$host/release"

status=0
printf '%-16s %14s %9s  %s\n' target executions seconds result
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t.log"
  start=$(date +%s)
  rc=0
  # shellcheck disable=SC2086 # EXTRA is a list of flags
  "$bin/$t" "corpus/$t" -runs="$RUNS" -max_total_time="$MAX_TIME" -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" $EXTRA > "$log" 2>&1 || rc=$?
  secs=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "$rc" = 0 ]; then result=clean; else result="FAILED (exit $rc, see $log and artifacts/$t/)"; status=1; fi
  printf '%-16s %14s %9s  %s\n' "$t" "${execs:-?}" "$secs" "$result"
done
exit "$status"
