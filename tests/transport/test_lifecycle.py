"""The connection lifecycle over real sockets: ids and registry, bounded outbound queue,
heartbeats, idle timeout, handler failures, backpressure."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from rawclient import close_code, frame, handshake, read_frames
from support import GatewayFactory, make_config, open_namespace, ws_url
from wshub.app import App
from wshub.middleware.base import Request
from wshub.protocol.session import ClientSession
from wshub.transport.connection import Connection
from wshub.transport.raw import RawConnection, RawRoute


def _app() -> App:
    app = App()

    @app.route("/echo")
    async def echo(ws: RawConnection) -> None:
        async for msg in ws:
            ws.send(msg)

    @app.route("/firehose")
    async def firehose(ws: RawConnection) -> None:
        # Sends as fast as the socket takes it; a peer that never reads must be cut off.
        chunk = b"x" * 50_000
        while not ws.closed:
            ws.send(chunk)
            await asyncio.sleep(0)

    @app.route("/boom")
    async def boom(ws: RawConnection) -> None:
        await ws.recv()
        raise RuntimeError("handler bug")

    @app.route("/slow")
    async def slow(ws: RawConnection) -> None:
        async for msg in ws:
            await asyncio.sleep(1.0)  # longer than the ping interval below
            ws.send(msg)

    return app


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> Any:
    cfg = make_config(
        websocket={
            "ping_interval": 0.3,
            "pong_timeout": 0.3,
            "send_queue_bytes": 256 * 1024,
            "write_buffer_low": 64 * 1024,
        }
    )
    return await gateway_factory(cfg, _app())


async def test_each_connection_has_a_unique_id_in_the_registry(gw: Any) -> None:
    async with (
        websockets.connect(ws_url(gw, "/echo")) as a,
        websockets.connect(ws_url(gw, "/echo")) as b,
    ):
        await a.send("x")
        await b.send("y")
        await a.recv()
        await b.recv()
        ids = list(gw.server.connections)
        assert len(ids) == 2 and len(set(ids)) == 2
    for _ in range(50):
        if not gw.server.connections:
            break
        await asyncio.sleep(0.02)
    assert gw.server.connections == {}


async def test_client_that_stops_reading_is_closed_as_slow_while_others_receive(gw: Any) -> None:
    loop = asyncio.get_running_loop()
    sock, status, _ = await loop.run_in_executor(
        None, lambda: handshake(gw.ws_port, "/firehose", rcvbuf=4096)
    )
    assert status == 101
    try:
        async with websockets.connect(ws_url(gw, "/echo")) as other:
            for i in range(20):
                await other.send(f"m{i}")
                assert await asyncio.wait_for(other.recv(), 2) == f"m{i}"
                await asyncio.sleep(0.02)
            for _ in range(100):
                if gw.metrics.slow_consumers._value.get() >= 1:
                    break
                await asyncio.sleep(0.05)
            assert gw.metrics.slow_consumers._value.get() == 1
            slow = [c for c in gw.server.connections.values() if c.request.path == "/firehose"]
            assert not slow or slow[0].closing
            # Memory stayed bounded: the buffered bytes never went far past the bound.
            sizes = {c.request.path: c.write_buffer_size for c in gw.server.connections.values()}
            assert all(v < 2 * 256 * 1024 for v in sizes.values()), sizes
            await other.send("still here")
            assert await asyncio.wait_for(other.recv(), 2) == "still here"
    finally:
        sock.close()


async def test_peer_that_stops_answering_pings_is_removed_in_time(gw: Any) -> None:
    loop = asyncio.get_running_loop()
    # A raw socket never answers ping frames (nothing reads it).
    sock, status, _ = await loop.run_in_executor(None, lambda: handshake(gw.ws_port, "/echo"))
    assert status == 101
    try:
        await asyncio.sleep(0.05)
        assert len(gw.server.connections) == 1
        t0 = loop.time()
        while gw.server.connections and loop.time() - t0 < 3:
            await asyncio.sleep(0.02)
        elapsed = loop.time() - t0
        assert gw.server.connections == {}
        assert elapsed < 0.3 + 0.3 + 0.4  # ping interval + pong timeout + slack
        assert gw.metrics.dead_peers._value.get() == 1
    finally:
        sock.close()


async def test_client_answering_pings_stays(gw: Any) -> None:
    async with websockets.connect(ws_url(gw, "/echo"), ping_interval=None) as ws:
        await asyncio.sleep(1.2)  # 4 ping intervals; websockets answers pings itself
        await ws.send("alive")
        assert await asyncio.wait_for(ws.recv(), 2) == "alive"


async def test_busy_handler_longer_than_ping_interval_is_not_dropped(gw: Any) -> None:
    async with websockets.connect(ws_url(gw, "/slow"), ping_interval=None) as ws:
        await ws.send("a")
        await ws.send("b")
        assert await asyncio.wait_for(ws.recv(), 3) == "a"
        assert await asyncio.wait_for(ws.recv(), 3) == "b"


async def test_handler_that_raises_closes_1011_and_others_go_on(gw: Any) -> None:
    async with (
        websockets.connect(ws_url(gw, "/boom")) as bad,
        websockets.connect(ws_url(gw, "/echo")) as good,
    ):
        await bad.send("trigger")
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(bad.recv(), 2)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011
        assert info.value.rcvd.reason == "internal error"  # no exception text to the peer
        await good.send("ok")
        assert await asyncio.wait_for(good.recv(), 2) == "ok"


async def test_idle_timeout_closes_silent_connection(gateway_factory: GatewayFactory) -> None:
    cfg = make_config(websocket={"ping_interval": 0.2, "pong_timeout": 0.2, "idle_timeout": 0.5})
    gw = await gateway_factory(cfg, _app())
    async with websockets.connect(ws_url(gw, "/echo"), ping_interval=None) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 3)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_flood_into_a_slow_handler_pauses_reading_instead_of_buffering(gw: Any) -> None:
    loop = asyncio.get_running_loop()
    sock, status, _ = await loop.run_in_executor(None, lambda: handshake(gw.ws_port, "/slow"))
    assert status == 101
    sock.setblocking(False)
    sent = 0
    payload = frame(0x1, b"y" * 1000)
    with contextlib.suppress(BlockingIOError):
        for _ in range(20000):
            sock.send(payload)
            sent += 1
    sock.close()
    # The server stopped reading long before 20 MB: TCP pushed back on the sender.
    assert sent < 20000


async def test_close_handshake_from_client_is_echoed(gw: Any) -> None:
    loop = asyncio.get_running_loop()
    sock, status, _ = await loop.run_in_executor(None, lambda: handshake(gw.ws_port, "/echo"))
    assert status == 101
    sock.sendall(frame(0x8, b"\x0f\xa0bye"))  # 4000 "bye"
    frames = await loop.run_in_executor(None, read_frames, sock)
    sock.close()
    assert close_code(frames) == 4000


async def test_a_closed_connection_leaves_no_reference_cycle(
    gateway_factory: GatewayFactory,
) -> None:
    # Reference counting alone must free a finished connection (hub session or raw route):
    # a cycle per connection would leave every closed one to the cyclic collector, which
    # wshub serve runs rarely (runtime.gc_threshold).
    cfg = make_config(client={"allow_anonymous": True}, namespaces=[open_namespace()])
    gw = await gateway_factory(cfg, _app())
    raw_routes: list[RawRoute] = []
    for route in gw.server.routes.values():
        if isinstance(route.make_handler, RawRoute):
            raw_routes.append(route.make_handler)

    async def hub_client(i: int) -> None:
        async with websockets.connect(ws_url(gw)) as ws:
            await ws.send(json.dumps({"id": 1, "connect": {}}))
            await ws.recv()
            await ws.send(json.dumps({"id": 2, "subscribe": {"channel": f"c{i % 3}"}}))
            await ws.recv()

    async def raw_client(i: int) -> None:
        async with websockets.connect(ws_url(gw, "/echo")) as ws:
            await ws.send(f"m{i}")
            assert await ws.recv() == f"m{i}"

    async def wait_until(cond: Callable[[], bool]) -> None:
        for _ in range(200):
            if cond():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("timed out")

    async def cancelled_client(i: int) -> None:
        # the /slow handler is asleep when the peer leaves: its task gets cancelled
        async with websockets.connect(ws_url(gw, "/slow")) as ws:
            await ws.send(f"m{i}")

    async def one_round() -> None:
        for i in range(20):
            await hub_client(i)
            await raw_client(i)
            await cancelled_client(i)
        await wait_until(lambda: len(gw.server.connections) == 0)
        await wait_until(lambda: all(not r.tasks for r in raw_routes))
        await asyncio.sleep(0.1)  # let the handler tasks and close callbacks finish

    await one_round()  # warm caches (interned strings, metric children, code lookups)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await one_round()
        gc.collect()
        ours = [
            type(o).__qualname__
            for o in gc.garbage
            if isinstance(o, Connection | ClientSession | RawConnection | Request)
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert ours == []
