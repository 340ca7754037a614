"""One upgraded WebSocket connection on picows: reader, writer, heartbeat, close.

Reading and writing never wait on each other. Inbound frames are handled in picows's
``data_received`` callback; outbound bytes go straight into the socket transport's write
buffer (no task, no await per message), so a publication fans out to every subscriber in
one synchronous pass. The write buffer is the bounded outbound queue: when it passes
``send_queue_bytes`` the event loop calls ``pause_writing`` and the connection is closed as
a slow consumer, so a client that stops reading costs at most its queue bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from wshub.codes import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_PROTOCOL_ERROR,
    Disconnect,
)
from wshub.errors import DisconnectError, ProtocolViolation
from wshub.middleware.base import CloseInfo, Request
from wshub.protocol.assembler import MessageAssembler
from wshub.protocol.framing import small_header
from wshub.transport.timers import Timer

if TYPE_CHECKING:
    from wshub.transport.server import Route, Server

log = logging.getLogger("wshub.transport")

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONT = WSMsgType.CONTINUATION
_PING = WSMsgType.PING
_PONG = WSMsgType.PONG
_CLOSE = WSMsgType.CLOSE

# Messages above this size are sent by picows with writelines (see _check_queue).
_LARGE = 8192

# How long a closing connection waits for the peer's close frame before aborting.
CLOSE_TIMEOUT = 2.0


class Handler(Protocol):
    """What a route attaches to each of its connections (the hub session, a raw route)."""

    def on_open(self, conn: Connection) -> None: ...

    def on_message(self, conn: Connection, data: bytes, text: bool) -> None: ...

    def send_ping(self, conn: Connection) -> None:
        """Send one heartbeat ping (a ping frame, or the hub protocol's ``{}``)."""
        ...

    def on_close(self, conn: Connection, code: int, reason: str) -> None: ...


class Connection(WSListener):
    """A live WebSocket connection. ``id`` is unique in the process (and across nodes)."""

    __slots__ = (
        "_assembler",
        "_frames_in",
        "_idle_mark",
        "_idle_since",
        "_opened_mono",
        "_out",
        "_paused_reading",
        "_ping_mark",
        "_timer",
        "_write",
        "bytes_in",
        "bytes_out",
        "close_code",
        "close_reason",
        "closed",
        "closing",
        "ctx",
        "handler",
        "id",
        "messages_in",
        "messages_out",
        "opened_at",
        "request",
        "route",
        "server",
        "state",
        "task",
        "transport",
    )

    def __init__(self, server: Server, conn_id: str, request: Request, handler: Handler) -> None:
        self.server = server
        self.id = conn_id
        self.request = request
        self.handler = handler
        self.transport: WSTransport | None = None
        self.route: Route | None = None
        self.ctx: Any = None
        """Per-connection object owned by the route's handler (a hub session, a RawConnection)."""
        self.task: asyncio.Task[None] | None = None
        self.state: dict[str, Any] = request.state
        self.opened_at = time.time()
        self._opened_mono = time.monotonic()
        self.closing = False
        self.closed = False
        self.close_code = 1006
        self.close_reason = ""
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._frames_in = 0
        self._assembler = MessageAssembler(server.config.websocket.max_message_size)
        self._timer: Timer | None = None
        self._ping_mark = 0
        self._idle_mark = 0
        self._idle_since = self._opened_mono
        self._paused_reading = False
        self._out: list[bytes] | None = None
        self._write: Callable[[bytes], object] | None = None
        """The socket transport's ``write``, bound once (the fan-out hot path)."""

    # -- picows callbacks ------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        raw = transport.underlying_transport
        self._write = raw.write
        ws = self.server.config.websocket
        raw.set_write_buffer_limits(
            high=ws.send_queue_bytes, low=min(ws.write_buffer_low, ws.send_queue_bytes // 2)
        )
        self.server.register(self)
        self._schedule(self.server.config.websocket.ping_interval, self._heartbeat)
        try:
            self.handler.on_open(self)
        except DisconnectError as exc:
            self.close(exc.disconnect)
        except Exception:
            log.exception("connection handler failed on open", extra={"conn_id": self.id})
            self.close(CLOSE_INTERNAL_ERROR)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self._frames_in += 1
        if frame.last_in_buffer:
            self._on_frame(transport, frame)
            if self._out is not None:
                self._flush()
        else:
            # More frames follow in this read: hold what we send until the last one, so
            # the replies to one read leave in one write (flush_soon is the safety net if
            # picows never hands over that last frame).
            if self._out is None:
                self._out = []
                self.server.flush_soon(self)
            self._on_frame(transport, frame)

    def _on_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        if mt is _TEXT or mt is _BINARY or mt is _CONT:
            if self.closing:
                return
            payload = frame.get_payload_as_bytes()
            self.bytes_in += len(payload)
            try:
                data = self._assembler.feed(
                    mt.value, frame.fin, frame.rsv1 or frame.rsv2 or frame.rsv3, payload
                )
            except ProtocolViolation as exc:
                self.close(exc.disconnect)
                return
            if data is None:
                return
            self.messages_in += 1
            try:
                self.handler.on_message(self, data, self._assembler.is_text)
            except ProtocolViolation as exc:
                self.close(exc.disconnect)
            except DisconnectError as exc:
                self.close(exc.disconnect)
            except Exception:
                log.exception("connection handler failed", extra={"conn_id": self.id})
                self.close(CLOSE_INTERNAL_ERROR)
        elif mt is _PING:
            if frame.rsv1 or frame.rsv2 or frame.rsv3:
                self.close(CLOSE_PROTOCOL_ERROR)
                return
            if not self.closing:
                transport.send_pong(frame.get_payload_as_bytes())
        elif mt is _PONG:
            if frame.rsv1 or frame.rsv2 or frame.rsv3:
                self.close(CLOSE_PROTOCOL_ERROR)
        elif mt is _CLOSE:
            self._on_close_frame(transport, frame)

    def _on_close_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        # picows has already refused (1002/1007, before this callback) a 1-byte payload, a
        # reason that is not UTF-8 and a code < 3000 outside its WSCloseCode enum.
        if self._out is not None:
            self._flush()  # replies to frames before the close go out before its echo
        if transport.is_close_frame_sent:
            # The answer to our close (or picows failed the connection): the handshake is over
            # and the server closes the TCP connection first (7.1.1).
            transport.disconnect()
            return
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            self.close(CLOSE_PROTOCOL_ERROR)
            transport.disconnect()
            return
        if frame.payload_size < 2:
            # No status code (1005 locally). Answer 1000: 1005 must never be sent (7.4.1), and
            # a code-bearing close keeps picows's close bookkeeping (is_close_frame_sent).
            self.close_code = 1005
            self.close_reason = ""
            transport.send_close(WSCloseCode.OK)
        else:
            code = frame.get_close_code()
            value: int = code.value
            if value not in _VALID_CLOSE_CODES and not 3000 <= value < 5000:
                # 0, 1004-1006, 1015 and >= 5000 are not valid on the wire (7.4.1, 7.4.2).
                self.close(CLOSE_PROTOCOL_ERROR)
                transport.disconnect()
                return
            self.close_code = value
            self.close_reason = frame.get_close_reason() if frame.payload_size > 2 else ""
            transport.send_close(code)  # echo the peer's code (5.5.1)
        self.closing = True
        transport.disconnect()

    def pause_writing(self) -> None:
        # The write buffer passed send_queue_bytes: the peer is not reading fast enough.
        if self.closing:
            return
        self.server.metrics.slow_consumer()
        self.close(self.server.slow_disconnect(self), abort_after=0.5)

    def resume_writing(self) -> None:
        pass

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.closed:
            return
        self.closed = True
        self.closing = True
        self._write = None
        self._cancel_timer()
        hs = transport.close_handshake
        if hs is not None and hs.sent is not None and not hs.recv_then_sent:
            code = hs.sent.code
            self.close_code = code.value if code is not WSCloseCode.NO_INFO else 1005
            self.close_reason = hs.sent.reason
        elif hs is not None and hs.recv is not None and self.close_code == 1006:
            code = hs.recv.code
            self.close_code = code.value if code is not WSCloseCode.NO_INFO else 1005
            self.close_reason = hs.recv.reason
        try:
            self.handler.on_close(self, self.close_code, self.close_reason)
        except Exception:
            log.exception("connection handler failed on close", extra={"conn_id": self.id})
        self.server.unregister(self)
        try:
            self.request.run_close_callbacks(
                CloseInfo(
                    conn_id=self.id,
                    code=self.close_code,
                    reason=self.close_reason,
                    duration=time.monotonic() - self._opened_mono,
                    messages_in=self.messages_in,
                    messages_out=self.messages_out,
                    bytes_in=self.bytes_in,
                    bytes_out=self.bytes_out,
                )
            )
        finally:
            # The handler's per-connection object usually points back here: drop the link
            # so reference counting frees both now, instead of leaving a cycle for the
            # collector.
            self.ctx = None

    # -- sending -----------------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        """Queue one text message. Never blocks; False if the connection is closing."""
        if self.closing:
            return False
        t = self.transport
        if t is None:
            return False
        self.messages_out += 1
        self.bytes_out += len(data)
        out = self._out
        if out is None:
            t.send(_TEXT, data)
            if len(data) > _LARGE:
                self._check_queue()
        else:
            n = len(data)
            out.append(small_header(n))
            out.append(data)
        return True

    def send_frame(self, wire: bytes, size: int) -> bool:
        """Queue a complete frame (``size`` payload bytes) built once for many
        connections. It leaves with everything else queued for this connection before the
        server gets to it (:meth:`Server.flush_soon`), in one write: under load,
        publications that arrive together cost one syscall per subscriber, not one per
        publication."""
        if self.closing or self.transport is None:
            return False
        self.messages_out += 1
        self.bytes_out += size
        out = self._out
        if out is None:
            self._out = [wire]
            self.server.flush_soon(self)
        else:
            out.append(wire)
        return True

    def flush(self) -> None:
        """Write what is queued (frames held for this read or loop iteration)."""
        if self._out is not None:
            self._flush()

    def _flush(self) -> None:
        out = self._out
        self._out = None
        write = self._write
        if out and not self.closing and write is not None:
            data = out[0] if len(out) == 1 else b"".join(out)
            write(data)
            if len(data) > _LARGE:
                self._check_queue()

    def send_binary(self, data: bytes) -> bool:
        if self.closing or self.transport is None:
            return False
        self.messages_out += 1
        self.bytes_out += len(data)
        self.transport.send(_BINARY, data)
        if len(data) > _LARGE:
            self._check_queue()
        return True

    def _check_queue(self) -> None:
        # Large messages leave picows through writelines(), and some event loops (CPython
        # 3.12's selector loop) do not call pause_writing from there: check the bound here.
        if (
            not self.closing
            and self.write_buffer_size > self.server.config.websocket.send_queue_bytes
        ):
            self.pause_writing()

    def send_ping(self, payload: bytes = b"") -> None:
        if not self.closing and self.transport is not None:
            self.transport.send_ping(payload)

    @property
    def write_buffer_size(self) -> int:
        t = self.transport
        return 0 if t is None else int(t.underlying_transport.get_write_buffer_size())

    def close(self, disconnect: Disconnect, *, abort_after: float = CLOSE_TIMEOUT) -> None:
        """Start the close handshake with ``disconnect``; idempotent.

        The connection is aborted if the peer has not answered within ``abort_after``.
        """
        if self.closing:
            return
        if self._out is not None:
            self._flush()
        self.closing = True
        self.close_code = disconnect.code
        self.close_reason = disconnect.reason
        t = self.transport
        if t is None:
            return
        try:
            t.send_close(_close_code(disconnect.code), disconnect.reason.encode()[:123])
        except Exception:  # the socket may already be gone
            log.debug("send_close failed", exc_info=True)
        self._cancel_timer()
        if abort_after <= 0:
            t.disconnect(graceful=False)
        else:
            self._schedule(abort_after, self._abort)

    def abort(self) -> None:
        """Drop the TCP connection now (no close handshake)."""
        self.closing = True
        if self.transport is not None:
            self.transport.disconnect(graceful=False)

    def pause_reading(self) -> None:
        if not self._paused_reading and self.transport is not None:
            self._paused_reading = True
            # The peer's pong may now wait unread in the socket: no verdict on this ping.
            self._ping_mark = -1
            self.transport.underlying_transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused_reading and self.transport is not None and not self.closed:
            self._paused_reading = False
            self.transport.underlying_transport.resume_reading()

    # -- heartbeat and idle --------------------------------------------------------------

    def _schedule(self, delay: float, cb: Callable[[], None]) -> None:
        self._cancel_timer()
        if delay > 0:
            self._timer = self.server.timers.call_later(delay, cb)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _heartbeat(self) -> None:
        self._timer = None
        if self.closing:
            return
        ws = self.server.config.websocket
        if self._paused_reading:
            # We stopped reading (backpressure from a busy handler): the peer's pongs and
            # messages wait unread, so neither silence nor idleness can be judged now.
            self._idle_mark = self.messages_in
            self._idle_since = time.monotonic()
            self._schedule(ws.ping_interval, self._heartbeat)
            return
        if ws.idle_timeout > 0:
            now = time.monotonic()
            if self.messages_in != self._idle_mark:
                self._idle_mark = self.messages_in
                self._idle_since = now
            elif now - self._idle_since >= ws.idle_timeout:
                self.close(self.server.idle_disconnect(self))
                return
        self._ping_mark = self._frames_in
        try:
            self.handler.send_ping(self)
        except Exception:
            log.exception("heartbeat ping failed", extra={"conn_id": self.id})
        self._schedule(ws.pong_timeout, self._check_pong)

    def _check_pong(self) -> None:
        self._timer = None
        if self.closing:
            return
        if self._frames_in == self._ping_mark:
            # Nothing at all from the peer since the ping, and we kept reading (a pause
            # sets the mark to -1): it is gone (or stalled).
            self.server.metrics.dead_peer()
            self.close(self.server.no_pong_disconnect(self), abort_after=0.0)
            return
        ws = self.server.config.websocket
        self._schedule(max(ws.ping_interval - ws.pong_timeout, 0.05), self._heartbeat)

    def _abort(self) -> None:
        self._timer = None
        if self.transport is not None and not self.closed:
            self.transport.disconnect(graceful=False)


# Close codes a peer may send below 3000 (7.4.1 and the IANA registry); 3000-4999 are the
# registered and private ranges.
_VALID_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


_CODE_CACHE: dict[int, Any] = {}


def _close_code(code: int) -> Any:
    """picows takes a WSCloseCode; application codes (3000-4999) are not enum members, so
    build them through the enum's value lookup fallback."""
    c = _CODE_CACHE.get(code)
    if c is None:
        try:
            c = WSCloseCode(code)
        except ValueError:
            c = code
        _CODE_CACHE[code] = c
    return c
