"""Dead and busy peers on the hub: a peer that vanishes without a FIN is gone from every
structure within ping interval + pong timeout; a connection whose handler is busy for
longer than that is not mistaken for a dead one."""

from __future__ import annotations

import asyncio
import gc
import json
import time
import weakref
from typing import Any

import pytest
import websockets
from hostile_helpers import MiniWS, wait_for

from support import GatewayFactory, make_config, open_namespace
from wshub.app import App
from wshub.protocol.session import ClientSession
from wshub.transport.raw import RawConnection

PING, PONG = 0.3, 0.3
BUSY = (PING + PONG) * 3


def _app() -> App:
    app = App()

    @app.rpc("echo")
    async def echo(_ctx: Any, data: Any) -> Any:
        return data

    @app.rpc("sleep")
    async def sleep(_ctx: Any, data: Any) -> Any:
        await asyncio.sleep(float(data))
        return data

    @app.route("/busy-first")
    async def busy_first(ws: RawConnection) -> None:
        # Busy on the first message for longer than ping + pong, then an echo.
        first = True
        async for msg in ws:
            if first:
                await asyncio.sleep(BUSY)
                first = False
            ws.send(msg)

    return app


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> Any:
    cfg = make_config(
        client={"allow_anonymous": True, "command_rate": 0.0},
        websocket={"ping_interval": PING, "pong_timeout": PONG},
        namespaces=[open_namespace("", presence=True, join_leave=True, force_push_join_leave=True)],
    )
    return await gateway_factory(cfg, _app(), http=False)


async def test_peer_that_vanishes_is_removed_everywhere_within_ping_plus_pong(gw: Any) -> None:
    hub = gw.node.hub
    healthy = await MiniWS.connect(gw.ws_port)
    healthy_id = (await healthy.hub_connect())["connect"]["client"]
    await healthy.call(subscribe={"channel": "room"})
    ghost = await MiniWS.connect(gw.ws_port)
    ghost_id = (await ghost.hub_connect())["connect"]["client"]
    await ghost.call(subscribe={"channel": "room"})
    inbox = healthy.read_in_background()
    assert ghost_id in hub.clients and len(hub.channels["room"]) == 2
    assert ghost_id in await gw.node.engine.presence.get("room")
    conn_ref = weakref.ref(gw.server.connections[ghost_id])
    # It vanishes: no FIN, no more reading, no pong ever again.
    ghost.answer_pings = False
    ghost.writer.transport.pause_reading()  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await wait_for(lambda: ghost_id not in gw.server.connections, PING + PONG + 2)
    elapsed = loop.time() - t0
    assert elapsed <= PING + PONG + 0.2, elapsed
    assert ghost_id not in hub.clients
    assert [s.client for s in hub.channels["room"]] == [healthy_id]
    assert ghost_id not in await gw.node.engine.presence.get("room")
    assert gw.metrics.dead_peers._value.get() == 1
    # The others were told (leave push) and carry on.
    leaves = []
    while not inbox.empty():
        item = inbox.get_nowait()
        assert isinstance(item, bytes), item
        push = json.loads(item).get("push", {})
        if "leave" in push:
            leaves.append(push["leave"]["info"]["client"])
    assert leaves == [ghost_id]
    healthy.command(rpc={"method": "echo", "data": 1})
    item = await asyncio.wait_for(inbox.get(), 2)
    assert isinstance(item, bytes) and json.loads(item)["rpc"]["data"] == 1
    # Its buffers are freed: nothing holds the connection or the session any more.
    gc.collect()
    assert conn_ref() is None
    assert not [
        o for o in gc.get_objects() if isinstance(o, ClientSession) and o.client == ghost_id
    ]
    print(f"\nvanished peer removed after {elapsed * 1000:.0f} ms (ping {PING}s + pong {PONG}s)")
    ghost.abort()
    healthy.close()


async def test_busy_handler_longer_than_ping_interval_keeps_the_connection(gw: Any) -> None:
    c = await MiniWS.connect(gw.ws_port)
    await c.hub_connect()
    busy = BUSY
    t0 = time.monotonic()
    reply = await c.call(timeout=busy + 3, rpc={"method": "sleep", "data": busy})
    assert reply["rpc"]["data"] == busy and time.monotonic() - t0 >= busy
    assert (await c.call(rpc={"method": "echo", "data": 2}))["rpc"]["data"] == 2
    assert gw.metrics.dead_peers._value.get() == 0
    c.close()


async def test_busy_handler_with_commands_queued_behind_it_keeps_the_connection(gw: Any) -> None:
    # The commands that wait behind the busy one make the server stop reading the socket
    # (backpressure); it must not then take the unread pongs for a dead peer.
    c = await MiniWS.connect(gw.ws_port)
    await c.hub_connect()
    busy = BUSY
    first = c.command(rpc={"method": "sleep", "data": busy})
    ids = [c.command(rpc={"method": "echo", "data": n}) for n in range(60)]
    got: dict[int, Any] = {}
    async with asyncio.timeout(busy + 5):
        while len(got) < len(ids) + 1:
            for line in (await c.recv(busy + 5)).split(b"\n"):
                msg = json.loads(line)
                got[msg["id"]] = msg
    assert got[first]["rpc"]["data"] == busy
    assert [got[i]["rpc"]["data"] for i in ids] == list(range(60))
    assert gw.metrics.dead_peers._value.get() == 0
    c.close()


async def test_raw_route_busy_with_messages_queued_behind_it_keeps_the_connection(gw: Any) -> None:
    # The raw route's inbound queue fills up (64) and reading pauses: the same rule.
    async with websockets.connect(f"ws://127.0.0.1:{gw.ws_port}/busy-first") as ws:
        for n in range(100):
            await ws.send(str(n))
        got = [await asyncio.wait_for(ws.recv(), BUSY + 3) for _ in range(100)]
    assert got == [str(n) for n in range(100)]
    assert gw.metrics.dead_peers._value.get() == 0
