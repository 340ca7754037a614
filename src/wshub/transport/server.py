"""The native WebSocket server: routing, the pre-upgrade chain, the registry, shutdown.

picows parses HTTP and frames in C. Each TCP connection gets its own picows protocol whose
listener factory runs here: validate the upgrade, find the route, run the middleware chain
(which may refuse with a plain JSON response, never a 101), negotiate a subprotocol, and
return a :class:`Connection` bound to the route's handler.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from multidict import CIMultiDict
from picows import (
    WSAutoPingStrategy,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]

from wshub.codes import (
    CLOSE_IDLE,
    CLOSE_NO_PONG,
    CLOSE_SLOW,
    Disconnect,
)
from wshub.config import Config
from wshub.metrics import Metrics
from wshub.middleware.base import Next, Request, Response, reject
from wshub.middleware.clientip import resolve_client_ip
from wshub.transport.connection import Connection, Handler
from wshub.transport.timers import TimerWheel

log = logging.getLogger("wshub.transport")


@dataclass(slots=True)
class Route:
    """A path served by the WebSocket server.

    ``make_handler`` builds the per-connection handler after the chain has passed.
    ``subprotocols`` are the Sec-WebSocket-Protocol values this route speaks, preferred first.
    ``slow``, ``idle`` and ``no_pong`` are the disconnects used on this route.
    """

    path: str
    make_handler: Callable[[Request], Handler]
    name: str = ""
    subprotocols: tuple[str, ...] = ()
    slow: Disconnect = CLOSE_SLOW
    idle: Disconnect = CLOSE_IDLE
    no_pong: Disconnect = CLOSE_NO_PONG
    chain: Next | None = None


@dataclass(slots=True)
class Totals:
    """Traffic of connections that have closed (live ones are summed at read time)."""

    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


# How many connections' queued frames one loop iteration writes (Server._flush_dirty). A
# loopback write costs 5-10 us here, so a batch is about a millisecond of writing.
FLUSH_BATCH = 128

# picows's own messages that a peer triggers at will: a protocol violation is the peer's
# fault (the close code is in the access log), not a server error.
_PEER_FAULTS = ("WS parser error", "on_ws_frame raised WSProtocolError")


class PicowsLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """picows's logger, re-levelled so a hostile peer cannot write ERROR lines at will:
    its per-connection INFO lines (accepted, disconnected, handshake timeout) repeat the
    access log and go to DEBUG; a peer's protocol violation goes to INFO. Everything else
    (an exception in our listener) keeps its level."""

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        # Called for every accepted connection: skip the adapter's machinery when DEBUG is
        # off (the usual case).
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(msg, *args, **kwargs)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level == logging.INFO:
            level = logging.DEBUG
        elif level >= logging.ERROR and isinstance(msg, str) and msg.startswith(_PEER_FAULTS):
            level = logging.INFO
        super().log(level, msg, *args, **kwargs)


class _Protocol(WSProtocol):  # type: ignore[misc]
    """picows's protocol, fed a read that starts with a Close frame one byte at a time.

    picows parses one frame ahead before it hands a frame over, and answers a second Close
    frame with 1002 while parsing it, so a peer's Close followed by anything in the same
    read (Autobahn 7.1.2: two Close frames) would never see its close echoed. RFC 6455
    5.5.1: after a Close nothing more is processed. Handing picows such a read in 1-byte
    steps lets it deliver the Close first; the rest is dropped once the echo is out.
    Splitting a read is always valid, so a payload byte that merely looks like a Close
    header costs only the slower path. Other reads pay one byte comparison.
    """

    __slots__ = ("_view",)

    def get_buffer(self, size_hint: int) -> Any:
        view = super().get_buffer(size_hint)
        self._view = view
        return view

    def buffer_updated(self, nbytes: int) -> None:
        view = self._view
        self._view = None  # picows may reallocate its buffer: never keep the view
        if view is None or nbytes > _CLOSE_READ_MAX or view[0] != 0x88:
            super().buffer_updated(nbytes)
            return
        data = bytes(view[:nbytes])
        transport = self.transport
        for byte in data:
            hs = transport.close_handshake if transport is not None else None
            if hs is not None and hs.recv is not None:
                return  # the peer's close has been received: nothing after it counts
            super().get_buffer(-1)[0] = byte  # at picows's current write position
            super().buffer_updated(1)


# A Close frame is at most 2 + 4 + 125 bytes; two of them fit in this.
_CLOSE_READ_MAX = 262


_PLAIN_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: %s\r\n\r\n"
)


class _Plain101(WSUpgradeResponse):
    """The 101 with no extra headers, written from a template: picows builds its own
    response in Python (a case-insensitive header map, then a line per header), which is a
    measurable part of the accept path. picows sets ``Sec-WebSocket-Accept`` in
    ``headers``, then calls ``to_bytes``."""

    __slots__ = ()

    def __init__(self) -> None:
        self.version = b"HTTP/1.1"
        self.status = HTTPStatus.SWITCHING_PROTOCOLS
        self.headers = CIMultiDict()
        self.body = None

    def to_bytes(self) -> bytearray:
        return bytearray(_PLAIN_101 % self.headers["Sec-WebSocket-Accept"].encode())


def _json_error(resp: Response) -> WSUpgradeResponseWithListener:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store", **resp.headers}
    return WSUpgradeResponseWithListener(
        WSUpgradeResponse.create_error_response(resp.status, resp.body_bytes(), headers), None
    )


class Server:
    """Owns the listening socket and every live connection."""

    def __init__(self, config: Config, chain: Next, metrics: Metrics | None = None) -> None:
        self.config = config
        self.chain = chain
        self.metrics = metrics if metrics is not None else Metrics()
        self.routes: dict[str, Route] = {}
        self.connections: dict[str, Connection] = {}
        self.totals = Totals()
        self.accepting = True
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: TimerWheel | None = None
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)
        self._picows_logger = PicowsLog(logging.getLogger("wshub.picows"), {})
        self._drained: asyncio.Event | None = None
        self._trusted = list(config.limits.trusted_proxies)
        self._dirty: list[Connection] = []
        self._dirty_pos = 0
        self._flush_scheduled = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    @property
    def timers(self) -> TimerWheel:
        """The connections' heartbeat and close timers."""
        assert self._timers is not None
        return self._timers

    def add_route(self, route: Route) -> None:
        self.routes[route.path] = route

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, *, sock: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._timers = TimerWheel(self._loop)
        ws = self.config.websocket
        handshake_timeout = ws.handshake_timeout or None
        max_frame = ws.max_message_size
        logger = self._picows_logger
        on_upgrade = self._on_upgrade

        def protocol_factory() -> WSProtocol:
            proto: _Protocol

            def listener_factory(req: WSUpgradeRequest) -> Any:
                return on_upgrade(req, proto)

            proto = _Protocol(
                None,
                None,
                False,
                listener_factory,
                logger,
                True,  # disconnect_on_exception
                handshake_timeout,
                False,  # auto ping: the connection runs its own heartbeat
                20.0,
                20.0,
                WSAutoPingStrategy.PING_WHEN_IDLE,
                False,  # auto pong: Connection answers pings after checking them
                max_frame,
                None,
                1024,  # read buffer starts small; it grows for large messages
            )
            return proto

        if sock is not None:
            self._server = await self._loop.create_server(protocol_factory, sock=sock, backlog=4096)
        else:
            self._server = await self._loop.create_server(
                protocol_factory,
                self.config.host,
                self.config.port,
                backlog=4096,
                reuse_address=True,
            )

    # -- accept path -------------------------------------------------------------------

    def _on_upgrade(self, req: WSUpgradeRequest, proto: WSProtocol) -> Any:
        try:
            return self._upgrade(req, proto)
        except Exception:
            log.exception("upgrade handling failed")
            resp = reject(500, "internal_error", "the upgrade could not be handled")
            self.metrics.upgrade_rejected("internal_error", 500)
            return _json_error(resp)

    def _upgrade(self, req: WSUpgradeRequest, proto: WSProtocol) -> Any:
        raw_path = req.path.decode("latin-1")
        path, _, query = raw_path.partition("?")
        route = self.routes.get(path)
        if route is None:
            return self._refuse(reject(404, "not_found", "no WebSocket route at this path"))
        headers = req.headers
        if not self.accepting:
            return self._refuse(
                reject(503, "shutting_down", "the server is shutting down", Retry_After="5")
            )
        problem = _upgrade_problem(req)
        if problem is not None:
            return self._refuse(problem)
        peer = proto.transport.underlying_transport.get_extra_info("peername")
        peer_ip = peer[0] if peer else ""
        client_ip = resolve_client_ip(peer_ip, headers, self._trusted) if self._trusted else peer_ip
        conn_id = f"{self._id_prefix}-{next(self._ids)}"
        request = Request(
            method=req.method.decode("latin-1"),
            path=path,
            query_string=query,
            headers=headers,
            peer_ip=peer_ip,
            client_ip=client_ip,
            conn_id=conn_id,
        )
        chain = route.chain if route.chain is not None else self.chain
        resp = chain(request)
        if resp is not None:
            return self._refuse(resp)
        handler = route.make_handler(request)
        conn = Connection(self, conn_id, request, handler)
        conn.route = route
        extra: dict[str, str] = {}
        if route.subprotocols:
            chosen = _choose_subprotocol(
                headers.getall("Sec-WebSocket-Protocol", []), route.subprotocols
            )
            if chosen:
                extra["Sec-WebSocket-Protocol"] = chosen
                request.state["subprotocol"] = chosen
        if extra:
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(extra), conn)
        return WSUpgradeResponseWithListener(_Plain101(), conn)

    def _refuse(self, resp: Response) -> WSUpgradeResponseWithListener:
        self.metrics.upgrade_rejected(str(resp.body.get("error", "refused")), resp.status)
        return _json_error(resp)

    # -- registry ----------------------------------------------------------------------

    def register(self, conn: Connection) -> None:
        self.connections[conn.id] = conn
        route = conn.route
        assert route is not None
        self.metrics.connection_opened(route.name or route.path)

    def unregister(self, conn: Connection) -> None:
        if self.connections.pop(conn.id, None) is None:
            return
        t = self.totals
        t.messages_in += conn.messages_in
        t.messages_out += conn.messages_out
        t.bytes_in += conn.bytes_in
        t.bytes_out += conn.bytes_out
        self.metrics.connection_closed(conn.close_code)
        if self._drained is not None and not self.connections:
            self._drained.set()

    def live_totals(self) -> Totals:
        t = self.totals
        out = Totals(t.messages_in, t.messages_out, t.bytes_in, t.bytes_out)
        for c in self.connections.values():
            out.messages_in += c.messages_in
            out.messages_out += c.messages_out
            out.bytes_in += c.bytes_in
            out.bytes_out += c.bytes_out
        return out

    def flush_soon(self, conn: Connection) -> None:
        """Write ``conn``'s queued frames at the end of this loop iteration (or a later one,
        see :meth:`_flush_dirty`)."""
        self._dirty.append(conn)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_dirty)

    def _flush_dirty(self) -> None:
        # At most FLUSH_BATCH connections are written per loop iteration; the rest wait for
        # the next one, after the loop has polled the sockets. A publication read in
        # between joins the frames still queued for the connections not yet written (one
        # write carries both), and other connections' reads are not held up behind a
        # fan-out to many thousands of subscribers.
        dirty = self._dirty
        start = self._dirty_pos
        end = start + FLUSH_BATCH
        for conn in dirty[start:end]:
            if conn._out is not None:
                conn._flush()
        if end < len(dirty):
            self._dirty_pos = end
            self.loop.call_soon(self._flush_dirty)
        else:
            self._dirty = []
            self._dirty_pos = 0
            self._flush_scheduled = False

    def slow_disconnect(self, conn: Connection) -> Disconnect:
        assert conn.route is not None
        return conn.route.slow

    def idle_disconnect(self, conn: Connection) -> Disconnect:
        assert conn.route is not None
        return conn.route.idle

    def no_pong_disconnect(self, conn: Connection) -> Disconnect:
        assert conn.route is not None
        return conn.route.no_pong

    # -- shutdown ----------------------------------------------------------------------

    async def stop_accepting(self) -> None:
        self.accepting = False
        if self._server is not None:
            self._server.close()

    async def drain(self, disconnect: Disconnect, within: float) -> None:
        """Close every connection with ``disconnect`` and wait up to ``within`` seconds."""
        self._drained = asyncio.Event()
        for conn in list(self.connections.values()):
            conn.close(disconnect, abort_after=within)
        if self.connections:
            try:
                await asyncio.wait_for(self._drained.wait(), within + 0.5)
            except TimeoutError:
                for conn in list(self.connections.values()):
                    conn.abort()
        if self._server is not None:
            await self._server.wait_closed()
        if self._timers is not None:
            self._timers.close()


def _upgrade_problem(req: WSUpgradeRequest) -> Response | None:
    """Check the parts of the upgrade request that picows checks only after the factory, so
    that a request the chain passed (and the caps counted) is always upgraded."""
    h = req.headers
    if req.method != b"GET":
        return reject(405, "method_not_allowed", "WebSocket upgrades use GET", Allow="GET")
    if "websocket" not in h.get("Upgrade", "").lower():
        return reject(
            426, "upgrade_required", "this endpoint speaks WebSocket only", Upgrade="websocket"
        )
    if "upgrade" not in h.get("Connection", "").lower():
        return reject(400, "bad_upgrade", "missing Connection: Upgrade")
    if h.get("Sec-WebSocket-Version", "") != "13":
        return reject(
            426, "bad_version", "only WebSocket version 13 is supported", Sec_WebSocket_Version="13"
        )
    if not h.get("Sec-WebSocket-Key"):
        return reject(400, "bad_upgrade", "missing Sec-WebSocket-Key")
    return None


def _choose_subprotocol(offered_headers: list[str], supported: tuple[str, ...]) -> str | None:
    offered = [p.strip() for value in offered_headers for p in value.split(",") if p.strip()]
    for proto in offered:
        if proto in supported:
            return proto
    return None
