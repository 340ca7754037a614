"""Two gateways on one Redis: a publication, presence, join/leave, history and recovery cross
nodes; each node has its own clients. Real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets

from support import GatewayFactory, make_config, open_namespace, ws_url

pytestmark = pytest.mark.redis

URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis_ok() -> None:
    client = aioredis.Redis.from_url(URL)
    try:
        await client.ping()
    except Exception:
        pytest.skip("no Redis on 127.0.0.1:6379")
    finally:
        await client.aclose()


async def recv(ws: websockets.ClientConnection, timeout: float = 3.0) -> dict[str, Any]:
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if msg:
            return msg  # type: ignore[no-any-return]


async def call(ws: websockets.ClientConnection, cid: int, **cmd: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"id": cid, **cmd}))
    while True:
        msg = await recv(ws)
        if msg.get("id") == cid:
            return msg


async def next_push(ws: websockets.ClientConnection, kind: str) -> dict[str, Any]:
    """The next push of ``kind`` (join, leave, pub ...), skipping other pushes."""
    while True:
        msg = await recv(ws)
        push = msg.get("push", {})
        if kind in push:
            return push  # type: ignore[no-any-return]


async def test_two_nodes_share_channels_presence_and_history(
    redis_ok: None, gateway_factory: GatewayFactory
) -> None:
    ns = f"t{secrets.token_hex(4)}"  # fresh channels: Redis is shared across tests
    cfg = make_config(
        engine="redis",
        redis_url=URL,
        client={"allow_anonymous": True},
        namespaces=[
            open_namespace(
                ns,
                presence=True,
                join_leave=True,
                force_push_join_leave=True,
                history_size=100,
                history_ttl=60,
                force_recovery=True,
            )
        ],
    )
    a = await gateway_factory(cfg)
    b = await gateway_factory(cfg)
    ch = f"{ns}:room"
    async with websockets.connect(ws_url(a)) as on_a, websockets.connect(ws_url(b)) as on_b:
        await call(on_a, 1, connect={})
        b_id = (await call(on_b, 1, connect={}))["connect"]["client"]
        sub_a = (await call(on_a, 2, subscribe={"channel": ch}))["subscribe"]
        await call(on_b, 2, subscribe={"channel": ch})
        while (await next_push(on_a, "join"))["join"]["info"]["client"] != b_id:
            pass  # until B's join, published on node B, pushed on node A
        assert "publish" in await call(on_b, 3, publish={"channel": ch, "data": {"n": 1}})
        pub = (await next_push(on_a, "pub"))["pub"]
        assert pub["data"] == {"n": 1} and pub["offset"] == 1
        pres = (await call(on_a, 4, presence={"channel": ch}))["presence"]["presence"]
        assert len(pres) == 2
        epoch = sub_a["epoch"]
    # A client of node A misses publications made through node B, then recovers on A.
    async with websockets.connect(ws_url(b)) as on_b:
        await call(on_b, 1, connect={})
        for n in range(2, 5):
            await call(on_b, n, publish={"channel": ch, "data": {"n": n}})
    async with websockets.connect(ws_url(a)) as on_a:
        await call(on_a, 1, connect={})
        req = {"channel": ch, "recover": True, "offset": 1, "epoch": epoch}
        res = (await call(on_a, 2, subscribe=req))["subscribe"]
        assert res["recovered"] is True
        assert [p["data"]["n"] for p in res["publications"]] == [2, 3, 4]
