"""Connection caps: a global limit and a per-client-IP limit on open connections.

Counting rule: only upgrades that go ahead are counted. The middleware reserves a slot
before calling the rest of the chain (so the check and the increment are one atomic step),
and keeps it only if the rest of the chain returned ``None``; a refusal further in (auth,
an ``extra`` middleware) or an exception gives the slot back at once. A kept slot is
released exactly once through ``request.on_close`` when the connection ends (or when the
transport fails the upgrade after the chain passed it).

Over a cap: 503 ``over_capacity`` with ``Retry-After`` (``retry_after`` seconds).

``total`` and ``count(ip)`` / ``snapshot()`` expose the counters for metrics and tests.
"""

from __future__ import annotations

import threading

from wshub.middleware.base import CloseInfo, Next, Request, Response, reject

__all__ = ["ConnectionCaps"]


class ConnectionCaps:
    """Global and per-IP open-connection caps (0 disables either); see the module docstring."""

    def __init__(
        self, max_connections: int = 0, max_per_ip: int = 0, *, retry_after: int = 5
    ) -> None:
        self.max_connections = max(0, max_connections)
        self.max_per_ip = max(0, max_per_ip)
        self.retry_after = max(1, int(retry_after))
        self._total = 0
        self._per_ip: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        """Connections currently counted."""
        return self._total

    def count(self, ip: str) -> int:
        """Connections currently counted for ``ip``."""
        return self._per_ip.get(ip, 0)

    def snapshot(self) -> dict[str, int]:
        """A copy of the per-IP counters (IPs with at least one connection)."""
        with self._lock:
            return dict(self._per_ip)

    def _acquire(self, ip: str) -> bool:
        with self._lock:
            if self.max_connections and self._total >= self.max_connections:
                return False
            n = self._per_ip.get(ip, 0)
            if self.max_per_ip and n >= self.max_per_ip:
                return False
            self._total += 1
            self._per_ip[ip] = n + 1
            return True

    def _release(self, ip: str) -> None:
        with self._lock:
            self._total -= 1
            n = self._per_ip.get(ip, 0) - 1
            if n > 0:
                self._per_ip[ip] = n
            else:
                self._per_ip.pop(ip, None)

    def __call__(self, request: Request, call_next: Next) -> Response | None:
        ip = request.client_ip
        if not self._acquire(ip):
            return reject(
                503, "over_capacity", "too many connections", Retry_After=str(self.retry_after)
            )
        try:
            result = call_next(request)
        except BaseException:
            self._release(ip)
            raise
        if result is not None:
            self._release(ip)
            return result
        released = False

        def release(_info: CloseInfo) -> None:
            nonlocal released
            if not released:
                released = True
                self._release(ip)

        request.on_close(release)
        return None
