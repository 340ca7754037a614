"""``wshub bench``: load-test a deployment over the Centrifugo client protocol (JSON).

Points at any endpoint that speaks it (wshub, Centrifugo): ``--url
ws://host:8000/connection/websocket``. Scenarios:

* ``echo``    - ``--connections`` clients each keep ``--window`` RPCs (``--method``, default
  ``echo``) in flight for ``--duration`` seconds; with ``--rate`` the RPCs are paced at that
  many per second in all instead. Latency: request to reply.
* ``fanout``  - ``--connections`` subscribers on ``--channel``; publications at ``--rate``
  per second (default 10) from one more client connection, or through the server HTTP API
  with ``--api-url``/``--api-key``. Latency: publish to delivery; lost: publications
  acknowledged but not delivered to a subscriber.
* ``connect`` - open ``--connections`` connections (upgrade + connect command),
  ``--concurrency`` at a time, as fast as they go; then close them. Latency: per connect.
* ``idle``    - open ``--connections`` and hold them for ``--duration`` seconds, answering
  the server's pings; lost: connections that did not last.

Authentication: ``--token T`` (sent in every connect command), or ``--token-secret S``
to mint HS256 connection tokens for ``--user``, or neither for anonymous connects. A
pre-upgrade token goes in the URL's query or a ``--header``.

A progress bar goes to stderr (``--no-progress`` to silence); the summary table (or with
``--json`` one JSON object) to stdout. Exit status 1 when nothing could connect or
anything failed (errors > 0), else 0; lost messages are reported, not failed on.

Implemented on the picows client and uvloop, like the gateway. Timing is only reported:
a load generator on the same machine as the server shares its CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

if TYPE_CHECKING:
    from picows import WSFrame, WSListener, WSTransport

__all__ = ["BenchOptions", "Summary", "add_arguments", "main", "options_from_args", "run"]

SCENARIOS = ("echo", "fanout", "connect", "idle")
DEFAULT_FANOUT_RATE = 10.0
_CONNECT_ID = 1


# -- options and results --------------------------------------------------------------------


@dataclass(slots=True)
class BenchOptions:
    url: str
    scenario: str = "echo"
    connections: int = 10
    rate: float = 0.0
    duration: float = 5.0
    channel: str = "bench"
    size: int = 64
    window: int = 8
    method: str = "echo"
    concurrency: int = 64
    token: str = ""
    token_secret: str = ""
    user: str = "bench"
    api_url: str = ""
    api_key: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    progress: bool = True


@dataclass(slots=True)
class Summary:
    scenario: str
    url: str
    connections: int  # asked for
    connected: int = 0
    failed: int = 0  # connections that could not be opened (or subscribed)
    dropped: int = 0  # opened, then closed by the other side before the end
    duration: float = 0.0  # seconds of the measured phase
    sent: int = 0  # RPCs or publications sent
    received: int = 0  # replies or deliveries received
    expected: int = 0  # replies or deliveries that should have arrived
    errors: int = 0
    lost: int = 0
    throughput: float = 0.0  # per second: replies, deliveries or connects
    unit: str = ""
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def mint_token(secret: str, user: str, ttl: float) -> str:
    """An HS256 connection token for ``user`` (the ``sub`` claim), valid for ``ttl`` s."""
    import jwt  # noqa: PLC0415 - only when minting

    claims = {"sub": user, "exp": int(time.time() + ttl)}
    return jwt.encode(claims, secret, algorithm="HS256")


def percentiles(samples_us: list[int]) -> dict[str, float | None]:
    if not samples_us:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    s = sorted(samples_us)
    n = len(s) - 1

    def at(p: float) -> float:
        return round(s[int(n * p)] / 1000, 3)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)}


# -- the protocol client ----------------------------------------------------------------------


class _Err(msgspec.Struct):
    code: int = 0
    message: str = ""


class _Pub(msgspec.Struct):
    data: msgspec.Raw = msgspec.Raw(b"null")


class _Push(msgspec.Struct):
    channel: str = ""
    pub: _Pub | None = None


class _Reply(msgspec.Struct):
    id: int = 0
    error: _Err | None = None
    push: _Push | None = None


class _Stamp(msgspec.Struct):
    t: int = 0
    r: str = ""


_decode_reply = msgspec.json.Decoder(_Reply).decode
_decode_stamp = msgspec.json.Decoder(_Stamp).decode
_PING = b"{}"

ReplyCallback = Callable[[_Reply], None]


class ProtocolError(Exception):
    """A connect or subscribe that the server refused, or a connection that went away."""


@cache
def _listener_class() -> Callable[[Client], WSListener]:
    # picows is imported on first use, so that `wshub --help` does not load it.
    from picows import WSCloseCode, WSListener, WSMsgType  # noqa: PLC0415

    data_types = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)
    close_type = WSMsgType.CLOSE

    class _Listener(WSListener):
        def __init__(self, client: Client) -> None:
            super().__init__()
            self.client = client
            self._parts: list[bytes] = []

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            mt = frame.msg_type
            if mt is close_type:
                code: Any = frame.get_close_code() if frame.payload_size >= 2 else 1005
                self.client.close_code = int(getattr(code, "value", code))
                with contextlib.suppress(Exception):
                    transport.send_close(WSCloseCode.OK)
                transport.disconnect()
                return
            if mt in data_types:
                payload = frame.get_payload_as_bytes()
                if not frame.fin:
                    self._parts.append(payload)
                    return
                if self._parts:
                    payload = b"".join([*self._parts, payload])
                    self._parts.clear()
                self.client.on_frame(payload)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            self.client.on_disconnected()

    return _Listener


class Client:
    """One connection speaking the JSON protocol: requests by id, pushes to a callback."""

    def __init__(self, on_push: Callable[[_Push], None] | None = None) -> None:
        self.transport: WSTransport | None = None
        self.pending: dict[int, ReplyCallback] = {}
        self.on_push = on_push
        self.next_id = _CONNECT_ID + 1
        self.closed = False
        self.closing = False  # we are closing it (not a drop)
        self.close_code: int | None = None
        self.on_drop: Callable[[Client], None] | None = None
        self._text: Any = None

    async def open(self, url: str, token: str, headers: dict[str, str], wait: float) -> None:
        """WebSocket upgrade, then the connect command; raises on any failure."""
        from picows import WSMsgType, ws_connect  # noqa: PLC0415 - see _listener_class

        self._text = WSMsgType.TEXT
        listener = _listener_class()
        transport, _ = await asyncio.wait_for(
            ws_connect(
                lambda: listener(self),
                url,
                websocket_handshake_timeout=wait,
                extra_headers=headers or None,
                enable_auto_pong=True,
            ),
            wait,
        )
        self.transport = transport
        body: dict[str, Any] = {"name": "wshub-bench"}
        if token:
            body["token"] = token
        reply = await self.call({"connect": body}, wait, cmd_id=_CONNECT_ID)
        if reply.error is not None:
            raise ProtocolError(f"connect refused: {reply.error.code} {reply.error.message}")

    def send_command(self, command: dict[str, Any], callback: ReplyCallback) -> int:
        cmd_id = self.next_id
        self.next_id += 1
        self.pending[cmd_id] = callback
        self.send(msgspec.json.encode({"id": cmd_id, **command}))
        return cmd_id

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.send(self._text, data)

    async def call(
        self, command: dict[str, Any], wait: float, *, cmd_id: int | None = None
    ) -> _Reply:
        """Send a command and return its reply (waiting at most ``wait`` seconds)."""
        fut: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()

        def done(reply: _Reply) -> None:
            if not fut.done():
                fut.set_result(reply)

        if cmd_id is None:
            cmd_id = self.send_command(command, done)
        else:
            self.pending[cmd_id] = done
            self.send(msgspec.json.encode({"id": cmd_id, **command}))
        try:
            return await asyncio.wait_for(fut, wait)
        finally:
            self.pending.pop(cmd_id, None)

    def on_frame(self, payload: bytes) -> None:
        if payload == _PING:
            self.send(_PING)
            return
        lines: Iterable[bytes] = (payload,) if b"\n" not in payload else payload.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            if line == _PING:
                self.send(_PING)
                continue
            try:
                reply = _decode_reply(line)
            except msgspec.DecodeError:
                continue
            if reply.id:
                cb = self.pending.pop(reply.id, None)
                if cb is not None:
                    cb(reply)
            elif reply.push is not None and self.on_push is not None:
                self.on_push(reply.push)

    def on_disconnected(self) -> None:
        self.closed = True
        lost = _Reply(id=0, error=_Err(0, "connection closed"))
        pending, self.pending = self.pending, {}
        for cb in pending.values():
            cb(lost)
        if not self.closing and self.on_drop is not None:
            self.on_drop(self)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.closed:
            with contextlib.suppress(Exception):
                self.transport.send_close()
            self.transport.disconnect()


# -- the server HTTP API (fan-out publishing) --------------------------------------------------


class _HttpConnection:
    """A minimal keep-alive HTTP/1.1 client: POST a JSON body, read the answer."""

    def __init__(self, url: str, api_key: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"--api-url must be http:// or https://, not {url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"
        self.base = parts.path.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, method: str, body: bytes) -> tuple[int, bytes]:
        return await asyncio.wait_for(self._post(method, body), self.timeout)

    async def _post(self, method: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, ssl=True if self.tls else None
            )
        assert self.reader is not None
        head = (
            f"POST {self.base}/{method} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"X-API-Key: {self.api_key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            self.writer = None
            raise ConnectionError("the API server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            data = bytearray()
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                data += await self.reader.readexactly(size)
                await self.reader.readline()
            payload = bytes(data)
        else:
            payload = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# -- progress -----------------------------------------------------------------------------------


class ProgressBar:
    """``phase [#####-----]  50%  detail`` on stderr: redrawn in place on a terminal, a
    plain line a second otherwise."""

    def __init__(self, stream: IO[str] | None = None, *, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self._last = 0.0
        self._width = 0

    def update(self, phase: str, fraction: float, detail: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not self.tty and not force and now - self._last < 1.0:
            return
        self._last = now
        fraction = min(max(fraction, 0.0), 1.0)
        filled = round(fraction * 30)
        line = f"{phase:<10} [{'#' * filled}{'-' * (30 - filled)}] {fraction * 100:3.0f}%  {detail}"
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
        self._width = 0


# -- the runner ---------------------------------------------------------------------------------


class _Bench:
    def __init__(self, opts: BenchOptions, progress: ProgressBar) -> None:
        self.o = opts
        self.bar = progress
        self.s = Summary(opts.scenario, opts.url, opts.connections)
        self.clients: list[Client] = []
        self.latencies: list[int] = []
        self.phase = "starting"
        self.fraction = 0.0
        self.run_id = uuid.uuid4().hex[:12]
        self.pad = "x" * max(0, opts.size)
        self._cleanup: list[Callable[[], object]] = []
        self.token = opts.token
        if not self.token and opts.token_secret:
            self.token = mint_token(opts.token_secret, opts.user, opts.duration + 3600)

    # -- bookkeeping

    def error(self, text: str) -> None:
        self.s.errors += 1
        if len(self.s.error_samples) < 5 and text not in self.s.error_samples:
            self.s.error_samples.append(text)

    def dropped(self, _client: Client) -> None:
        self.s.dropped += 1

    def detail(self) -> str:
        s = self.s
        parts = [f"conns {s.connected}/{s.connections}"]
        if s.scenario in ("echo", "fanout"):
            parts += [f"sent {s.sent}", f"recv {s.received}"]
        parts.append(f"err {s.errors}")
        if s.dropped:
            parts.append(f"dropped {s.dropped}")
        return "  ".join(parts)

    async def ticker(self) -> None:
        while True:
            self.bar.update(self.phase, self.fraction, self.detail())
            await asyncio.sleep(0.1)

    async def timed(
        self, phase: str, seconds: float, step: Callable[[float], None] | None = None
    ) -> None:
        """For ``seconds``: call ``step(elapsed)`` about every millisecond, if given."""
        self.phase = phase
        pause = 0.001 if step is not None else 0.05
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            self.fraction = elapsed / seconds if seconds > 0 else 1.0
            if elapsed >= seconds:
                if step is not None:
                    step(seconds)  # the last tick: exactly rate x duration in all
                break
            if step is not None:
                step(elapsed)
            await asyncio.sleep(min(pause, seconds - elapsed))
        self.fraction = 1.0

    # -- connections

    async def open_one(self, on_push: Callable[[_Push], None] | None = None) -> Client | None:
        c = Client(on_push)
        t0 = time.perf_counter_ns()
        try:
            await c.open(self.o.url, self.token, self.o.headers, self.o.timeout)
        except Exception as exc:  # refused, unreachable, timed out: all count as failed
            c.close()
            self.s.failed += 1
            self.error(_describe(exc))
            return None
        c.on_drop = self.dropped
        self.latencies.append((time.perf_counter_ns() - t0) // 1000)
        return c

    async def open_many(
        self, n: int, setup: Callable[[Client], Awaitable[bool]] | None = None, **kw: Any
    ) -> float:
        """Open n clients, ``concurrency`` at a time; returns the seconds it took."""
        self.phase = "connecting"
        sem = asyncio.Semaphore(max(1, self.o.concurrency))

        async def one() -> None:
            async with sem:
                c = await self.open_one(**kw)
                if c is None:
                    return
                if setup is not None and not await setup(c):
                    c.close()
                    self.s.failed += 1
                    return
                self.clients.append(c)
                self.s.connected += 1
                self.fraction = self.s.connected / n

        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.monotonic() - start

    def close_all(self) -> None:
        for c in self.clients:
            c.close()

    async def drain(self, done: Callable[[], bool]) -> None:
        """Wait for ``done()``: at most ``timeout`` s, or 2 s without progress."""
        self.phase = "draining"
        start = last_change = time.monotonic()
        last = -1
        while not done():
            now = time.monotonic()
            if self.s.received != last:
                last, last_change = self.s.received, now
            if now - start > self.o.timeout or now - last_change > 2.0:
                break
            await asyncio.sleep(0.01)

    # -- scenarios

    async def echo(self) -> None:
        o, s = self.o, self.s
        await self.open_many(o.connections)
        self.latencies.clear()
        if not self.clients:
            return
        data = msgspec.json.encode({"p": self.pad})
        frame_head = b'{"rpc":{"method":' + msgspec.json.encode(o.method) + b',"data":' + data
        stop = False

        def fire(c: Client) -> None:
            t0 = time.perf_counter_ns()
            cmd_id = c.next_id
            c.next_id += 1

            def done(reply: _Reply) -> None:
                if reply.id == 0:  # the connection went away
                    return
                s.received += 1
                if reply.error is not None:
                    self.error(f"rpc error {reply.error.code}: {reply.error.message}")
                else:
                    self.latencies.append((time.perf_counter_ns() - t0) // 1000)
                if o.rate <= 0 and not stop and not c.closed:
                    fire(c)

            c.pending[cmd_id] = done
            s.sent += 1
            c.send(b'{"id":' + str(cmd_id).encode() + b"," + frame_head[1:] + b"}}")

        start = time.monotonic()
        if o.rate > 0:
            rr = 0

            def pace(elapsed: float) -> None:
                nonlocal rr
                target = int(o.rate * elapsed)
                while s.sent < target:
                    c = self.clients[rr % len(self.clients)]
                    rr += 1
                    if not c.closed:
                        fire(c)
                    elif all(x.closed for x in self.clients):
                        return

            await self.timed("running", o.duration, pace)
        else:
            for c in self.clients:
                for _ in range(max(1, o.window)):
                    fire(c)
            await self.timed("running", o.duration)
        stop = True
        s.duration = time.monotonic() - start
        await self.drain(lambda: s.received >= s.sent)
        s.expected = s.sent
        s.lost = s.sent - s.received
        s.throughput = (s.received - s.errors) / s.duration if s.duration else 0.0
        s.unit = "replies/s"

    async def fanout(self) -> None:
        o, s = self.o, self.s
        rate = o.rate if o.rate > 0 else DEFAULT_FANOUT_RATE
        run = self.run_id.encode()

        def on_push(push: _Push) -> None:
            if push.pub is None or push.channel != o.channel:
                return
            raw = bytes(push.pub.data)
            if run not in raw:
                return
            try:
                stamp = _decode_stamp(raw)
            except msgspec.DecodeError:
                return
            if stamp.r == self.run_id:
                s.received += 1
                self.latencies.append(time.perf_counter_ns() // 1000 - stamp.t)

        async def subscribe(c: Client) -> bool:
            try:
                reply = await c.call({"subscribe": {"channel": o.channel}}, o.timeout)
            except TimeoutError:
                self.error("subscribe: no reply")
                return False
            if reply.error is not None:
                self.error(f"subscribe refused: {reply.error.code} {reply.error.message}")
                return False
            return True

        await self.open_many(o.connections, subscribe, on_push=on_push)
        self.latencies.clear()
        if not self.clients:
            return
        publish = await self.publisher()
        if publish is None:
            return
        answered = 0
        subscribers = len(self.clients)

        def acknowledged(ok: bool, text: str = "") -> None:
            nonlocal answered
            answered += 1
            if ok:
                s.expected += subscribers
            else:
                self.error(text)

        def pace(elapsed: float) -> None:
            target = int(rate * elapsed)
            while s.sent < target:
                s.sent += 1
                data = msgspec.json.encode(
                    {
                        "t": time.perf_counter_ns() // 1000,
                        "r": self.run_id,
                        "s": s.sent,
                        "p": self.pad,
                    }
                )
                publish(data, acknowledged)

        start = time.monotonic()
        await self.timed("running", o.duration, pace)
        s.duration = time.monotonic() - start
        await self.drain(lambda: answered >= s.sent and s.received >= s.expected)
        s.lost = max(0, s.expected - s.received)
        s.throughput = s.received / s.duration if s.duration else 0.0
        s.unit = "deliveries/s"

    async def publisher(self) -> Callable[[bytes, Callable[..., None]], None] | None:
        """A function that publishes data into the channel and reports the outcome."""
        o = self.o
        channel = msgspec.json.encode(o.channel)
        if o.api_url:
            pool = [_HttpConnection(o.api_url, o.api_key, o.timeout) for _ in range(4)]
            free: asyncio.Queue[_HttpConnection] = asyncio.Queue()
            for h in pool:
                free.put_nowait(h)
            self._cleanup.extend(h.close for h in pool)
            tasks: set[asyncio.Task[None]] = set()

            async def post(data: bytes, report: Callable[..., None]) -> None:
                h = await free.get()
                try:
                    body = b'{"channel":' + channel + b',"data":' + data + b"}"
                    status, answer = await h.post("publish", body)
                except (TimeoutError, OSError, ValueError, IndexError) as exc:
                    h.close()
                    report(False, f"api publish: {_describe(exc)}")
                    return
                finally:
                    free.put_nowait(h)
                if status != 200:
                    report(False, f"api publish: HTTP {status}")
                elif b'"error"' in answer:
                    report(False, f"api publish: {answer[:120].decode(errors='replace')}")
                else:
                    report(True)

            def publish_api(data: bytes, report: Callable[..., None]) -> None:
                t = asyncio.ensure_future(post(data, report))
                tasks.add(t)
                t.add_done_callback(tasks.discard)

            return publish_api
        pub = await self.open_one()
        if pub is None:
            return None
        self._cleanup.append(pub.close)

        def publish_ws(data: bytes, report: Callable[..., None]) -> None:
            def done(reply: _Reply) -> None:
                if reply.error is not None:
                    report(False, f"publish error {reply.error.code}: {reply.error.message}")
                else:
                    report(True)

            pub.send_command({"publish": {"channel": o.channel, "data": msgspec.Raw(data)}}, done)

        return publish_ws

    async def connect(self) -> None:
        s = self.s
        secs = await self.open_many(self.o.connections)
        s.duration = secs
        s.sent = s.expected = s.connections
        s.received = s.connected
        s.throughput = s.connected / secs if secs else 0.0
        s.unit = "connects/s"

    async def idle(self) -> None:
        s = self.s
        secs = await self.open_many(self.o.connections)
        s.throughput = s.connected / secs if secs else 0.0
        s.unit = "connects/s"
        start = time.monotonic()
        await self.timed("holding", self.o.duration)
        s.duration = time.monotonic() - start
        s.expected = s.connected
        s.received = sum(1 for c in self.clients if not c.closed)
        s.lost = s.expected - s.received

    # -- driver

    async def run(self) -> Summary:
        tick = asyncio.ensure_future(self.ticker())
        try:
            await getattr(self, self.o.scenario)()
        finally:
            tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tick
            self.bar.update("done", 1.0, self.detail(), force=True)
            self.bar.finish()
            self.close_all()
            for fn in self._cleanup:
                fn()
            await asyncio.sleep(0.05)  # let the close frames go out
        self.s.latency_ms = percentiles(self.latencies)
        return self.s


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]


async def run(opts: BenchOptions, progress: ProgressBar | None = None) -> Summary:
    """Run one benchmark and return its summary (the programmatic entry point)."""
    if opts.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {opts.scenario!r}")
    bar = progress if progress is not None else ProgressBar(enabled=opts.progress)
    return await _Bench(opts, bar).run()


# -- output ---------------------------------------------------------------------------------


def format_summary(s: Summary) -> str:
    def num(v: float) -> str:
        return f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"

    lat = s.latency_ms

    def ms(key: str) -> str:
        v = lat.get(key)
        return "-" if v is None else f"{v:.3f}"

    what = {
        "echo": "RPC replies",
        "fanout": "deliveries",
        "connect": "connects",
        "idle": "connections alive",
    }[s.scenario]
    rows = [
        ("scenario", s.scenario),
        ("url", s.url),
        (
            "connections",
            f"{s.connected:,} of {s.connections:,} ({s.failed:,} failed, {s.dropped:,} dropped)",
        ),
        ("duration", f"{s.duration:.2f} s"),
    ]
    if s.scenario == "echo":
        rows.append(("sent", f"{s.sent:,} RPCs"))
    elif s.scenario == "fanout":
        rows.append(("sent", f"{s.sent:,} publications"))
    rows += [
        ("received", f"{s.received:,} {what} of {s.expected:,} expected"),
        ("throughput", f"{num(s.throughput)} {s.unit}"),
        ("latency ms", f"p50 {ms('p50')}   p90 {ms('p90')}   p99 {ms('p99')}   max {ms('max')}"),
        ("errors", f"{s.errors:,}"),
        ("lost", f"{s.lost:,}"),
    ]
    rows += [("", f"  {e}") for e in s.error_samples]
    width = max(len(k) for k, _ in rows)
    rule = "-" * (width + 2 + max(len(v) for _, v in rows))
    lines = ["wshub bench", rule]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    lines.append(rule)
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = parser
    p.add_argument(
        "--url",
        required=True,
        help="WebSocket endpoint, e.g. ws://127.0.0.1:8000/connection/websocket",
    )
    p.add_argument("--scenario", choices=SCENARIOS, default="echo", help="what to measure")
    p.add_argument(
        "--connections",
        type=int,
        default=10,
        metavar="N",
        help="client connections (subscribers for fanout)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        metavar="R",
        help="echo: RPCs per second in all (0: as fast as --window allows); "
        f"fanout: publications per second (default {DEFAULT_FANOUT_RATE:g})",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=5.0,
        metavar="D",
        help="seconds to run (echo, fanout) or to hold (idle)",
    )
    p.add_argument("--channel", default="bench", help="channel for fanout")
    p.add_argument(
        "--size", type=int, default=64, metavar="BYTES", help="payload padding per message"
    )
    p.add_argument(
        "--window", type=int, default=8, help="RPCs in flight per connection (echo without --rate)"
    )
    p.add_argument("--method", default="echo", help="RPC method (echo)")
    p.add_argument(
        "--concurrency", type=int, default=64, help="connection attempts in flight at once"
    )
    auth = p.add_mutually_exclusive_group()
    auth.add_argument(
        "--token",
        default=os.environ.get("WSHUB_BENCH_TOKEN", ""),
        help="connection token for the connect command (env WSHUB_BENCH_TOKEN)",
    )
    auth.add_argument(
        "--token-secret",
        default="",
        metavar="SECRET",
        help="mint HS256 connection tokens with this secret",
    )
    p.add_argument("--user", default="bench", help="user (sub claim) of minted tokens")
    p.add_argument(
        "--api-url",
        default="",
        metavar="URL",
        help="fanout: publish through the server HTTP API at URL "
        "(e.g. http://127.0.0.1:8001/api) instead of from a client",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("WSHUB_BENCH_API_KEY", ""),
        help="key for --api-url (env WSHUB_BENCH_API_KEY)",
    )
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="extra upgrade request header (repeatable), e.g. Origin:https://a.b",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for a connect, a reply or the last deliveries",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    headers: dict[str, str] = {}
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--header wants NAME:VALUE, not {h!r}")
        headers[name.strip()] = value.strip()
    if args.connections < 1:
        raise ValueError("--connections must be at least 1")
    if args.duration < 0 or args.rate < 0 or args.size < 0:
        raise ValueError("--duration, --rate and --size cannot be negative")
    if args.api_url and args.scenario != "fanout":
        raise ValueError("--api-url is for the fanout scenario")
    if not urlsplit(args.url).scheme.startswith("ws"):
        raise ValueError(f"--url must be ws:// or wss://, not {args.url!r}")
    return BenchOptions(
        url=args.url,
        scenario=args.scenario,
        connections=args.connections,
        rate=args.rate,
        duration=args.duration,
        channel=args.channel,
        size=args.size,
        window=args.window,
        method=args.method,
        concurrency=args.concurrency,
        token=args.token,
        token_secret=args.token_secret,
        user=args.user,
        api_url=args.api_url,
        api_key=args.api_key,
        headers=headers,
        timeout=args.timeout,
        progress=not args.no_progress,
    )


def _raise_nofile(wanted: int) -> None:
    """Each connection is a file descriptor: raise the soft limit as far as allowed."""
    try:
        import resource  # noqa: PLC0415 - POSIX only

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(args: argparse.Namespace) -> int:
    """``wshub bench``: returns the exit status."""
    try:
        opts = options_from_args(args)
    except ValueError as exc:
        print(f"wshub bench: {exc}", file=sys.stderr)
        return 2
    _raise_nofile(opts.connections + 256)
    try:
        import uvloop  # noqa: PLC0415

        summary = uvloop.run(run(opts))
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        summary = asyncio.run(run(opts))
    print(summary.to_json() if args.json else format_summary(summary), flush=True)
    return 1 if summary.connected == 0 or summary.errors else 0
