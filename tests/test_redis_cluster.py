"""Two gateways on one Redis: a publication, presence, join/leave, history and recovery cross
nodes; each node has its own clients. Real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import secrets

import pytest
import websockets

from support import REDIS_URL, GatewayFactory, call, make_config, next_push, open_namespace, ws_url

pytestmark = pytest.mark.redis


async def test_two_nodes_share_channels_presence_and_history(
    redis_ok: None, gateway_factory: GatewayFactory
) -> None:
    ns = f"t{secrets.token_hex(4)}"  # fresh channels: Redis is shared across tests
    cfg = make_config(
        engine="redis",
        redis_url=REDIS_URL,
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
