"""The client protocol over real sockets, with a raw JSON WebSocket client: the exact frames
SDKs rely on, and what hostile input gets."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
import pytest
import websockets

from support import GatewayFactory, make_config, open_namespace, ws_url
from wshub.app import App

SECRET = "test-secret-that-is-long-enough-for-hs256"


def token(sub: str = "alice", **claims: Any) -> str:
    return jwt.encode({"sub": sub, **claims}, SECRET, algorithm="HS256")


async def recv_json(ws: websockets.ClientConnection, timeout: float = 2.0) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(raw, str)
    return json.loads(raw)  # type: ignore[no-any-return]


async def connect(ws: websockets.ClientConnection, tok: str | None = None) -> dict[str, Any]:
    body = {"token": tok} if tok else {}
    await ws.send(json.dumps({"id": 1, "connect": body}))
    return await recv_json(ws)


async def closed_with(ws: websockets.ClientConnection) -> tuple[int, str]:
    with pytest.raises(websockets.ConnectionClosed) as info:
        for _ in range(10):
            await asyncio.wait_for(ws.recv(), 3)
    rcvd = info.value.rcvd
    assert rcvd is not None, "closed without a close frame"
    return rcvd.code, rcvd.reason


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> Any:
    app = App()

    @app.rpc("echo")
    async def echo(_ctx: Any, data: Any) -> Any:
        return data

    @app.rpc("boom")
    async def boom(_ctx: Any, _data: Any) -> Any:
        raise RuntimeError("secret internal detail")

    @app.rpc("slow")
    async def slow(_ctx: Any, data: Any) -> Any:
        await asyncio.sleep(0.2)
        return data

    cfg = make_config(
        token__hmac_secret=SECRET,
        client={"command_rate": 50.0, "command_burst": 20, "command_rate_disconnect_after": 30},
        websocket={"max_message_size": 4096},
        namespaces=[
            open_namespace(""),
            {"name": "closed"},
            open_namespace("hist", history_size=10, history_ttl=60),
            open_namespace("forced", history_size=10, history_ttl=60, force_recovery=True),
            open_namespace(
                "anon", history_size=10, history_ttl=60, client_publication_exclude_client_info=True
            ),
        ],
    )
    return await gateway_factory(cfg, app)


async def test_connect_reply_carries_client_ping_and_pong(gw: Any) -> None:
    async with websockets.connect(ws_url(gw)) as ws:
        reply = await connect(ws, token("alice"))
    assert reply["id"] == 1
    res = reply["connect"]
    assert res["client"] and res["pong"] is True and res["ping"] == 25
    assert "error" not in reply


async def test_missing_token_is_unauthorized_unless_anonymous_allowed(
    gw: Any, gateway_factory: GatewayFactory
) -> None:
    async with websockets.connect(ws_url(gw)) as ws:
        reply = await connect(ws)
    assert reply["error"]["code"] == 101
    anon = await gateway_factory(make_config(client={"allow_anonymous": True}))
    async with websockets.connect(ws_url(anon)) as ws:
        reply = await connect(ws)
    assert "connect" in reply


async def test_invalid_token_disconnects_3500_and_expired_gets_109(gw: Any) -> None:
    async with websockets.connect(ws_url(gw)) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": token() + "x"}}))
        code, _ = await closed_with(ws)
    assert code == 3500
    async with websockets.connect(ws_url(gw)) as ws:
        reply = await connect(ws, token(exp=1))
    assert reply["error"]["code"] == 109


async def test_several_commands_in_one_frame_answered_in_one_frame(gw: Any) -> None:
    async with websockets.connect(ws_url(gw)) as ws:
        await connect(ws, token())
        frame = "\n".join(
            json.dumps(c)
            for c in (
                {"id": 2, "subscribe": {"channel": "room"}},
                {"id": 3, "rpc": {"method": "echo", "data": {"a": 1}}},
                {"id": 4, "publish": {"channel": "room", "data": {"n": 1}}},
            )
        )
        await ws.send(frame)
        raw = await asyncio.wait_for(ws.recv(), 2)
        lines = [json.loads(x) for x in str(raw).split("\n")]
        assert [x["id"] for x in lines] == [2, 3, 4]
        assert lines[1]["rpc"]["data"] == {"a": 1}
        push = await recv_json(ws)  # the publication follows the replies
        assert push["push"]["channel"] == "room" and push["push"]["pub"]["data"] == {"n": 1}


async def test_publication_reaches_other_subscribers_with_offsets(gw: Any) -> None:
    async with websockets.connect(ws_url(gw)) as a, websockets.connect(ws_url(gw)) as b:
        await connect(a, token("a"))
        await connect(b, token("b"))
        await a.send(json.dumps({"id": 2, "subscribe": {"channel": "hist:x"}}))
        sub = (await recv_json(a))["subscribe"]
        # History without the SDK's recoverable option: positioned, not recoverable.
        assert "recoverable" not in sub and sub["positioned"] is True and sub["epoch"]
        await a.send(json.dumps({"id": 3, "unsubscribe": {"channel": "hist:x"}}))
        await recv_json(a)
        await a.send(json.dumps({"id": 4, "subscribe": {"channel": "hist:x", "recoverable": True}}))
        assert (await recv_json(a))["subscribe"]["recoverable"] is True
        for n in range(3):
            await b.send(json.dumps({"id": 10 + n, "publish": {"channel": "hist:x", "data": n}}))
            assert (await recv_json(b))["id"] == 10 + n
        pubs = [(await recv_json(a))["push"]["pub"] for _ in range(3)]
        assert [p["data"] for p in pubs] == [0, 1, 2]
        assert [p["offset"] for p in pubs] == [1, 2, 3]
        assert pubs[0]["info"]["user"] == "b"


async def test_exclude_client_info_leaves_the_publisher_out(gw: Any) -> None:
    # client_publication_exclude_client_info: neither the push nor history names the publisher.
    async with websockets.connect(ws_url(gw)) as a, websockets.connect(ws_url(gw)) as b:
        await connect(a, token("a"))
        await connect(b, token("b"))
        await a.send(json.dumps({"id": 2, "subscribe": {"channel": "anon:x"}}))
        await recv_json(a)
        await b.send(json.dumps({"id": 3, "publish": {"channel": "anon:x", "data": {"n": 1}}}))
        assert (await recv_json(b))["id"] == 3
        pub = (await recv_json(a))["push"]["pub"]
        assert pub == {"data": {"n": 1}, "offset": 1}
        await a.send(json.dumps({"id": 4, "history": {"channel": "anon:x", "limit": 5}}))
        hist = (await recv_json(a))["history"]["publications"]
        assert [p.get("info") for p in hist] == [None]


async def test_recovery_returns_exactly_the_missed_publications(gw: Any) -> None:
    async with websockets.connect(ws_url(gw)) as a:
        await connect(a, token("a"))
        await a.send(json.dumps({"id": 2, "subscribe": {"channel": "hist:r"}}))
        sub = (await recv_json(a))["subscribe"]
    epoch = sub["epoch"]
    for n in range(5):
        await gw.node.publish("hist:r", json.dumps(n).encode())
    async with websockets.connect(ws_url(gw)) as a:
        await connect(a, token("a"))
        req = {"channel": "hist:r", "recover": True, "offset": 2, "epoch": epoch}
        await a.send(json.dumps({"id": 3, "subscribe": req}))
        res = (await recv_json(a))["subscribe"]
        assert res["recovered"] is True and res["was_recovering"] is True
        assert [p["data"] for p in res["publications"]] == [2, 3, 4]
        assert [p["offset"] for p in res["publications"]] == [3, 4, 5]
        assert res["offset"] == 5 and res["epoch"] == epoch
        # A wrong epoch is never a silent gap.
        req = {"channel": "hist:r", "recover": True, "offset": 2, "epoch": "other"}
        await a.send(json.dumps({"id": 4, "unsubscribe": {"channel": "hist:r"}}))
        await recv_json(a)
        await a.send(json.dumps({"id": 5, "subscribe": req}))
        res = (await recv_json(a))["subscribe"]
        assert res.get("recovered", False) is False and "publications" not in res


async def test_permission_errors_and_unknown_namespace(gw: Any) -> None:
    async with websockets.connect(ws_url(gw)) as ws:
        await connect(ws, token())
        await ws.send(json.dumps({"id": 2, "subscribe": {"channel": "closed:x"}}))
        assert (await recv_json(ws))["error"]["code"] == 103
        await ws.send(json.dumps({"id": 3, "subscribe": {"channel": "nope:x"}}))
        assert (await recv_json(ws))["error"]["code"] == 102
        await ws.send(json.dumps({"id": 4, "subscribe": {"channel": "bad channel"}}))
        assert (await recv_json(ws))["error"]["code"] == 107
        await ws.send(json.dumps({"id": 5, "subscribe": {"channel": "x" * 300}}))
        assert (await recv_json(ws))["error"]["code"] == 107
        await ws.send(json.dumps({"id": 6, "rpc": {"method": "missing"}}))
        assert (await recv_json(ws))["error"]["code"] == 104
        await ws.send(json.dumps({"id": 7, "presence": {"channel": "room"}}))
        assert (await recv_json(ws))["error"]["code"] == 108
        await ws.send(json.dumps({"id": 8, "subscribe": {"channel": "room"}}))
        await recv_json(ws)
        await ws.send(json.dumps({"id": 9, "subscribe": {"channel": "room"}}))
        assert (await recv_json(ws))["error"]["code"] == 105


async def test_raising_handler_answers_100_and_nothing_else_is_affected(gw: Any) -> None:
    async with websockets.connect(ws_url(gw)) as a, websockets.connect(ws_url(gw)) as b:
        await connect(a, token("a"))
        await connect(b, token("b"))
        await a.send(json.dumps({"id": 2, "rpc": {"method": "boom"}}))
        err = (await recv_json(a))["error"]
        assert err["code"] == 100 and "secret" not in json.dumps(err)
        for ws in (a, b):
            await ws.send(json.dumps({"id": 3, "rpc": {"method": "echo", "data": 7}}))
            assert (await recv_json(ws))["rpc"]["data"] == 7


async def test_slow_handler_does_not_block_other_connections(gw: Any) -> None:
    async with websockets.connect(ws_url(gw)) as a, websockets.connect(ws_url(gw)) as b:
        await connect(a, token("a"))
        await connect(b, token("b"))
        await a.send(json.dumps({"id": 2, "rpc": {"method": "slow", "data": 1}}))
        await b.send(json.dumps({"id": 2, "rpc": {"method": "echo", "data": 2}}))
        first = await recv_json(b, timeout=0.15)
        assert first["rpc"]["data"] == 2
        assert (await recv_json(a))["rpc"]["data"] == 1


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("this is not json", 3501),
        ('{"id": 1, "connect": {}', 3501),
        ('{"id": "one", "connect": {}}', 3501),
        ('{"id": 1, "subscribe": {"channel": "room"}}', 3501),  # before connect
        ('{"id": 1, "frobnicate": {}}', 3501),  # unknown command before connect
    ],
)
async def test_bad_frames_before_connect_close_with_bad_request(
    gw: Any, frame: str, code: int
) -> None:
    async with websockets.connect(ws_url(gw)) as victim, websockets.connect(ws_url(gw)) as other:
        await connect(other, token("other"))
        await victim.send(frame)
        got, reason = await closed_with(victim)
        assert got == code and reason == "bad request"
        await other.send(json.dumps({"id": 2, "rpc": {"method": "echo", "data": 1}}))
        assert (await recv_json(other))["rpc"]["data"] == 1


async def test_unknown_command_and_second_connect_after_connect(gw: Any) -> None:
    for frame in ('{"id": 5, "frobnicate": {}}', '{"id": 5, "connect": {}}', "[1,2]"):
        async with websockets.connect(ws_url(gw)) as ws:
            await connect(ws, token())
            await ws.send(frame)
            code, _ = await closed_with(ws)
            assert code == 3501, frame


async def test_oversized_command_closes_1009_and_others_go_on(gw: Any) -> None:
    async with websockets.connect(ws_url(gw)) as a, websockets.connect(ws_url(gw)) as b:
        await connect(a, token("a"))
        await connect(b, token("b"))
        big = json.dumps({"id": 2, "rpc": {"method": "echo", "data": "x" * 5000}})
        await a.send(big)
        code, _ = await closed_with(a)
        assert code == 1009
        await b.send(json.dumps({"id": 2, "rpc": {"method": "echo", "data": 1}}))
        assert (await recv_json(b))["rpc"]["data"] == 1


async def test_command_flood_gets_111_then_disconnect_3013(gw: Any) -> None:
    async with websockets.connect(ws_url(gw)) as ws:
        await connect(ws, token())
        for i in range(200):
            await ws.send(json.dumps({"id": 100 + i, "rpc": {"method": "echo", "data": i}}))
        codes_seen: list[int] = []
        with pytest.raises(websockets.ConnectionClosed) as info:
            while True:
                msg = await recv_json(ws)
                if "error" in msg:
                    codes_seen.append(msg["error"]["code"])
        assert 111 in codes_seen
        assert info.value.rcvd is not None and info.value.rcvd.code == 3013


async def test_pong_keeps_connection_and_silence_is_disconnected(
    gateway_factory: GatewayFactory,
) -> None:
    cfg = make_config(
        client={"allow_anonymous": True},
        websocket={"ping_interval": 0.3, "pong_timeout": 0.3},
    )
    gw = await gateway_factory(cfg)
    async with websockets.connect(ws_url(gw), ping_interval=None) as good:
        await connect(good)
        async with websockets.connect(ws_url(gw), ping_interval=None) as silent:
            await connect(silent)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            # ``good`` answers every {} ping with {}; ``silent`` reads but never answers.
            pings = 0
            while loop.time() - t0 < 1.2:
                msg = await asyncio.wait_for(good.recv(), 1)
                if msg == "{}":
                    pings += 1
                    await good.send("{}")
            assert pings >= 2
            code, reason = await closed_with(silent)
            assert code == 3012 and reason == "no pong"
        await good.send(json.dumps({"id": 9, "presence_stats": {"channel": "x"}}))
        reply = await recv_json(good)
        assert reply["id"] == 9  # still connected (an error reply is fine: no presence)


async def test_stale_connection_without_connect_is_closed(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(make_config(websocket={"connect_timeout": 0.3}))
    async with websockets.connect(ws_url(gw)) as ws:
        code, _ = await closed_with(ws)
    assert code == 3502


async def test_stale_sweep_closes_each_late_connection_on_time_and_spares_the_rest(
    gateway_factory: GatewayFactory,
) -> None:
    # One sweeper serves every pending connection: connections opened at different times
    # each go stale about connect_timeout after their own open, never early; the ones that
    # sent connect in time (even just before their deadline) stay.
    timeout = 1.0
    gw = await gateway_factory(
        make_config(token__hmac_secret=SECRET, websocket={"connect_timeout": timeout})
    )
    loop = asyncio.get_running_loop()

    async def stale_after(
        before: float, after: float, ws: websockets.ClientConnection
    ) -> tuple[float, float]:
        code, _ = await closed_with(ws)
        assert code == 3502
        now = loop.time()
        return now - before, now - after

    watchers: list[asyncio.Task[tuple[float, float]]] = []
    for _ in range(3):
        for _ in range(5):
            before = loop.time()  # the server opens it between these two
            ws = await websockets.connect(ws_url(gw))
            watchers.append(asyncio.create_task(stale_after(before, loop.time(), ws)))
        await asyncio.sleep(0.4)
    keeper = await websockets.connect(ws_url(gw))
    await asyncio.sleep(timeout * 0.5)
    await connect(keeper, token())
    try:
        waited = await asyncio.gather(*watchers)
        assert min(w for _, w in waited) >= timeout  # never early
        assert max(w for w, _ in waited) < timeout + 0.6  # the sweep's slack is 0.1 s
        assert not gw.node._pending and gw.node._sweeper is None  # swept clean
        await keeper.send(json.dumps({"id": 2, "rpc": {"method": "nope"}}))
        assert (await recv_json(keeper))["id"] == 2  # the connected one is still there
    finally:
        await keeper.close()


async def test_force_recovery_makes_every_subscription_recoverable(gw: Any) -> None:
    async with websockets.connect(ws_url(gw)) as ws:
        await connect(ws, token())
        await ws.send(json.dumps({"id": 2, "subscribe": {"channel": "forced:x"}}))
        assert (await recv_json(ws))["subscribe"]["recoverable"] is True
        await ws.send(json.dumps({"id": 3, "presence_stats": {"channel": "forced:x"}}))
        assert (await recv_json(ws))["error"]["code"] == 108


async def test_expired_subscription_token_ends_the_subscription_with_2501(
    gateway_factory: GatewayFactory,
) -> None:
    cfg = make_config(
        token__hmac_secret=SECRET,
        client={"expire_grace": 0.2},
        websocket={"ping_interval": 0.3, "pong_timeout": 0.3},
        namespaces=[{"name": "priv"}],
    )
    gw = await gateway_factory(cfg)
    loop = asyncio.get_running_loop()
    async with websockets.connect(ws_url(gw), ping_interval=None) as ws:
        await connect(ws, token("alice"))
        exp = int(time.time()) + 1
        sub_tok = token("alice", channel="priv:room", exp=exp)
        await ws.send(
            json.dumps({"id": 2, "subscribe": {"channel": "priv:room", "token": sub_tok}})
        )
        res = (await recv_json(ws))["subscribe"]
        assert res["expires"] is True and res["ttl"] >= 1
        t0 = loop.time()
        while True:
            msg = await recv_json(ws, timeout=4)
            if msg == {}:
                await ws.send("{}")
                continue
            break
        assert msg["push"]["channel"] == "priv:room"
        assert msg["push"]["unsubscribe"] == {"code": 2501, "reason": "subscription expired"}
        assert loop.time() - t0 < 3
        assert "priv:room" not in gw.node.hub.channels
        # The connection itself lives on.
        await ws.send(json.dumps({"id": 3, "unsubscribe": {"channel": "priv:room"}}))
        assert (await recv_json(ws))["id"] == 3


async def test_server_message_push_reaches_every_connection_of_the_user(gw: Any) -> None:
    async with (
        websockets.connect(ws_url(gw)) as a1,
        websockets.connect(ws_url(gw)) as a2,
        websockets.connect(ws_url(gw)) as b,
    ):
        await connect(a1, token("alice"))
        await connect(a2, token("alice"))
        await connect(b, token("bob"))
        assert gw.node.send_to_user("alice", b'{"note":"hi"}') == 2
        for ws in (a1, a2):
            assert await recv_json(ws) == {"push": {"message": {"data": {"note": "hi"}}}}
        with pytest.raises(TimeoutError):
            await recv_json(b, timeout=0.2)
