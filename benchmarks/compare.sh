#!/usr/bin/env bash
# Runs the shared yardstick (Go/Gin/gorilla reference vs wshub) with the example app.
#   ROUNDS=3 benchmarks/compare.sh            # gin and wshub, interleaved
# Extra arguments name the targets (gin, picows, product). Output: one line per scenario.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
bench=${BENCH_DIR:-$repo/../shared/bench}
py=${PY:-$repo/.venv/bin/python}
export PRODUCT_CMD="$repo/.venv/bin/wshub serve --config $here/gateway.toml"
export PRODUCT_URL="ws://127.0.0.1:8000/connection/websocket"
export PRODUCT_TOKEN=$("$py" "$here/make_token.py")
export PY=$py
[ $# -eq 0 ] && set -- gin product
exec "$bench/compare.sh" "$@"
