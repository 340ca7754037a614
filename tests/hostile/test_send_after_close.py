"""Sending to connections that are closing or gone: publications skip them (counted in
``hub.skipped`` and the ``wshub_skipped_sends`` metric), closing is idempotent, nothing
raises, and a client that leaves while one of its commands is still running leaves nothing
behind in the hub."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from typing import Any

import pytest
from hostile_helpers import Closed, MiniWS, wait_for

from support import GatewayFactory, make_config, open_namespace
from wshub import codes
from wshub.app import App
from wshub.protocol.session import ClientSession
from wshub.transport.raw import RawConnection

HOOK_DELAY = 0.3


def _app() -> App:
    app = App()

    @app.rpc("echo")
    async def echo(_ctx: Any, data: Any) -> Any:
        return data

    @app.on_connecting
    async def connecting(ctx: Any) -> Any:
        if ctx.data == "slow":
            await asyncio.sleep(HOOK_DELAY)
        return None

    @app.on_subscribe
    async def subscribing(ctx: Any) -> Any:
        if ctx.channel.startswith("slow"):
            await asyncio.sleep(HOOK_DELAY)
        return None

    @app.route("/chatty")
    async def chatty(ws: RawConnection) -> None:
        # Keeps sending after the peer has gone: send must say False, never raise.
        while True:
            if not ws.send("tick") and ws.closed:
                ws.close()
                ws.close()
                return
            await asyncio.sleep(0.001)

    return app


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> Any:
    cfg = make_config(
        client={"allow_anonymous": True, "command_rate": 0.0},
        namespaces=[open_namespace("", presence=True, join_leave=True, force_push_join_leave=True)],
    )
    return await gateway_factory(cfg, _app(), http=False)


@pytest.fixture
async def loop_errors() -> Any:
    """Exceptions that reached the event loop's handler (an escaped exception)."""
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    yield errors
    loop.set_exception_handler(old)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def subscriber(gw: Any, channel: str = "room") -> tuple[MiniWS, str]:
    c = await MiniWS.connect(gw.ws_port)
    cid = (await c.hub_connect())["connect"]["client"]
    assert "subscribe" in await c.call(subscribe={"channel": channel})
    return c, cid


async def test_publish_skips_and_counts_closing_subscribers(
    gw: Any, caplog: pytest.LogCaptureFixture, loop_errors: list[Any]
) -> None:
    caplog.set_level(logging.INFO)
    clients = [await subscriber(gw) for _ in range(12)]
    inboxes = [c.read_in_background() for c, _ in clients]
    conns = [gw.server.connections[cid] for _, cid in clients]
    # Four are closing (close frame sent, not gone yet); closing again changes nothing,
    # nor does an abort on top.
    for conn in conns[:4]:
        conn.close(codes.DISCONNECT_FORCE_RECONNECT)
        conn.close(codes.DISCONNECT_SHUTDOWN)
    conns[3].abort()
    conns[3].abort()
    hub = gw.node.hub
    before = hub.skipped
    await gw.node.publish("room", b'{"n": 1}')
    assert hub.skipped - before == 4
    assert gw.node.send_to_user("", b'{"direct": 1}') == 8
    assert hub.skipped - before == 8
    assert gw.metrics.skipped_sends._value.get() == hub.skipped
    # The closing ones got the first close code only (3011), the others the publication.
    for k, inbox in enumerate(inboxes):
        if k == 3:
            continue  # aborted: no close frame
        while True:
            item = await asyncio.wait_for(inbox.get(), 2)
            if isinstance(item, Closed) or "pub" in json.loads(item).get("push", {}):
                break
        if k < 3:
            assert isinstance(item, Closed) and item.code == 3011, item
        else:
            assert isinstance(item, bytes) and json.loads(item)["push"]["pub"]["data"] == {"n": 1}
    assert await wait_for(lambda: len(gw.server.connections) == 8, 3)
    assert gw.metrics.connections == 8
    assert not tracebacks(caplog) and not loop_errors
    for c, _ in clients:
        c.abort()


async def test_publishing_through_a_churn_of_closing_subscribers(
    gw: Any, caplog: pytest.LogCaptureFixture, loop_errors: list[Any]
) -> None:
    caplog.set_level(logging.INFO)
    stayers = [await subscriber(gw) for _ in range(5)]
    inboxes = [c.read_in_background() for c, _ in stayers]
    published = 0
    stop = asyncio.Event()

    async def publisher() -> None:
        nonlocal published
        while not stop.is_set():
            await gw.node.publish("room", json.dumps(published).encode())
            published += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(publisher())
    for round_ in range(6):
        leavers = [await subscriber(gw) for _ in range(10)]
        for k, (c, cid) in enumerate(leavers):
            conn = gw.server.connections.get(cid)
            if k % 3 == 0:
                c.close()  # the client's close frame
            elif k % 3 == 1:
                c.abort()  # a reset
            elif conn is not None:
                conn.close(codes.DISCONNECT_FORCE_RECONNECT)  # the server's close ...
                c.close()  # ... crossing the client's
                conn.close(codes.DISCONNECT_SHUTDOWN)
        await asyncio.sleep(0.02 * round_)
    stop.set()
    await task
    assert await wait_for(lambda: len(gw.server.connections) == 5, 5)
    await asyncio.sleep(0.2)
    for inbox in inboxes:
        got = []
        while not inbox.empty():
            item = inbox.get_nowait()
            assert isinstance(item, bytes)
            push = json.loads(item)["push"]
            if "pub" in push:
                got.append(push["pub"]["data"])
        assert got == list(range(published))
    assert gw.metrics.skipped_sends._value.get() == gw.node.hub.skipped
    assert gw.metrics.connections == 5
    assert len(gw.node.hub.channels["room"]) == 5
    assert not tracebacks(caplog) and not loop_errors
    print(f"\n{published} publications, {gw.node.hub.skipped} sends skipped")
    for c, _ in stayers:
        c.abort()


@pytest.mark.parametrize("command", ["connect", "subscribe"])
async def test_client_gone_while_its_command_runs_leaves_nothing_behind(
    gw: Any, command: str, caplog: pytest.LogCaptureFixture, loop_errors: list[Any]
) -> None:
    caplog.set_level(logging.INFO)
    hub = gw.node.hub
    c = await MiniWS.connect(gw.ws_port)
    if command == "connect":
        c.command(connect={"data": "slow"})
    else:
        await c.hub_connect()
        c.command(subscribe={"channel": "slowroom"})
    await asyncio.sleep(HOOK_DELAY / 3)
    c.abort()  # gone while the hook is still running
    await asyncio.sleep(HOOK_DELAY + 0.2)
    assert gw.server.connections == {}
    assert hub.clients == {} and hub.users == {}
    assert hub.channels == {} and hub.num_subscriptions == 0
    assert await gw.node.engine.presence.get("slowroom") == {}
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, ClientSession)]
    assert not tracebacks(caplog) and not loop_errors


async def test_raw_route_sending_after_the_peer_left(
    gw: Any, caplog: pytest.LogCaptureFixture, loop_errors: list[Any]
) -> None:
    caplog.set_level(logging.INFO)
    for how in ("close", "abort"):
        c = await MiniWS.connect(gw.ws_port, "/chatty")
        with contextlib.suppress(Closed):
            await c.recv()
        c.close() if how == "close" else c.abort()
        assert await wait_for(lambda: not gw.server.connections, 3)
    assert await wait_for(lambda: not gw.server.routes["/chatty"].make_handler.tasks, 3)
    assert not tracebacks(caplog) and not loop_errors
