"""/metrics: real clients and real traffic move the Prometheus series, and no label value
ever carries a user id, a token or a channel name."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import jwt
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from conftest import GatewayFactory, http_url, make_config, open_namespace, ws_url
from wshub.app import App
from wshub.gateway import Gateway

API_KEY = "metrics-api-key-0123456789"
SECRET = "test-secret-that-is-long-enough-for-hs256"
USERS = ("user-7781-alice", "user-9932-bob")
CHANNELS = ("chat:room-4412-secret", "plainroom-5531")
TOKENS = {u: jwt.encode({"sub": u}, SECRET, algorithm="HS256") for u in USERS}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape_text(gw: Gateway) -> str:
    async with httpx.AsyncClient() as c:
        r = await c.get(http_url(gw, "/metrics"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


def samples(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(s: Samples, name: str, **labels: str) -> float:
    return s.get((name, tuple(sorted(labels.items()))), 0.0)


async def recv_json(ws: websockets.ClientConnection) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), 2.0)
    assert isinstance(raw, str)
    return json.loads(raw)  # type: ignore[no-any-return]


async def command(ws: websockets.ClientConnection, cmd: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(cmd))
    while True:
        reply = await recv_json(ws)
        if reply.get("id") == cmd["id"]:
            return reply


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> Gateway:
    app = App()

    @app.rpc("work")
    async def work(_ctx: Any, data: Any) -> Any:
        return data

    cfg = make_config(
        api_key=API_KEY,
        token__hmac_secret=SECRET,
        origin={"allowed": ["https://ok.example"]},
        namespaces=[open_namespace(""), open_namespace("chat", history_size=5, history_ttl=60)],
    )
    return await gateway_factory(cfg, app)


async def traffic(gw: Gateway) -> list[websockets.ClientConnection]:
    """Two users subscribe and publish, one calls an RPC, one gets an error reply, an
    upgrade is refused, and the API publishes."""
    clients = []
    for user in USERS:
        ws = await websockets.connect(ws_url(gw))
        assert "connect" in await command(ws, {"id": 1, "connect": {"token": TOKENS[user]}})
        for i, ch in enumerate(CHANNELS, start=2):
            assert "subscribe" in await command(ws, {"id": i, "subscribe": {"channel": ch}})
        clients.append(ws)
    a, b = clients
    await command(a, {"id": 10, "publish": {"channel": CHANNELS[0], "data": {"x": 1}}})
    assert (await recv_json(b))["push"]["pub"]["data"] == {"x": 1}
    assert (await command(a, {"id": 11, "rpc": {"method": "work", "data": 1}}))["rpc"]
    err = await command(b, {"id": 12, "subscribe": {"channel": "unknown-ns:room-9"}})
    assert err["error"]["code"] == 102
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(ws_url(gw), origin=websockets.Origin("https://evil.example"))
    async with httpx.AsyncClient(headers={"X-API-Key": API_KEY}) as api:
        r = await api.post(
            http_url(gw, "/api/publish"), json={"channel": CHANNELS[1], "data": "hi"}
        )
        assert r.json() == {"result": {}}
        await api.post(http_url(gw, "/api/publish"), json={"channel": "nope:x", "data": 1})
    for ws in clients:
        assert (await recv_json(ws))["push"]["pub"]["data"] == "hi"
    return clients


async def test_traffic_moves_the_metrics(gw: Gateway) -> None:
    before = samples(await scrape_text(gw))
    clients = await traffic(gw)
    s = samples(await scrape_text(gw))
    assert value(s, "wshub_connections") == 2
    assert value(s, "wshub_connects_total", route="hub") == 2
    assert value(s, "wshub_subscriptions") == 4
    assert value(s, "wshub_channels") == 2
    for name in ("messages_in", "messages_out", "bytes_in", "bytes_out"):
        assert value(s, f"wshub_{name}_total") > value(before, f"wshub_{name}_total"), name
    # 4 connect+subscribe x3 commands, publish, rpc, failing subscribe at least.
    assert value(s, "wshub_messages_in_total") >= 9
    assert value(s, "wshub_bytes_in_total") > 200
    assert value(s, "wshub_publications_total") == 2
    assert value(s, "wshub_deliveries_total") == 4
    assert value(s, "wshub_delivery_latency_seconds_count") == 2
    assert value(s, "wshub_delivery_latency_seconds_bucket", le="+Inf") == 2
    assert value(s, "wshub_handler_duration_seconds_count", method="work") == 1
    assert value(s, "wshub_command_errors_total", code="102") == 1
    rejected = value(
        s, "wshub_middleware_rejections_total", reason="origin_not_allowed", status="403"
    )
    assert rejected == 1
    assert value(s, "wshub_api_requests_total", method="publish", outcome="ok") == 1
    assert value(s, "wshub_api_requests_total", method="publish", outcome="102") == 1
    assert value(s, "wshub_api_duration_seconds_count", method="publish") == 2
    for present in (
        "wshub_slow_consumer_disconnects_total",
        "wshub_dead_peer_disconnects_total",
        "wshub_broker_errors_total",
        "wshub_broker_reconnects_total",
    ):
        assert any(k[0] == present for k in s), present

    # Disconnects are counted by close code; closed connections keep their traffic.
    async with httpx.AsyncClient(headers={"X-API-Key": API_KEY}) as api:
        body = {"user": USERS[0], "disconnect": {"code": 4000, "reason": "bye"}}
        assert (await api.post(http_url(gw, "/api/disconnect"), json=body)).json() == {"result": {}}
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(clients[0].recv(), 3)
    for _ in range(50):
        after = samples(await scrape_text(gw))
        if value(after, "wshub_disconnects_total", code="4000") == 1:
            break
        await asyncio.sleep(0.05)
    assert value(after, "wshub_disconnects_total", code="4000") == 1
    assert value(after, "wshub_connections") == 1
    assert value(after, "wshub_messages_in_total") >= value(s, "wshub_messages_in_total")
    await clients[1].close()


async def test_no_label_carries_a_user_id_token_or_channel(gw: Gateway) -> None:
    clients = await traffic(gw)
    text = await scrape_text(gw)
    secrets = [*USERS, *TOKENS.values(), *CHANNELS, "unknown-ns:room-9", "room-4412", API_KEY]
    label_values = [
        v
        for fam in text_string_to_metric_families(text)
        for sample in fam.samples
        for v in sample.labels.values()
    ]
    assert label_values  # labelled series exist
    for v in label_values:
        for secret in secrets:
            assert secret not in v, (v, secret)
    for secret in secrets:
        assert secret not in text
    for ws in clients:
        await ws.close()
