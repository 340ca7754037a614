"""The ``cent`` package from PyPI, unchanged, against a real gateway: what it sends is
understood and what it gets back parses into its models; effects are checked on real
WebSocket clients speaking the JSON protocol."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
import websockets
from cent import (
    AsyncClient,
    BatchRequest,
    BroadcastRequest,
    ChannelsRequest,
    Client,
    Disconnect,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    StreamPosition,
    SubscribeRequest,
    UnsubscribeRequest,
)
from cent.exceptions import CentApiResponseError, CentTransportError, CentUnauthorizedError

from conftest import GatewayFactory, http_url, make_config, open_namespace, ws_url
from wshub.gateway import Gateway

API_KEY = "cent-test-api-key-0123456789"
SECRET = "test-secret-that-is-long-enough-for-hs256"


async def recv_json(ws: websockets.ClientConnection) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), 2.0)
    assert isinstance(raw, str)
    return json.loads(raw)  # type: ignore[no-any-return]


async def hub_client(gw: Gateway, user: str, *channels: str) -> websockets.ClientConnection:
    ws = await websockets.connect(ws_url(gw))
    tok = jwt.encode({"sub": user}, SECRET, algorithm="HS256")
    await ws.send(json.dumps({"id": 1, "connect": {"token": tok}}))
    assert "connect" in await recv_json(ws)
    for i, ch in enumerate(channels, start=2):
        await ws.send(json.dumps({"id": i, "subscribe": {"channel": ch}}))
        assert "subscribe" in await recv_json(ws)
    return ws


async def close_code(ws: websockets.ClientConnection) -> int:
    with pytest.raises(websockets.ConnectionClosed) as info:
        for _ in range(10):
            await asyncio.wait_for(ws.recv(), 3)
    assert info.value.rcvd is not None
    return info.value.rcvd.code


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> Gateway:
    cfg = make_config(
        api_key=API_KEY,
        token__hmac_secret=SECRET,
        namespaces=[
            open_namespace(""),
            open_namespace("chat", presence=True, history_size=100, history_ttl=300),
        ],
    )
    return await gateway_factory(cfg)


@pytest.fixture
async def cent(gw: Gateway) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(http_url(gw, "/api"), API_KEY, timeout=5) as client:
        yield client


async def test_publish_through_cent_reaches_a_websocket_subscriber(
    gw: Gateway, cent: AsyncClient
) -> None:
    ws = await hub_client(gw, "alice", "chat:room")
    try:
        res = await cent.publish(
            PublishRequest(channel="chat:room", data={"text": "hello"}, tags={"t": "1"})
        )
        assert res.offset == 1 and res.epoch
        push = (await recv_json(ws))["push"]
        assert push["channel"] == "chat:room"
        assert push["pub"]["data"] == {"text": "hello"}
        assert push["pub"]["offset"] == 1 and push["pub"]["tags"] == {"t": "1"}

        b = await cent.broadcast(BroadcastRequest(channels=["chat:room", "plain"], data=[1, 2]))
        assert len(b.responses) == 2
        assert b.responses[0].result is not None and b.responses[0].result.offset == 2
        assert b.responses[1].error is None
        assert (await recv_json(ws))["push"]["pub"]["data"] == [1, 2]
    finally:
        await ws.close()


async def test_presence_history_info_and_channels(gw: Gateway, cent: AsyncClient) -> None:
    a = await hub_client(gw, "alice", "chat:room")
    b = await hub_client(gw, "bob", "chat:room", "plain")
    try:
        pres = await cent.presence(PresenceRequest(channel="chat:room"))
        assert sorted(ci.user for ci in pres.presence.values()) == ["alice", "bob"]
        stats = await cent.presence_stats(PresenceStatsRequest(channel="chat:room"))
        assert (stats.num_clients, stats.num_users) == (2, 2)

        for n in range(3):
            await cent.publish(PublishRequest(channel="chat:room", data={"n": n}))
        hist = await cent.history(HistoryRequest(channel="chat:room", limit=10))
        assert [p.data for p in hist.publications] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert hist.offset == 3 and hist.epoch
        since = StreamPosition(offset=1, epoch=hist.epoch)
        newer = await cent.history(HistoryRequest(channel="chat:room", limit=10, since=since))
        assert [p.offset for p in newer.publications] == [2, 3]
        await cent.history_remove(HistoryRemoveRequest(channel="chat:room"))
        assert (
            await cent.history(HistoryRequest(channel="chat:room", limit=10))
        ).publications == []

        info = await cent.info(InfoRequest())
        node = info.nodes[0]
        assert (node.num_clients, node.num_users, node.num_channels, node.num_subs) == (2, 2, 2, 3)
        assert node.uid and node.name and node.version

        chans = await cent.channels(ChannelsRequest())
        assert {k: v.num_clients for k, v in chans.channels.items()} == {
            "chat:room": 2,
            "plain": 1,
        }
        only = await cent.channels(ChannelsRequest(pattern="chat:*"))
        assert list(only.channels) == ["chat:room"]
    finally:
        await a.close()
        await b.close()


async def test_subscribe_unsubscribe_refresh_disconnect(gw: Gateway, cent: AsyncClient) -> None:
    ws = await hub_client(gw, "carol")
    await cent.subscribe(SubscribeRequest(user="carol", channel="chat:news"))
    assert "subscribe" in (await recv_json(ws))["push"]
    await cent.publish(PublishRequest(channel="chat:news", data="x"))
    assert (await recv_json(ws))["push"]["pub"]["data"] == "x"
    await cent.unsubscribe(UnsubscribeRequest(user="carol", channel="chat:news"))
    assert (await recv_json(ws))["push"]["unsubscribe"]["code"] == 2000
    await cent.refresh(RefreshRequest(user="carol", expire_at=int(time.time()) + 600))
    assert (await recv_json(ws))["push"]["refresh"]["expires"] is True
    await cent.disconnect(
        DisconnectRequest(user="carol", disconnect=Disconnect(code=4100, reason="kicked"))
    )
    assert await close_code(ws) == 4100


async def test_batch(gw: Gateway, cent: AsyncClient) -> None:
    ws = await hub_client(gw, "dave", "plain")
    try:
        res = await cent.batch(
            BatchRequest(
                requests=[
                    PublishRequest(channel="plain", data={"i": 1}),
                    PublishRequest(channel="chat:b", data={"i": 2}),
                    HistoryRequest(channel="chat:b", limit=5),
                    InfoRequest(),
                ]
            )
        )
        first, second, hist, info = res.replies
        assert first.offset == 0 and second.offset == 1
        assert [p.data for p in hist.publications] == [{"i": 2}]
        assert info.nodes[0].num_clients == 1
        assert (await recv_json(ws))["push"]["pub"]["data"] == {"i": 1}
        par = await cent.batch(
            BatchRequest(
                requests=[PublishRequest(channel="plain", data=n) for n in range(3)], parallel=True
            )
        )
        assert len(par.replies) == 3
    finally:
        await ws.close()


async def test_errors_map_to_cent_exceptions(gw: Gateway, cent: AsyncClient) -> None:
    with pytest.raises(CentApiResponseError) as err:
        await cent.publish(PublishRequest(channel="nope:x", data={}))
    assert err.value.code == 102
    with pytest.raises(CentApiResponseError) as err:
        await cent.presence(PresenceRequest(channel="plain"))
    assert err.value.code == 108
    async with AsyncClient(http_url(gw, "/api"), "wrong-key") as bad:
        with pytest.raises(CentUnauthorizedError):
            await bad.info(InfoRequest())
    async with AsyncClient(http_url(gw, "/nope"), API_KEY) as lost:
        with pytest.raises(CentTransportError):
            await lost.info(InfoRequest())


async def test_sync_client_in_a_thread(gw: Gateway) -> None:
    ws = await hub_client(gw, "erin", "plain")
    try:

        def publish() -> int:
            with Client(http_url(gw, "/api"), API_KEY, timeout=5) as client:
                return client.publish(PublishRequest(channel="plain", data={"sync": True})).offset

        assert await asyncio.to_thread(publish) == 0
        assert (await recv_json(ws))["push"]["pub"]["data"] == {"sync": True}
    finally:
        await ws.close()
