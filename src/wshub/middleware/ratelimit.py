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
import time
from collections import OrderedDict
from collections.abc import Callable

from wshub.middleware.base import Next, Request, Response, reject
from wshub.protocol.tokenbucket import TokenBucket

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
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        """IPs currently tracked."""
        return len(self._buckets)

    def take(self, ip: str) -> float:
        """Take a token for ``ip``: 0.0 if allowed, else the seconds until one is available.

        Runs in the accept path on the event loop's thread: no lock needed."""
        now = self._clock()
        buckets = self._buckets
        for _ in range(2):  # opportunistic cleanup of refilled buckets
            if not buckets:
                break
            oldest_ip, oldest = next(iter(buckets.items()))
            if oldest_ip == ip or oldest.level(now) < self.burst:
                break
            buckets.popitem(last=False)
        bucket = buckets.get(ip)
        if bucket is None:
            bucket = buckets[ip] = TokenBucket(self.rate, self.burst, now)
            while len(buckets) > self._max_ips:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(ip)
        if bucket.take(now):
            return 0.0
        return bucket.wait_time()

    def __call__(self, request: Request, call_next: Next) -> Response | None:
        wait = self.take(request.client_ip)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            return reject(
                429, "rate_limited", "too many connection attempts", Retry_After=str(retry)
            )
        return call_next(request)
