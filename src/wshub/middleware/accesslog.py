"""Access log: one JSON line per connection open, close and refused upgrade.

Logger ``wshub.access``; the ``event`` field is one of

* ``connection_open``  - the chain passed the upgrade: id, ip, path, query, user, origin,
  user_agent (and the headers, if ``log_headers``);
* ``connection_close`` - via ``request.on_close``: id, ip, path, user, duration (seconds),
  code, reason, messages_in/out, bytes_in/out;
* ``upgrade_rejected`` - a middleware further in refused: id, ip, path, query, status,
  error (the slug) - or raised, logged as status 500 ``internal_error`` before the
  exception continues to :class:`~wshub.middleware.recover.Recover`.

Query strings go through :func:`wshub.logs.redact_query`, headers through
:func:`wshub.logs.redact_headers`; the JSON formatter scrubs JWTs on top.

Refusals are the one event a client can cause without limit (a flood of upgrades over the
cap, token guessing), so their lines are rate-limited per (status, error): a burst of
``rejected_burst`` lines, then ``rejected_rate`` per second. The next line logged after
some were dropped carries ``suppressed``, how many. (The rejection metric counts them all.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from wshub.logs import redact_headers, redact_query
from wshub.middleware.base import CloseInfo, Next, Request, Response
from wshub.middleware.clientip import get_header

__all__ = ["AccessLog"]


class AccessLog:
    """Access-log middleware (see the module docstring)."""

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        log_headers: bool = False,
        rejected_rate: float = 5.0,
        rejected_burst: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = logger or logging.getLogger("wshub.access")
        self.log_headers = log_headers
        self._rate = rejected_rate
        self._burst = float(max(1, rejected_burst))
        self._clock = clock
        # (status, error) -> [tokens, last refill, suppressed since the last line]
        self._budget: dict[tuple[int, str], list[float]] = {}
        self._lock = threading.Lock()

    def __call__(self, request: Request, call_next: Next) -> Response | None:
        try:
            result = call_next(request)
        except Exception:
            self._rejected(request, 500, "internal_error")
            raise
        if result is not None:
            error = result.body.get("error", "")
            self._rejected(request, result.status, error if isinstance(error, str) else "")
            return result
        self._opened(request)
        log = self.log
        if not log.isEnabledFor(logging.INFO):
            return None  # nothing to write at close either: no callback per connection

        def closed(info: CloseInfo) -> None:
            log.info(
                "connection_close",
                extra={
                    "event": "connection_close",
                    "id": info.conn_id or request.conn_id,
                    "ip": request.client_ip,
                    "path": request.path,
                    "user": _user(request),
                    "duration": round(info.duration, 3),
                    "code": info.code,
                    "reason": info.reason,
                    "messages_in": info.messages_in,
                    "messages_out": info.messages_out,
                    "bytes_in": info.bytes_in,
                    "bytes_out": info.bytes_out,
                },
            )

        request.on_close(closed)
        return None

    def _opened(self, request: Request) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        extra: dict[str, object] = {
            "event": "connection_open",
            "id": request.conn_id,
            "ip": request.client_ip,
            "path": request.path,
            "query": redact_query(request.query_string),
            "user": _user(request),
            "origin": get_header(request.headers, "Origin") or "",
            "user_agent": get_header(request.headers, "User-Agent") or "",
        }
        if request.peer_ip != request.client_ip:
            extra["peer"] = request.peer_ip
        if self.log_headers:
            extra["headers"] = redact_headers(request.headers)
        self.log.info("connection_open", extra=extra)

    def _admit(self, status: int, error: str) -> int:
        """-1 to drop this refusal's line, else how many similar ones were dropped."""
        with self._lock:
            key = (status, error)
            b = self._budget.get(key)
            if b is None:
                if len(self._budget) >= _MAX_KINDS:  # slugs from app middleware: bounded
                    key = (status, "_other")
                    b = self._budget.get(key)
                if b is None:
                    b = self._budget[key] = [self._burst, self._clock(), 0.0]
            now = self._clock()
            b[0] = min(self._burst, b[0] + (now - b[1]) * self._rate)
            b[1] = now
            if b[0] < 1.0:
                b[2] += 1
                return -1
            b[0] -= 1.0
            dropped, b[2] = int(b[2]), 0.0
            return dropped

    def _rejected(self, request: Request, status: int, error: str) -> None:
        level = logging.WARNING if status >= 500 else logging.INFO
        if not self.log.isEnabledFor(level):
            return
        suppressed = self._admit(status, error)
        if suppressed < 0:
            return
        extra: dict[str, object] = {
            "event": "upgrade_rejected",
            "id": request.conn_id,
            "ip": request.client_ip,
            "path": request.path,
            "query": redact_query(request.query_string),
            "status": status,
            "error": error,
            "origin": get_header(request.headers, "Origin") or "",
            "user_agent": get_header(request.headers, "User-Agent") or "",
        }
        if self.log_headers:
            extra["headers"] = redact_headers(request.headers)
        if suppressed:
            extra["suppressed"] = suppressed
        self.log.log(level, "upgrade_rejected", extra=extra)


_MAX_KINDS = 64


def _user(request: Request) -> str:
    user = request.state.get("user", "")
    return user if isinstance(user, str) else str(user)
