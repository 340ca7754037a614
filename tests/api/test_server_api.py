"""The server HTTP API over real sockets: authentication, the HTTP statuses, every method's
reply shape, effects seen by real WebSocket clients, CORS, and no API key in the logs."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import websockets

from conftest import GatewayFactory, http_url, make_config, open_namespace, ws_url
from wshub.gateway import Gateway
from wshub.logs import setup_logging

API_KEY = "api-key-for-tests-0123456789"
SECRET = "test-secret-that-is-long-enough-for-hs256"


def token(sub: str) -> str:
    return jwt.encode({"sub": sub}, SECRET, algorithm="HS256")


async def recv_json(ws: websockets.ClientConnection) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), 2.0)
    assert isinstance(raw, str)
    return json.loads(raw)  # type: ignore[no-any-return]


async def hub_client(gw: Gateway, user: str, *channels: str) -> websockets.ClientConnection:
    """A connected JSON-protocol client of ``user``, subscribed to ``channels``."""
    ws = await websockets.connect(ws_url(gw))
    await ws.send(json.dumps({"id": 1, "connect": {"token": token(user)}}))
    assert "connect" in await recv_json(ws)
    for i, ch in enumerate(channels, start=2):
        await ws.send(json.dumps({"id": i, "subscribe": {"channel": ch}}))
        reply = await recv_json(ws)
        assert "subscribe" in reply, reply
    return ws


async def closed_with(ws: websockets.ClientConnection) -> tuple[int, str]:
    with pytest.raises(websockets.ConnectionClosed) as info:
        for _ in range(10):
            await asyncio.wait_for(ws.recv(), 3)
    rcvd = info.value.rcvd
    assert rcvd is not None
    return rcvd.code, rcvd.reason


def config(**overrides: Any) -> Any:
    opts: dict[str, Any] = dict(
        api_key=API_KEY,
        token__hmac_secret=SECRET,
        namespaces=[
            open_namespace(""),
            open_namespace("hist", history_size=10, history_ttl=60),
            open_namespace("pres", presence=True),
        ],
    )
    opts.update(overrides)
    return make_config(**opts)


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> Gateway:
    return await gateway_factory(config())


@pytest.fixture
async def api(gw: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=http_url(gw), headers={"X-API-Key": API_KEY}) as c:
        yield c


async def call(api: httpx.AsyncClient, method: str, body: Any) -> dict[str, Any]:
    r = await api.post(f"/api/{method}", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()  # type: ignore[no-any-return]


# -- authentication and HTTP statuses ------------------------------------------------------


async def test_key_in_either_header_is_accepted_others_get_401(gw: Gateway) -> None:
    url = http_url(gw, "/api/info")
    async with httpx.AsyncClient() as c:
        ok1 = await c.post(url, json={}, headers={"X-API-Key": API_KEY})
        ok2 = await c.post(url, json={}, headers={"Authorization": f"apikey {API_KEY}"})
        ok3 = await c.post(url, json={}, headers={"Authorization": f"APIKEY {API_KEY}"})
        missing = await c.post(url, json={})
        wrong = await c.post(url, json={}, headers={"X-API-Key": API_KEY + "x"})
        prefix = await c.post(url, json={}, headers={"X-API-Key": API_KEY[:-1]})
        bearer = await c.post(url, json={}, headers={"Authorization": f"Bearer {API_KEY}"})
    assert [r.status_code for r in (ok1, ok2, ok3)] == [200, 200, 200]
    assert [r.status_code for r in (missing, wrong, prefix, bearer)] == [401] * 4
    assert missing.json() == {"error": {"code": 101, "message": "unauthorized"}}


async def test_api_off_without_a_key_is_404(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(config(api_key=""))
    async with httpx.AsyncClient(base_url=http_url(gw)) as c:
        assert (await c.post("/api/info", json={}, headers={"X-API-Key": ""})).status_code == 404
        assert (await c.post("/api/publish", json={})).status_code == 404
        assert (await c.get("/api/openapi.json")).status_code == 404
        assert (await c.get("/health")).status_code == 200


async def test_bad_bodies_are_400_with_a_clear_message(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/publish", content=b'{"channel": "a", ')
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]["message"]
    r = await api.post("/api/publish", content=b"[1, 2]")
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "bad request: body must be a JSON object"
    r = await api.post("/api/publish", json={"channel": 5, "data": {}})
    assert r.status_code == 400
    assert "$.channel" in r.json()["error"]["message"]


async def test_unknown_method_is_404_and_get_is_405(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/no_such_method", json={})
    assert r.status_code == 404 and r.json()["error"]["code"] == 104
    assert (await api.get("/api/publish")).status_code == 405


async def test_errors_inside_a_method_use_protocol_codes(api: httpx.AsyncClient) -> None:
    assert await call(api, "publish", {"data": 1}) == {
        "error": {"code": 107, "message": "channel required"}
    }
    assert (await call(api, "publish", {"channel": "nope:x", "data": 1}))["error"]["code"] == 102
    assert (await call(api, "publish", {"channel": "room"}))["error"]["code"] == 107
    assert (await call(api, "publish", {"channel": "bad channel", "data": 1}))["error"][
        "code"
    ] == 107
    assert (await call(api, "history", {"channel": "room"}))["error"]["code"] == 108
    assert (await call(api, "presence", {"channel": "room"}))["error"]["code"] == 108
    assert (await call(api, "subscribe", {"channel": "room"}))["error"]["code"] == 107
    assert (await call(api, "disconnect", {}))["error"]["code"] == 107
    assert (await call(api, "broadcast", {"channels": [], "data": 1}))["error"]["code"] == 107


# -- publish and broadcast -----------------------------------------------------------------


async def test_publish_reaches_a_subscriber_with_the_exact_bytes(
    gw: Gateway, api: httpx.AsyncClient
) -> None:
    ws = await hub_client(gw, "alice", "room")
    try:
        body = (
            b'{"channel": "room", "data": {"text": "hi", "n": 1.50, "big": 123456789012345678901}}'
        )
        r = await api.post("/api/publish", content=body)
        assert r.json() == {"result": {}}  # no history in this namespace
        raw = await asyncio.wait_for(ws.recv(), 2)
        assert isinstance(raw, str)
        # Raw JSON is forwarded as sent: no re-encoding (1.50 and the big int survive).
        assert '"data":{"text": "hi", "n": 1.50, "big": 123456789012345678901}' in raw
        # Pretty-printed data is folded onto one line (frames are newline-delimited).
        pretty = b'{"channel": "room",\n "data": {\n  "a": [1,\r\n 2]\n}\n}'
        await api.post("/api/publish", content=pretty)
        raw = await asyncio.wait_for(ws.recv(), 2)
        assert isinstance(raw, str) and "\n" not in raw and "\r" not in raw
        assert json.loads(raw)["push"]["pub"]["data"] == {"a": [1, 2]}
        # b64data carrying JSON, and tags.
        b64 = base64.b64encode(b'{"via":"b64"}').decode()
        await call(api, "publish", {"channel": "room", "b64data": b64, "tags": {"k": "v"}})
        pub = (await recv_json(ws))["push"]["pub"]
        assert pub["data"] == {"via": "b64"} and pub["tags"] == {"k": "v"}
        bad = await call(api, "publish", {"channel": "room", "b64data": "!!"})
        assert bad["error"]["code"] == 107
    finally:
        await ws.close()


async def test_publish_with_history_returns_offset_and_epoch(api: httpx.AsyncClient) -> None:
    r1 = (await call(api, "publish", {"channel": "hist:a", "data": {"n": 1}}))["result"]
    r2 = (await call(api, "publish", {"channel": "hist:a", "data": {"n": 2}}))["result"]
    assert r1["offset"] == 1 and r2["offset"] == 2 and r1["epoch"] == r2["epoch"] != ""
    skipped = await call(api, "publish", {"channel": "hist:a", "data": 3, "skip_history": True})
    assert skipped == {"result": {}}
    hist = (await call(api, "history", {"channel": "hist:a", "limit": -1}))["result"]
    assert [p["data"] for p in hist["publications"]] == [{"n": 1}, {"n": 2}]
    assert hist["offset"] == 2 and hist["epoch"] == r1["epoch"]
    top = (await call(api, "history", {"channel": "hist:a"}))["result"]
    assert "publications" not in top and top["offset"] == 2
    since = {"offset": 1, "epoch": r1["epoch"]}
    after = await call(api, "history", {"channel": "hist:a", "limit": 10, "since": since})
    assert [p["offset"] for p in after["result"]["publications"]] == [2]
    rev = await call(api, "history", {"channel": "hist:a", "limit": 1, "reverse": True})
    assert [p["offset"] for p in rev["result"]["publications"]] == [2]
    stale = {"offset": 1, "epoch": "other"}
    assert (await call(api, "history", {"channel": "hist:a", "limit": 1, "since": stale}))["error"][
        "code"
    ] == 112
    assert await call(api, "history_remove", {"channel": "hist:a"}) == {"result": {}}
    gone = (await call(api, "history", {"channel": "hist:a", "limit": -1}))["result"]
    assert "publications" not in gone


async def test_broadcast_answers_per_channel(gw: Gateway, api: httpx.AsyncClient) -> None:
    ws = await hub_client(gw, "bob", "b1", "b2")
    try:
        res = await call(api, "broadcast", {"channels": ["b1", "nope:x", "b2"], "data": [1]})
        assert res == {
            "result": {
                "responses": [
                    {"result": {}},
                    {"error": {"code": 102, "message": "unknown channel"}},
                    {"result": {}},
                ]
            }
        }
        got = {(await recv_json(ws))["push"]["channel"] for _ in range(2)}
        assert got == {"b1", "b2"}
    finally:
        await ws.close()


# -- user operations -----------------------------------------------------------------------


async def test_subscribe_and_unsubscribe_a_user(gw: Gateway, api: httpx.AsyncClient) -> None:
    ws = await hub_client(gw, "carol")
    other = await hub_client(gw, "dave")
    try:
        assert await call(api, "subscribe", {"user": "carol", "channel": "news"}) == {"result": {}}
        push = (await recv_json(ws))["push"]
        assert push["channel"] == "news" and "subscribe" in push
        await call(api, "publish", {"channel": "news", "data": "x"})
        assert (await recv_json(ws))["push"]["pub"]["data"] == "x"
        await call(api, "unsubscribe", {"user": "carol", "channel": "news"})
        push = (await recv_json(ws))["push"]
        assert push["unsubscribe"] == {"code": 2000, "reason": "server unsubscribe"}
        assert (await call(api, "subscribe", {"user": "carol", "channel": "nope:x"}))["error"][
            "code"
        ] == 102
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(other.recv(), 0.2)  # dave saw none of it
    finally:
        await ws.close()
        await other.close()


async def test_disconnect_with_custom_code_and_whitelist(
    gw: Gateway, api: httpx.AsyncClient
) -> None:
    a = await hub_client(gw, "erin")
    b = await hub_client(gw, "erin")
    info = (await call(api, "info", {}))["result"]["nodes"][0]
    assert info["num_clients"] == 2 and info["num_users"] == 1
    clients = [s.client for s in gw.node.hub.user_sessions("erin")]  # a's, then b's
    body = {
        "user": "erin",
        "whitelist": [clients[1]],
        "disconnect": {"code": 4001, "reason": "bye"},
    }
    assert await call(api, "disconnect", body) == {"result": {}}
    assert await closed_with(a) == (4001, "bye")
    assert clients[1] in gw.node.hub.clients  # the whitelisted one stays
    bad = await call(api, "disconnect", {"user": "erin", "disconnect": {"code": 1000}})
    assert bad["error"]["code"] == 107
    assert await call(api, "disconnect", {"user": "erin"}) == {"result": {}}
    assert await closed_with(b) == (3503, "force disconnect")


async def test_refresh_sets_expiry_or_expires(gw: Gateway, api: httpx.AsyncClient) -> None:
    ws = await hub_client(gw, "frank")
    exp = int(time.time()) + 3600
    assert await call(api, "refresh", {"user": "frank", "expire_at": exp}) == {"result": {}}
    push = (await recv_json(ws))["push"]
    assert push["refresh"]["expires"] is True and push["refresh"]["ttl"] > 0
    await call(api, "refresh", {"user": "frank", "expired": True})
    code, _ = await closed_with(ws)
    assert code == 3005


# -- presence, channels, info, batch -------------------------------------------------------


async def test_presence_channels_and_info(gw: Gateway, api: httpx.AsyncClient) -> None:
    a = await hub_client(gw, "gina", "pres:lobby", "room1")
    b = await hub_client(gw, "hank", "pres:lobby")
    try:
        pres = (await call(api, "presence", {"channel": "pres:lobby"}))["result"]["presence"]
        assert sorted(v["user"] for v in pres.values()) == ["gina", "hank"]
        assert all(k == v["client"] for k, v in pres.items())
        stats = await call(api, "presence_stats", {"channel": "pres:lobby"})
        assert stats == {"result": {"num_clients": 2, "num_users": 2}}
        chans = (await call(api, "channels", {}))["result"]["channels"]
        assert chans == {"pres:lobby": {"num_clients": 2}, "room1": {"num_clients": 1}}
        only = (await call(api, "channels", {"pattern": "pres:*"}))["result"]["channels"]
        assert list(only) == ["pres:lobby"]
        node = (await call(api, "info", {}))["result"]["nodes"][0]
        assert node["num_clients"] == 2 and node["num_users"] == 2
        assert node["num_channels"] == 2 and node["num_subs"] == 3
        assert node["uid"] and node["name"] and node["version"] and node["uptime"] >= 0
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("parallel", [False, True])
async def test_batch_runs_commands_and_answers_in_order(
    api: httpx.AsyncClient, parallel: bool
) -> None:
    body = {
        "commands": [
            {"publish": {"channel": "hist:batch", "data": 1}},
            {"publish": {"channel": "nope:x", "data": 2}},
            {"history": {"channel": "hist:batch", "limit": -1}},
            {"no_such": {}},
            {"publish": {"channel": 7}},
            {"info": {}},
        ],
        "parallel": parallel,
    }
    r = await api.post("/api/batch", json=body)
    assert r.status_code == 200
    replies = r.json()["replies"]
    assert len(replies) == 6
    assert replies[0]["publish"]["offset"] == 1
    assert replies[1] == {"error": {"code": 102, "message": "unknown channel"}}
    if not parallel:
        assert [p["data"] for p in replies[2]["history"]["publications"]] == [1]
    assert replies[3]["error"]["code"] == 104
    assert replies[4]["error"]["code"] == 107
    assert "nodes" in replies[5]["info"]
    assert (await api.post("/api/batch", json={"commands": 5})).status_code == 400


async def test_openapi_document_is_served(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    methods = {p.removeprefix("/api/") for p in doc["paths"]}
    assert methods == {
        "publish",
        "broadcast",
        "subscribe",
        "unsubscribe",
        "disconnect",
        "refresh",
        "presence",
        "presence_stats",
        "history",
        "history_remove",
        "channels",
        "info",
        "batch",
    }


# -- CORS ----------------------------------------------------------------------------------


async def test_cors_preflight_is_answered_and_cacheable(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(
        config(cors={"allowed_origins": ["https://app.example.com"], "max_age": 1234})
    )
    async with httpx.AsyncClient(base_url=http_url(gw)) as c:
        pre = await c.options(
            "/api/publish",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key, content-type",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://app.example.com"
        assert pre.headers["access-control-max-age"] == "1234"
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert "x-api-key" in pre.headers["access-control-allow-headers"].lower()
        evil = await c.options(
            "/api/publish",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert evil.status_code == 400
        assert "access-control-allow-origin" not in evil.headers
        real = await c.post(
            "/api/info",
            json={},
            headers={"Origin": "https://app.example.com", "X-API-Key": API_KEY},
        )
        assert real.headers["access-control-allow-origin"] == "https://app.example.com"


async def test_cors_off_by_default(gw: Gateway) -> None:
    async with httpx.AsyncClient(base_url=http_url(gw)) as c:
        r = await c.options(
            "/api/publish",
            headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
        )
    assert "access-control-allow-origin" not in r.headers


# -- secrets -------------------------------------------------------------------------------


async def test_api_key_and_admin_password_never_reach_the_logs(
    gateway_factory: GatewayFactory,
) -> None:
    password = "admin-password-for-tests-42"
    stream = io.StringIO()
    root_level = logging.getLogger().level
    handler = setup_logging("debug", stream=stream)
    try:
        gw = await gateway_factory(config(admin_password=password))
        async with httpx.AsyncClient(base_url=http_url(gw)) as c:
            await c.post("/api/info", json={}, headers={"X-API-Key": API_KEY})
            await c.post("/api/info", json={}, headers={"Authorization": f"apikey {API_KEY}"})
        log = logging.getLogger("wshub.test")
        log.warning("headers %s", {"X-API-Key": API_KEY})
        log.error("oops", extra={"detail": f"Authorization: apikey {API_KEY} / {password}"})
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(root_level)
    text = stream.getvalue()
    assert "[REDACTED]" in text
    assert API_KEY not in text and password not in text
