"""Per-client-IP upgrade rate limit: a token bucket per ``request.client_ip``.

Each IP has a bucket of ``burst`` tokens refilled at ``rate`` per second; every upgrade
attempt takes one (attempts that later fail authentication count too: that is what makes
the limit a brake on token guessing). An empty bucket refuses with 429 ``rate_limited`` and
``Retry-After``: the whole seconds (at least 1) until the bucket holds a token again.

Memory is bounded: buckets live in an LRU (``OrderedDict``) capped at ``max_ips``; the
least recently seen IPs are dropped first when full, and a couple of the oldest entries are
checked on every call and dropped once refilled (a full bucket is the same as no entry).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from wshub.middleware.base import Next, Request, Response, reject

__all__ = ["RateLimit"]


class RateLimit:
    """Token-bucket upgrade limiter keyed by client IP (see the module docstring)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_ips: int = 100_000,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(max(1, burst))
        self._clock = clock
        self._max_ips = max(1, max_ips)
        # ip -> [tokens, last refill time]
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """IPs currently tracked."""
        return len(self._buckets)

    def _tokens_at(self, bucket: list[float], now: float) -> float:
        return min(self.burst, bucket[0] + max(0.0, now - bucket[1]) * self.rate)

    def take(self, ip: str) -> float:
        """Take a token for ``ip``: 0.0 if allowed, else the seconds until one is available."""
        with self._lock:
            now = self._clock()
            buckets = self._buckets
            for _ in range(2):  # opportunistic cleanup of refilled buckets
                if not buckets:
                    break
                oldest_ip, oldest = next(iter(buckets.items()))
                if oldest_ip == ip or self._tokens_at(oldest, now) < self.burst:
                    break
                buckets.popitem(last=False)
            bucket = buckets.get(ip)
            if bucket is None:
                bucket = [self.burst, now]
                buckets[ip] = bucket
                while len(buckets) > self._max_ips:
                    buckets.popitem(last=False)
            else:
                buckets.move_to_end(ip)
                bucket[0] = self._tokens_at(bucket, now)
                bucket[1] = now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return 0.0
            return (1.0 - bucket[0]) / self.rate

    def __call__(self, request: Request, call_next: Next) -> Response | None:
        wait = self.take(request.client_ip)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            return reject(
                429, "rate_limited", "too many connection attempts", Retry_After=str(retry)
            )
        return call_next(request)
