"""Print an HS256 connection token for the benchmark gateway (benchmarks/gateway.toml)."""

import sys
import time

import jwt

secret = sys.argv[1] if len(sys.argv) > 1 else "wshub-bench-secret-for-hs256-tokens-0123456789"
print(jwt.encode({"sub": "bench", "exp": int(time.time()) + 7 * 86400}, secret, algorithm="HS256"))
