"""Raw routes: user code gets a connection to iterate for messages and send on.

Inbound messages wait in a small queue; when it fills, reading from the socket pauses (TCP
backpressure) until the handler catches up, so a flood cannot grow memory. The handler runs
in one task per connection, owned here and cancelled when the connection closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from wshub.codes import CLOSE_INTERNAL_ERROR, Disconnect, WSClose
from wshub.middleware.base import Request
from wshub.transport.connection import Connection

log = logging.getLogger("wshub.raw")

_QUEUE_HIGH = 64
_QUEUE_LOW = 16


class ConnectionClosed(Exception):
    """Raised by ``recv`` once the connection has closed."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed: {code} {reason}")
        self.code = code
        self.reason = reason


class RawConnection:
    """A raw WebSocket connection as a route handler sees it."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._queue: deque[str | bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed: ConnectionClosed | None = None

    @property
    def id(self) -> str:
        return self._conn.id

    @property
    def request(self) -> Request:
        return self._conn.request

    @property
    def state(self) -> dict[str, Any]:
        """Values the middleware attached (``user``, ``claims`` ...)."""
        return self._conn.state

    @property
    def subprotocol(self) -> str | None:
        """The Sec-WebSocket-Protocol value selected for this connection, if any."""
        value = self._conn.state.get("subprotocol")
        return value if isinstance(value, str) else None

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def send(self, message: str | bytes) -> bool:
        """Queue a message (str → text frame, bytes → binary). Never blocks; returns False
        when the connection is closing. A peer that does not read is closed as slow."""
        if isinstance(message, str):
            return self._conn.send(message.encode())
        return self._conn.send_binary(message)

    async def recv(self) -> str | bytes:
        while not self._queue:
            closed = self._closed
            if closed is not None:
                # a fresh exception each time: raising the stored one would tie its
                # traceback (and this connection) into a reference cycle
                raise ConnectionClosed(closed.code, closed.reason)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        msg = self._queue.popleft()
        if len(self._queue) <= _QUEUE_LOW:
            self._conn.resume_reading()
        return msg

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[str | bytes]:
        while True:
            try:
                yield await self.recv()
            except ConnectionClosed:
                return

    def close(self, code: int = WSClose.NORMAL, reason: str = "") -> None:
        self._conn.close(Disconnect(code, reason))

    # -- fed by the adapter ------------------------------------------------------------

    def _push(self, msg: str | bytes) -> None:
        self._queue.append(msg)
        if len(self._queue) >= _QUEUE_HIGH:
            self._conn.pause_reading()
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _close(self, code: int, reason: str) -> None:
        self._closed = ConnectionClosed(code, reason)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)


class RawRoute:
    """The transport Handler for one raw route: runs ``fn(RawConnection)`` per connection."""

    def __init__(self, fn: Callable[[RawConnection], Awaitable[None]]) -> None:
        self.fn = fn
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, _request: Request) -> RawRoute:
        return self

    def on_open(self, conn: Connection) -> None:
        raw = RawConnection(conn)
        conn.ctx = raw
        task = asyncio.ensure_future(self._run(conn, raw))
        self.tasks.add(task)
        conn.task = task
        task.add_done_callback(self.tasks.discard)

    async def _run(self, conn: Connection, raw: RawConnection) -> None:
        try:
            await self.fn(raw)
        except asyncio.CancelledError:
            raise
        except ConnectionClosed:
            pass
        except Exception:
            log.exception(
                "route handler raised", extra={"conn_id": conn.id, "path": conn.request.path}
            )
            conn.close(CLOSE_INTERNAL_ERROR)
            return
        conn.close(Disconnect(WSClose.NORMAL, ""))

    def on_message(self, conn: Connection, data: bytes, text: bool) -> None:
        raw: RawConnection = conn.ctx
        raw._push(data.decode() if text else data)

    def send_ping(self, conn: Connection) -> None:
        conn.send_ping()

    def on_close(self, conn: Connection, code: int, reason: str) -> None:
        raw: RawConnection | None = conn.ctx
        if raw is not None:
            raw._close(code, reason)
        task = conn.task
        # RawRoute.tasks keeps the task until it ends; the connection must not (a cancelled
        # task's traceback holds the connection: a reference cycle)
        conn.task = None
        if task is not None and not task.done():
            # Give the handler one loop turn to see ConnectionClosed, then cancel it.
            asyncio.get_running_loop().call_soon(task.cancel)
