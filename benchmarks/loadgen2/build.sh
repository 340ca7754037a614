#!/usr/bin/env bash
# Builds loadgen2 (this suite's extra load generator) the same way ../../shared/bench/build.sh
# builds the yardstick: Debian's golang packages, GOPATH mode. Binary: ${BENCH_BIN:-/tmp/wshub-bench/bin}/loadgen2.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${BENCH_BIN:-/tmp/wshub-bench/bin}
if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/github.com/gorilla/websocket ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-github-gorilla-websocket-dev >/dev/null
fi
mkdir -p "$bin"
export GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE=${GOCACHE:-/tmp/wshub-bench/gocache}
(cd "$here" && go build -o "$bin/loadgen2" .)
echo "built: $bin/loadgen2"
