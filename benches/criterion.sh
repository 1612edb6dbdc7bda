#!/usr/bin/env bash
# The per-layer criterion benches, with baselines kept in the repository so a regression shows.
#
#   benches/criterion.sh save [NAME]      run every per-layer bench, save the results as criterion baseline NAME
#                                          (default: main) and copy them into benches/baselines/NAME/ (commit it)
#   benches/criterion.sh compare [NAME]   put the committed baseline NAME back under target/criterion and run every
#                                          bench against it: criterion prints "Performance has regressed." (or
#                                          "improved") for each bench that moved beyond its noise threshold
#   benches/criterion.sh table [NAME]     markdown table of the committed baseline (used by benches/RESULTS.md)
#
# Quick runs: CRITERION_ARGS="--warm-up-time 1 --measurement-time 3" (the default below); pass
# CRITERION_ARGS="" for criterion's own defaults. A subset: BENCHES="rkcp-engine:engine rkcp-fec:fec".
# Baselines are machine-specific: compare on the machine that saved them (benches/RESULTS.md says which).
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-}
name=${2:-main}
target=${CARGO_TARGET_DIR:-target}
args=${CRITERION_ARGS---warm-up-time 1 --measurement-time 3}
benches=${BENCHES:-rkcp-engine:engine rkcp-fec:fec rkcp-crypt:crypt rkcp-smux:smux rkcp-session:loopback}
store=benches/baselines/$name

run_all() {
  for b in $benches; do
    echo "== cargo bench -p ${b%%:*} --bench ${b#*:} -- $* $args" >&2
    # shellcheck disable=SC2086
    cargo bench -q -p "${b%%:*}" --bench "${b#*:}" -- "$@" $args
  done
}

case "$cmd" in
  save)
    run_all --save-baseline "$name"
    rm -rf "$store"
    # target/criterion/<group>/<bench>/<NAME>/*.json → benches/baselines/<NAME>/<group>/<bench>/*.json
    (cd "$target/criterion" && find . -type d -name "$name" -path "*/$name" | while read -r d; do
      dest="$OLDPWD/$store/$(dirname "$d")"
      mkdir -p "$dest" && cp "$d"/*.json "$dest"/
    done)
    cargo run -q -p kcpbench --bin criterion-table -- "$store" > "$store/TABLE.md"
    echo "saved baseline '$name' in $store ($(find "$store" -name estimates.json | wc -l) benches)" >&2
    ;;
  compare)
    [ -d "$store" ] || { echo "no committed baseline $store; run: $0 save $name" >&2; exit 1; }
    (cd "$store" && find . -name estimates.json | while read -r f; do
      d=$(dirname "$f")
      mkdir -p "$OLDPWD/$target/criterion/$d/$name" && cp "$d"/*.json "$OLDPWD/$target/criterion/$d/$name/"
    done)
    run_all --baseline "$name"
    ;;
  table)
    cargo run -q -p kcpbench --bin criterion-table -- "$store"
    ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
