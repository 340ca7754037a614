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
"""

from __future__ import annotations

import logging

from wshub.logs import redact_headers, redact_query
from wshub.middleware.base import CloseInfo, Next, Request, Response
from wshub.middleware.clientip import get_header

__all__ = ["AccessLog"]


class AccessLog:
    """Access-log middleware (see the module docstring)."""

    def __init__(self, logger: logging.Logger | None = None, *, log_headers: bool = False) -> None:
        self.log = logger or logging.getLogger("wshub.access")
        self.log_headers = log_headers

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

    def _rejected(self, request: Request, status: int, error: str) -> None:
        level = logging.WARNING if status >= 500 else logging.INFO
        if not self.log.isEnabledFor(level):
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
        self.log.log(level, "upgrade_rejected", extra=extra)


def _user(request: Request) -> str:
    user = request.state.get("user", "")
    return user if isinstance(user, str) else str(user)
