"""The Redis engine misbehaving under a node: a subscribe that fails leaves nothing behind,
and a pub/sub resync over many channels checks them all. Real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis.asyncio as aioredis
import websockets

from support import (
    REDIS_URL,
    GatewayFactory,
    call,
    kill_pubsub,
    make_config,
    open_namespace,
    recv,
    ws_url,
)
from wshub.brokers.base import Publication
from wshub.brokers.redis import RedisHistory
from wshub.codes import ERROR_INTERNAL, UNSUBSCRIBE_INSUFFICIENT

pytestmark = pytest.mark.redis


@pytest.fixture
async def admin(redis_ok: None) -> aioredis.Redis:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def drop_keys(admin: aioredis.Redis, ns: str) -> None:
    keys = [k async for k in admin.scan_iter(match=f"wshub.*{ns}:*", count=1000)]
    if keys:
        await admin.delete(*keys)


async def test_a_failed_subscribe_leaves_no_subscription(
    gateway_factory: GatewayFactory, admin: aioredis.Redis
) -> None:
    ns = f"t{secrets.token_hex(4)}"
    channel = f"{ns}:x"
    cfg = make_config(
        engine="redis",
        client={"allow_anonymous": True},
        namespaces=[open_namespace(ns, history_size=10, history_ttl=60)],
    )
    gw = await gateway_factory(cfg)
    try:
        await admin.set(f"wshub.m:{channel}", "not a hash")  # a corrupt key: reads fail
        async with websockets.connect(ws_url(gw)) as ws, websockets.connect(ws_url(gw)) as pub:
            await call(ws, 1, connect={})
            await call(pub, 1, connect={})
            sub = {"channel": channel, "recoverable": True}
            failed = await call(ws, 2, subscribe=sub)
            assert failed["error"]["code"] == ERROR_INTERNAL.code
            assert channel not in gw.node.hub.channels
            await admin.delete(f"wshub.m:{channel}")
            # the retry (what SDKs do after a temporary error) subscribes, not 105
            again = await call(ws, 3, subscribe=sub)
            assert "error" not in again, again
            await call(pub, 2, publish={"channel": channel, "data": {"n": 1}})
            push = (await recv(ws))["push"]
            assert push["pub"]["data"] == {"n": 1} and push["pub"]["offset"] == 1
    finally:
        await drop_keys(admin, ns)


async def test_resync_checks_every_channel(
    gateway_factory: GatewayFactory, admin: aioredis.Redis
) -> None:
    """More channels than the Redis client's connection pool holds (100): each one with a
    lost publication is reported, none is skipped for want of a connection."""
    ns = f"t{secrets.token_hex(4)}"
    name = f"wshub-test-{ns}"
    cfg = make_config(
        engine="redis",
        redis_url=f"{REDIS_URL}?client_name={name}",
        client={"allow_anonymous": True, "channel_limit": 1000, "command_rate": 0.0},
        namespaces=[open_namespace(ns, history_size=10, history_ttl=60)],
    )
    gw = await gateway_factory(cfg)
    channels = [f"{ns}:c{i}" for i in range(250)]
    try:
        async with websockets.connect(ws_url(gw), max_queue=None) as ws:
            await call(ws, 1, connect={})
            await ws.send(
                "\n".join(
                    f'{{"id":{10 + i},"subscribe":{{"channel":"{ch}","recoverable":true}}}}'
                    for i, ch in enumerate(channels)
                )
            )
            replies: list[str] = []
            while len(replies) < len(channels):
                replies += [line for line in (await ws.recv()).splitlines() if '"id"' in line]
            assert not [r for r in replies if '"error"' in r]
            lost = RedisHistory(admin, publish=False)
            for ch in channels:
                await lost.append(ch, Publication(data=b"0"), size=10, ttl=60)
            await kill_pubsub(admin, name)
            told: set[str] = set()
            async with asyncio.timeout(10):
                while len(told) < len(channels):
                    push = (await recv(ws)).get("push", {})
                    if "unsubscribe" in push:
                        assert push["unsubscribe"]["code"] == UNSUBSCRIBE_INSUFFICIENT.code
                        told.add(push["channel"])
            assert told == set(channels)
    finally:
        await drop_keys(admin, ns)


async def test_a_burst_of_subscribes_waits_for_redis_connections(
    gateway_factory: GatewayFactory, admin: aioredis.Redis
) -> None:
    """Far more concurrent engine calls than pooled connections: they queue for one (the
    blocking pool), none fails."""
    ns = f"t{secrets.token_hex(4)}"
    cfg = make_config(
        engine="redis",
        redis_pool_size=3,  # the pub/sub connection takes one of them
        client={"allow_anonymous": True},
        namespaces=[open_namespace(ns, history_size=10, history_ttl=60, presence=True)],
    )
    gw = await gateway_factory(cfg)
    try:
        clients = [websockets.connect(ws_url(gw)) for _ in range(60)]
        conns = [await c for c in clients]
        try:
            for ws in conns:
                await call(ws, 1, connect={})
            sub = {"channel": f"{ns}:room", "recoverable": True}
            replies = await asyncio.gather(*(call(ws, 2, subscribe=sub) for ws in conns))
            assert [r for r in replies if "error" in r] == []
            assert len(gw.node.hub.channels[f"{ns}:room"]) == 60
        finally:
            for ws in conns:
                await ws.close()
    finally:
        await drop_keys(admin, ns)
