"""The token bucket both limiters use: the per-IP upgrade rate limit and the per-connection
command rate limit. No clock of its own: time is passed in."""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; time is passed in."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now

    def take(self, now: float, n: float = 1.0) -> bool:
        tokens = self.tokens + (now - self.last) * self.rate
        tokens = min(tokens, self.burst)
        self.last = now
        if tokens >= n:
            self.tokens = tokens - n
            return True
        self.tokens = tokens
        return False

    def wait_time(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens are available (after the last ``take``)."""
        missing = n - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def level(self, now: float) -> float:
        """Tokens the bucket would hold at ``now`` (without taking any)."""
        tokens = self.tokens + (now - self.last) * self.rate
        return self.burst if tokens > self.burst else tokens
