"""The pre-upgrade chain: plain callables stacked like an onion.

A middleware is ``(request, call_next) -> Response | None``. Returning a Response refuses
the upgrade with that plain HTTP response (never a 101); returning ``call_next(request)``
passes on. ``None`` at the end of the chain means "upgrade". Middleware may attach values to
``request.state`` (``user``, ``claims`` ...): the connection carries them afterwards.

The chain is synchronous on purpose: it runs inside the server's accept path for every
upgrade, before any task exists for the connection. Checks that need I/O belong in the
hub's ``on_connecting`` handler, which runs after the upgrade on the worker pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson


@dataclass(slots=True)
class CloseInfo:
    """What the access log and the caps learn when a connection ends."""

    conn_id: str
    code: int
    reason: str
    duration: float
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int


class Request:
    """An upgrade request as the middleware sees it.

    ``headers`` is case-insensitive. ``client_ip`` is the peer address, or the
    X-Forwarded-For address when the peer is a configured trusted proxy (the transport
    resolves it once).
    """

    __slots__ = (
        "_close_callbacks",
        "_query",
        "client_ip",
        "conn_id",
        "headers",
        "method",
        "path",
        "peer_ip",
        "query_string",
        "state",
    )

    def __init__(
        self,
        *,
        method: str,
        path: str,
        query_string: str,
        headers: Mapping[str, str],
        peer_ip: str,
        client_ip: str | None = None,
        conn_id: str = "",
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.peer_ip = peer_ip
        self.client_ip = client_ip or peer_ip
        self.conn_id = conn_id
        self.state: dict[str, Any] = {}
        self._query: dict[str, str] | None = None
        self._close_callbacks: list[Callable[[CloseInfo], None]] = []

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (the first value of each name)."""
        if self._query is None:
            q: dict[str, str] = {}
            for k, v in parse_qsl(self.query_string, keep_blank_values=True):
                q.setdefault(k, v)
            self._query = q
        return self._query

    def on_close(self, callback: Callable[[CloseInfo], None]) -> None:
        """Call ``callback`` once when the upgraded connection ends (or the upgrade fails
        after this middleware passed it on)."""
        self._close_callbacks.append(callback)

    def run_close_callbacks(self, info: CloseInfo) -> None:
        callbacks, self._close_callbacks = self._close_callbacks, []
        for cb in reversed(callbacks):
            cb(info)


@dataclass(slots=True)
class Response:
    """A refusal: status, JSON body and extra headers."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body)


def reject(status: int, error: str, message: str = "", **headers: str) -> Response:
    """The standard JSON refusal body: ``{"error": <slug>, "message": <text>}``."""
    body: dict[str, Any] = {"error": error}
    if message:
        body["message"] = message
    return Response(status, body, {k.replace("_", "-"): v for k, v in headers.items()})


Next = Callable[[Request], Response | None]
Middleware = Callable[[Request, Next], Response | None]


def _end(_request: Request) -> Response | None:
    return None


def build_chain(middlewares: Iterable[Middleware]) -> Next:
    """Compose middlewares, first one outermost, into one callable."""
    handler: Next = _end
    for mw in reversed(list(middlewares)):
        handler = _bind(mw, handler)
    return handler


def _bind(mw: Middleware, nxt: Next) -> Next:
    def call(request: Request) -> Response | None:
        return mw(request, nxt)

    return call
