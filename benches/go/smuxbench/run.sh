#!/bin/sh
# Go smux (Debian's golang-github-xtaci-smux-dev, GOPATH mode) on the shapes of rkcp-smux's
# criterion bench plus smux's own BenchmarkConnSmux / BenchmarkConnTCP / BenchmarkAcceptClose.
# The Debian tree is read-only, so the package is copied into a temporary GOPATH.
#   benches/go/smuxbench/run.sh [go test -bench regexp] [extra go test flags...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=${SMUXBENCH_GOPATH:-$(mktemp -d /tmp/smuxbench-gopath.XXXXXX)}
src=/usr/share/gocode/src
if [ ! -d "$tmp/src/github.com/xtaci/smux" ]; then
  mkdir -p "$tmp/src/github.com/xtaci" "$tmp/src/github.com/pkg"
  cp -r "$src/github.com/xtaci/smux" "$tmp/src/github.com/xtaci/"
  [ -d "$src/github.com/pkg/errors" ] && cp -r "$src/github.com/pkg/errors" "$tmp/src/github.com/pkg/"
  chmod -R u+w "$tmp"
fi
cp "$here/rkcp_shapes_test.go" "$tmp/src/github.com/xtaci/smux/"
bench=${1:-.}
[ $# -gt 0 ] && shift
cd "$tmp/src/github.com/xtaci/smux"
GO111MODULE=off GOPATH="$tmp" GOFLAGS= go test -run xxx -bench "$bench" "$@" .
