"""RFC 6455 framing rules, driven with hand-built frames over a plain TCP socket.

The server runs in a background thread with its own uvloop; the client side is blocking
sockets, so every byte on the wire is under the test's control (masking, lengths, reserved
bits, fragmentation). ``RecordingRoute`` records every message the handler is given, so a
test can prove that a rejected message never reached it. Each failure test also keeps a
bystander client connected to the same server and checks that it still works afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import os
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
import uvloop

from rawclient import frame
from wshub.codes import CLOSE_GOING_AWAY
from wshub.config import Config, WebSocketConfig
from wshub.middleware.base import build_chain
from wshub.transport.connection import Connection
from wshub.transport.raw import RawConnection, RawRoute
from wshub.transport.server import Route, Server

MAX_SIZE = 1024
TIMEOUT = 5.0

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_markers = itertools.count()


def marker(tag: str) -> bytes:
    """A payload no other test sends, to look for in what the handler saw."""
    return f"<{tag}-{next(_markers)}-{os.getpid()}>".encode()


# -- server ----------------------------------------------------------------------------


class RecordingRoute(RawRoute):
    """An echo route that records every message the transport hands to the handler."""

    def __init__(self) -> None:
        super().__init__(self._echo)
        self.seen: list[bytes] = []
        self._lock = threading.Lock()

    @staticmethod
    async def _echo(ws: RawConnection) -> None:
        async for msg in ws:
            ws.send(msg)

    def on_message(self, conn: Connection, data: bytes, text: bool) -> None:
        with self._lock:
            self.seen.append(data)
        super().on_message(conn, data, text)

    def saw(self, needle: bytes) -> bool:
        with self._lock:
            return any(needle in d for d in self.seen)


class ThreadedServer:
    """A wshub Server with one ``/echo`` raw route, on its own uvloop in a thread."""

    def __init__(self, max_size: int) -> None:
        self.route = RecordingRoute()
        cfg = Config(
            host="127.0.0.1",
            port=0,
            websocket=WebSocketConfig(max_message_size=max_size, ping_interval=0),
        )
        self.server = Server(cfg, build_chain([]))
        self.server.add_route(Route("/echo", self.route, name="echo"))
        self.loop = uvloop.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wshub-test-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self.port = self.server.port
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(TIMEOUT), "server did not start"

    def stop(self) -> None:
        async def shutdown() -> None:
            await self.server.stop_accepting()
            await self.server.drain(CLOSE_GOING_AWAY, 1.0)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        self.loop.close()

    def connect(self, extra_headers: str = "") -> Client:
        return Client.connect(self.port, extra_headers)


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    srv = ThreadedServer(MAX_SIZE)
    srv.start()
    yield srv
    srv.stop()


# -- client ----------------------------------------------------------------------------


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack(">H", code) + reason


class Client:
    """A blocking WebSocket client that speaks in raw frames."""

    def __init__(self, sock: socket.socket, buf: bytes, headers: dict[bytes, bytes]) -> None:
        self.sock = sock
        self.buf = buf
        self.headers = headers  # of the 101 response, names lower-cased

    @classmethod
    def connect(cls, port: int, extra_headers: str = "") -> Client:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16))
        sock.sendall(
            b"GET /echo HTTP/1.1\r\n"
            + f"Host: 127.0.0.1:{port}\r\n".encode()
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            + b"Sec-WebSocket-Key: "
            + key
            + b"\r\nSec-WebSocket-Version: 13\r\n"
            + extra_headers.encode()
            + b"\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed during the handshake: {data!r}"
            data += chunk
        response, _, rest = data.partition(b"\r\n\r\n")
        status, *lines = response.split(b"\r\n")
        assert status.startswith(b"HTTP/1.1 101"), response
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines)}
        assert headers[b"sec-websocket-accept"] == base64.b64encode(
            hashlib.sha1(key + _GUID).digest()
        )
        return cls(sock, rest, headers)

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed with {len(self.buf)}/{n} bytes buffered")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self) -> tuple[bool, int, int, bytes]:
        """(fin, rsv, opcode, payload) of the next server frame, which must be unmasked."""
        b0, b1 = self._read(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", self._read(8))
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, self._read(n)

    def expect(self, opcode: int, payload: bytes) -> None:
        fin, rsv, op, data = self.recv_frame()
        assert (fin, rsv, op, data) == (True, 0, opcode, payload)

    def echo_ok(self, text: bytes) -> None:
        """A round trip on a healthy connection: a text echo and a ping answered."""
        self.send(frame(OP_TEXT, text), frame(OP_PING, b"are you there"))
        got = {self.recv_frame(), self.recv_frame()}  # the pong may overtake the echo
        assert got == {(True, 0, OP_PONG, b"are you there"), (True, 0, OP_TEXT, text)}

    def expect_close(self, code: int | None) -> bytes:
        """The next frame is a close with ``code`` (None: empty); answer it and check the
        server then drops the TCP connection. Returns the close reason."""
        fin, rsv, op, payload = self.recv_frame()
        assert (fin, rsv, op) == (True, 0, OP_CLOSE), (op, payload)
        got = struct.unpack(">H", payload[:2])[0] if payload else None
        assert got == code, f"close code {got} ({payload[2:]!r}), expected {code}"
        reason = payload[2:]
        reason.decode("utf-8")  # a close reason is UTF-8
        try:
            self.send(frame(OP_CLOSE, payload[:2]))
        except OSError:
            pass  # the server may already be gone
        self.expect_eof()
        return reason

    def expect_eof(self) -> None:
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def bystander(server: ThreadedServer) -> Iterator[Client]:
    """A client connected before the test; it must still work after the test's failure."""
    other = server.connect()
    other.echo_ok(b"before")
    yield other
    other.echo_ok(b"after")
    other.close()


# -- fragmentation and UTF-8 -------------------------------------------------------------


def test_ping_between_fragments_is_answered_and_message_intact(server: ThreadedServer) -> None:
    c = server.connect()
    c.send(
        frame(OP_TEXT, b"Hello, ", fin=False),
        frame(OP_PING, b"mid-message"),
        frame(OP_CONT, b"fragmented ", fin=False),
        frame(OP_PONG, b"unsolicited"),
        frame(OP_CONT, b"world"),
    )
    c.expect(OP_PONG, b"mid-message")
    c.expect(OP_TEXT, b"Hello, fragmented world")
    c.send(frame(OP_BINARY, b"\x00\xff", fin=False), frame(OP_CONT, b"\x01"))
    c.expect(OP_BINARY, b"\x00\xff\x01")
    c.send(frame(OP_CLOSE, close_payload(1000)))
    c.expect_close(1000)


def test_utf8_character_split_across_fragments_is_accepted(server: ThreadedServer) -> None:
    c = server.connect()
    text = "κόσμε € 𝄞".encode()
    euro = text.index("€".encode())
    clef = text.index("𝄞".encode())
    c.send(
        frame(OP_TEXT, text[: euro + 1], fin=False),  # inside the 3-byte €
        frame(OP_CONT, text[euro + 1 : clef + 2], fin=False),  # inside the 4-byte 𝄞
        frame(OP_CONT, text[clef + 2 : clef + 3], fin=False),
        frame(OP_CONT, text[clef + 3 :]),
    )
    c.expect(OP_TEXT, text)
    c.close()


def test_invalid_utf8_closes_1007_and_never_reaches_handler(
    server: ThreadedServer, bystander: Client
) -> None:
    m = marker("bad-utf8")
    c = server.connect()
    c.send(frame(OP_TEXT, m + b"\xce\xba\xff"))
    c.expect_close(1007)
    assert not server.route.saw(m)


def test_invalid_utf8_in_a_later_fragment_closes_1007(
    server: ThreadedServer, bystander: Client
) -> None:
    m = marker("bad-utf8-fragment")
    c = server.connect()
    c.send(frame(OP_TEXT, m, fin=False), frame(OP_CONT, b"ok \xed\xa0\x80", fin=False))
    c.expect_close(1007)  # a UTF-16 surrogate: invalid before the message is complete
    assert not server.route.saw(m)


def test_truncated_utf8_at_message_end_closes_1007(
    server: ThreadedServer, bystander: Client
) -> None:
    m = marker("truncated-utf8")
    c = server.connect()
    c.send(frame(OP_TEXT, m + b"\xe2\x82", fin=False), frame(OP_CONT, b""))
    c.expect_close(1007)
    assert not server.route.saw(m)


def test_invalid_utf8_binary_is_fine(server: ThreadedServer) -> None:
    c = server.connect()
    c.send(frame(OP_BINARY, b"\xff\xfe"))
    c.expect(OP_BINARY, b"\xff\xfe")
    c.close()


# -- size limit -------------------------------------------------------------------------


def test_declared_frame_length_over_limit_closes_1009_before_payload(
    server: ThreadedServer, bystander: Client
) -> None:
    c = server.connect()
    # Only the header (with its mask key): the close must come without any payload sent.
    c.send(frame(OP_BINARY, length=MAX_SIZE + 1))
    c.expect_close(1009)


def test_huge_declared_length_closes_1009(server: ThreadedServer, bystander: Client) -> None:
    c = server.connect()
    c.send(frame(OP_TEXT, length=(1 << 40)))
    c.expect_close(1009)


def test_fragments_summing_over_limit_close_1009(server: ThreadedServer, bystander: Client) -> None:
    m = marker("too-big")
    c = server.connect()
    half = m + b"x" * (MAX_SIZE // 2 + 1 - len(m))
    c.send(frame(OP_BINARY, half, fin=False), frame(OP_CONT, half, fin=False))
    c.expect_close(1009)
    assert not server.route.saw(m)


def test_message_of_exactly_the_limit_is_accepted(server: ThreadedServer) -> None:
    c = server.connect()
    payload = b"y" * MAX_SIZE
    c.send(frame(OP_TEXT, payload))
    c.expect(OP_TEXT, payload)
    c.send(frame(OP_TEXT, payload[:1000], fin=False), frame(OP_CONT, payload[1000:]))
    c.expect(OP_TEXT, payload)
    c.close()


# -- protocol errors (1002) ----------------------------------------------------------------

PROTOCOL_ERRORS = {
    "rsv1-text": [frame(OP_TEXT, b"x", rsv=4)],
    "rsv2-binary": [frame(OP_BINARY, b"x", rsv=2)],
    "rsv3-ping": [frame(OP_PING, b"x", rsv=1)],
    "rsv-continuation": [frame(OP_TEXT, b"a", fin=False), frame(OP_CONT, b"b", rsv=4)],
    "opcode-3": [frame(0x3, b"x")],
    "opcode-11": [frame(0xB)],
    "fragmented-ping": [frame(OP_PING, b"x", fin=False), frame(OP_CONT, b"y")],
    "ping-over-125": [frame(OP_PING, b"p" * 126)],
    "close-over-125": [frame(OP_CLOSE, close_payload(1000, b"r" * 124))],
    "continuation-without-start": [frame(OP_CONT, b"x")],
    "new-message-inside-fragmented": [frame(OP_TEXT, b"a", fin=False), frame(OP_TEXT, b"b")],
    "unmasked": [frame(OP_TEXT, b"x", masked=False)],
    "non-minimal-16-bit-length": [b"\x81\xfe\x00\x05" + b"\x00" * 4 + b"hello"],
    "close-1-byte": [frame(OP_CLOSE, b"\x03")],
}


@pytest.mark.parametrize("frames", PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS.keys())
def test_protocol_violation_closes_1002(
    server: ThreadedServer, bystander: Client, frames: list[bytes]
) -> None:
    c = server.connect()
    c.send(*frames)
    c.expect_close(1002)


def test_invalid_utf8_close_reason_closes_1007(server: ThreadedServer, bystander: Client) -> None:
    c = server.connect()
    c.send(frame(OP_CLOSE, close_payload(1000, b"bye \xff")))
    c.expect_close(1007)


# -- close handshake ------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999])
def test_valid_close_code_is_echoed(server: ThreadedServer, bystander: Client, code: int) -> None:
    c = server.connect()
    c.send(frame(OP_CLOSE, close_payload(code, "ciao ✓".encode())))
    c.expect_close(code)


def test_empty_close_is_answered_with_1000(server: ThreadedServer, bystander: Client) -> None:
    c = server.connect()
    c.send(frame(OP_CLOSE))
    c.expect_close(1000)  # 1005 ("no code") must never go on the wire


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_invalid_close_code_is_refused_1002(
    server: ThreadedServer, bystander: Client, code: int
) -> None:
    c = server.connect()
    c.send(frame(OP_CLOSE, close_payload(code)))
    c.expect_close(1002)


def test_data_after_close_is_ignored(server: ThreadedServer, bystander: Client) -> None:
    m = marker("after-close")
    c = server.connect()
    c.send(frame(OP_CLOSE, close_payload(1000)), frame(OP_TEXT, m), frame(OP_PING, b"late"))
    c.expect_close(1000)
    assert not server.route.saw(m)


# -- extensions -------------------------------------------------------------------------------


def test_permessage_deflate_is_never_negotiated(server: ThreadedServer, bystander: Client) -> None:
    c = server.connect(
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, "
        "permessage-deflate\r\n"
    )
    assert b"sec-websocket-extensions" not in c.headers
    # Without the extension a "compressed" frame (RSV1) is a protocol error.
    c.send(frame(OP_TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv=4))
    c.expect_close(1002)
