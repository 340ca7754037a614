"""Publications a node never received (a broker connection lost, a message dropped) are
noticed, and the subscribers that can recover them are told to (unsubscribe push 2500, then
an ordinary recovering resubscribe), instead of living with a silent gap."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets

from support import (
    REDIS_URL,
    GatewayFactory,
    call,
    kill_pubsub,
    listen_socket,
    make_config,
    next_push,
    open_namespace,
    recv,
    ws_url,
)
from wshub.brokers.base import Publication, StreamPosition
from wshub.brokers.memory import MemoryHistory, memory_engine
from wshub.brokers.redis import RedisHistory
from wshub.codes import UNSUBSCRIBE_INSUFFICIENT
from wshub.gateway import Gateway


class GatedHistory(MemoryHistory):
    """Memory history whose ``position`` answers, then waits for ``gate`` (when set) before
    returning: a slow engine, with publications landing between the read and the reply."""

    gate: asyncio.Event | None = None

    async def position(self, channel: str) -> StreamPosition:
        top = await super().position(channel)
        if self.gate is not None:
            await self.gate.wait()
        return top


def history_config(**overrides: Any) -> Any:
    ns = f"t{secrets.token_hex(4)}"  # fresh channels: Redis is shared across tests
    cfg = make_config(
        client={"allow_anonymous": True},
        namespaces=[open_namespace(ns, history_size=100, history_ttl=60)],
        **overrides,
    )
    return cfg, f"{ns}:room"


async def subscribe(ws: websockets.ClientConnection, cid: int, channel: str) -> dict[str, Any]:
    reply = await call(ws, cid, subscribe={"channel": channel, "recoverable": True})
    assert "error" not in reply, reply
    return reply["subscribe"]  # type: ignore[no-any-return]


async def expect_resubscribe_recovers(
    ws: websockets.ClientConnection, channel: str, start: dict[str, Any], datas: list[Any]
) -> None:
    """The insufficient-state push arrives, and a recovering resubscribe (what the SDKs do on
    it) returns exactly ``datas``, everything published since ``start``."""
    push = await next_push(ws, "unsubscribe")
    assert push["channel"] == channel
    assert push["unsubscribe"]["code"] == UNSUBSCRIBE_INSUFFICIENT.code == 2500
    reply = await call(
        ws,
        90,
        subscribe={
            "channel": channel,
            "recover": True,
            "epoch": start["epoch"],
            "offset": start.get("offset", 0),
        },
    )
    sub = reply["subscribe"]
    assert sub["recovered"] is True
    assert [p["data"] for p in sub["publications"]] == datas


async def test_a_skipped_offset_makes_subscribers_recover(
    gateway_factory: GatewayFactory,
) -> None:
    cfg, channel = history_config()
    gw = await gateway_factory(cfg)
    async with websockets.connect(ws_url(gw)) as ws, websockets.connect(ws_url(gw)) as other:
        await call(ws, 1, connect={})
        await call(other, 1, connect={})
        start = await subscribe(ws, 2, channel)
        # publication 1 goes into history but never reaches the node (lost on the way)
        await gw.node.engine.history.append(channel, Publication(data=b'{"n":1}'), size=100, ttl=60)
        # publication 2 arrives: its offset skips one
        await call(other, 2, publish={"channel": channel, "data": {"n": 2}})
        await expect_resubscribe_recovers(ws, channel, start, [{"n": 1}, {"n": 2}])
        # from here on, deliveries are live again, with no further resubscribe
        await call(other, 3, publish={"channel": channel, "data": {"n": 3}})
        push = await next_push(ws, "pub")
        assert push["pub"]["data"] == {"n": 3} and push["pub"]["offset"] == 3


async def test_publications_in_order_never_unsubscribe(gateway_factory: GatewayFactory) -> None:
    cfg, channel = history_config()
    gw = await gateway_factory(cfg)
    async with websockets.connect(ws_url(gw)) as ws, websockets.connect(ws_url(gw)) as other:
        await call(ws, 1, connect={})
        await call(other, 1, connect={})
        await subscribe(ws, 2, channel)
        for n in range(1, 21):
            await call(other, 1 + n, publish={"channel": channel, "data": {"n": n}})
        seen = []
        while len(seen) < 20:
            push = await next_push(ws, "pub")  # an unsubscribe would fail the wait
            seen.append(push["pub"]["offset"])
        assert seen == list(range(1, 21))
    assert gw.metrics.registry.get_sample_value("wshub_broker_reconnects_total") == 0


@pytest.mark.redis
async def test_redis_pubsub_loss_is_noticed_and_recovered(
    redis_ok: None, gateway_factory: GatewayFactory
) -> None:
    name = f"wshub-test-{secrets.token_hex(4)}"
    cfg, channel = history_config(engine="redis", redis_url=f"{REDIS_URL}?client_name={name}")
    gw: Gateway = await gateway_factory(cfg)
    admin = aioredis.Redis.from_url(REDIS_URL)
    try:
        async with websockets.connect(ws_url(gw)) as ws, websockets.connect(ws_url(gw)) as other:
            await call(ws, 1, connect={})
            await call(other, 1, connect={})
            start = await subscribe(ws, 2, channel)
            # published while the pub/sub connection was down: stored, never delivered
            lost = RedisHistory(admin, publish=False)
            await lost.append(channel, Publication(data=b'{"n":1}'), size=100, ttl=60)
            await kill_pubsub(admin, name)
            await expect_resubscribe_recovers(ws, channel, start, [{"n": 1}])
            reconnects = gw.metrics.registry.get_sample_value("wshub_broker_reconnects_total")
            assert reconnects == 1
            # the node is subscribed again: a new publication is delivered live
            await call(other, 2, publish={"channel": channel, "data": {"n": 2}})
            push = await next_push(ws, "pub")
            assert push["pub"]["data"] == {"n": 2} and push["pub"]["offset"] == 2
    finally:
        keys = [k async for k in admin.scan_iter(match=f"wshub.*{channel}", count=1000)]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()


async def test_publications_during_a_subscribe_follow_its_reply() -> None:
    """Pushes for a subscription never precede its confirmation (the SDKs drop them), and
    what the reply's position already covers is not sent again."""
    cfg, channel = history_config()
    engine = memory_engine()
    history = GatedHistory()
    engine.history = history
    gw = Gateway(cfg, engine=engine)
    await gw.start(ws_sock=listen_socket(), http_sock=None)
    try:
        async with websockets.connect(ws_url(gw)) as ws:
            await call(ws, 1, connect={})
            await gw.node.publish(channel, b'{"n":1}')
            history.gate = asyncio.Event()
            await ws.send(
                json.dumps({"id": 2, "subscribe": {"channel": channel, "recoverable": True}})
            )
            while channel not in gw.node.hub.channels:  # registered, reading history
                await asyncio.sleep(0.01)
            await gw.node.publish(channel, b'{"n":2}')  # after the read, before the reply
            history.gate.set()
            reply = await recv(ws)
            assert reply["id"] == 2 and reply["subscribe"]["offset"] == 1
            push = (await recv(ws))["push"]
            assert (push["pub"]["data"], push["pub"]["offset"]) == ({"n": 2}, 2)
            history.gate = None
            await gw.node.publish(channel, b'{"n":3}')
            push = (await recv(ws))["push"]
            assert (push["pub"]["data"], push["pub"]["offset"]) == ({"n": 3}, 3)
    finally:
        await gw.shutdown()
