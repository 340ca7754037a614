"""The library side: every hook over real sockets, sync and async, and what a hook's failure
does (only its own command fails)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import websockets

from support import GatewayFactory, call, make_config, open_namespace, recv, ws_url
from wshub import (
    Allow,
    App,
    ClientContext,
    CommandError,
    ConnectContext,
    DisconnectContext,
    DisconnectError,
    PublishContext,
    RPCContext,
    SubscribeContext,
)
from wshub.codes import DISCONNECT_FORCE_NO_RECONNECT, ERROR_PERMISSION_DENIED


def hooks_app(events: list[Any]) -> App:
    app = App()

    @app.on_connecting
    async def connecting(ctx: ConnectContext) -> Any:
        data = ctx.data or {}
        if data.get("name") == "mallory":
            raise DisconnectError(DISCONNECT_FORCE_NO_RECONNECT)
        if data.get("name") == "eve":
            raise CommandError(ERROR_PERMISSION_DENIED, "go away")
        ctx.user = data.get("name", "")
        ctx.info = {"display": ctx.user.upper()}
        ctx.channels = ["news:all"]
        ctx.reply_data = {"welcome": ctx.user}
        return True

    @app.on_subscribe
    def subscribe(ctx: SubscribeContext) -> Any:  # a sync hook
        if ctx.channel == "rooms:secret":
            return False
        if ctx.channel == "rooms:vip":
            return Allow(info={"role": "vip"}, data={"motd": "hi"})
        return None

    @app.on_publish
    async def publish(ctx: PublishContext) -> Any:
        if ctx.data == "forbidden":
            raise CommandError(ERROR_PERMISSION_DENIED)
        if isinstance(ctx.data, dict) and "text" in ctx.data:
            return Allow(data={"text": ctx.data["text"].strip(), "by": ctx.client.user})
        return None

    @app.rpc("whoami")
    def whoami(ctx: RPCContext, _data: Any) -> Any:
        return {"user": ctx.client.user, "info": ctx.client.info, "method": ctx.method}

    @app.rpc("boom")
    async def boom(_ctx: RPCContext, _data: Any) -> Any:
        raise ValueError("internal detail 42")

    @app.rpc("hang")
    async def hang(_ctx: RPCContext, _data: Any) -> Any:
        await asyncio.sleep(30)

    @app.on_disconnect
    async def disconnect(ctx: DisconnectContext) -> None:
        events.append(("disconnect", ctx.client.user, ctx.code))

    @app.on_message
    def message(ctx: ClientContext, data: Any) -> None:
        events.append(("message", ctx.user, data))

    return app


@pytest.fixture
async def env(gateway_factory: GatewayFactory) -> Any:
    events: list[Any] = []
    cfg = make_config(
        workers={"timeout": 0.5},
        namespaces=[
            open_namespace("news", allow_publish_for_client=False),
            open_namespace("rooms", allow_subscribe_for_client=False, presence=True),
            open_namespace("open"),
        ],
    )
    gw = await gateway_factory(cfg, hooks_app(events))
    return gw, events


async def test_on_connecting_sets_identity_channels_and_reply(env: Any) -> None:
    gw, _ = env
    async with websockets.connect(ws_url(gw)) as ws:
        res = (await call(ws, 1, connect={"data": {"name": "alice"}}))["connect"]
        assert res["data"] == {"welcome": "alice"}
        assert "news:all" in res["subs"]  # server-side subscription
        who = (await call(ws, 2, rpc={"method": "whoami"}))["rpc"]["data"]
        assert who == {"user": "alice", "info": {"display": "ALICE"}, "method": "whoami"}
        await gw.node.publish("news:all", b'{"n":1}')
        push = await recv(ws)
        assert push["push"]["channel"] == "news:all" and push["push"]["pub"]["data"] == {"n": 1}


async def test_on_connecting_rejects_with_error_or_disconnect(env: Any) -> None:
    gw, _ = env
    async with websockets.connect(ws_url(gw)) as ws:
        err = (await call(ws, 1, connect={"data": {"name": "eve"}}))["error"]
        assert err == {"code": 103, "message": "go away"}
    async with websockets.connect(ws_url(gw)) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"data": {"name": "mallory"}}}))
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 3503


async def test_on_subscribe_denies_allows_and_sets_chan_info(env: Any) -> None:
    gw, _ = env
    async with websockets.connect(ws_url(gw)) as ws:
        await call(ws, 1, connect={"data": {"name": "bob"}})
        assert (await call(ws, 2, subscribe={"channel": "rooms:secret"}))["error"]["code"] == 103
        assert (await call(ws, 3, subscribe={"channel": "rooms:lobby"}))["error"]["code"] == 103
        res = (await call(ws, 4, subscribe={"channel": "rooms:vip"}))["subscribe"]
        assert res["data"] == {"motd": "hi"}
        pres = (await call(ws, 5, presence={"channel": "rooms:vip"}))["presence"]["presence"]
        (entry,) = pres.values()
        assert entry["chan_info"] == {"role": "vip"} and entry["user"] == "bob"


async def test_on_publish_transforms_and_rejects(env: Any) -> None:
    gw, _ = env
    async with websockets.connect(ws_url(gw)) as ws:
        await call(ws, 1, connect={"data": {"name": "carol"}})
        await call(ws, 2, subscribe={"channel": "open:x"})
        assert (await call(ws, 3, publish={"channel": "open:x", "data": "forbidden"}))["error"][
            "code"
        ] == 103
        assert "publish" in await call(
            ws, 4, publish={"channel": "open:x", "data": {"text": " hi "}}
        )
        push = await recv(ws)
        assert push["push"]["pub"]["data"] == {"text": "hi", "by": "carol"}
        # Allow() bypasses the namespace rule (news: does not allow client publishes).
        assert "publish" in await call(
            ws, 5, publish={"channel": "news:all", "data": {"text": "x"}}
        )
        assert (await call(ws, 6, publish={"channel": "news:all", "data": 1}))["error"][
            "code"
        ] == 103


async def test_raising_and_hanging_handlers_fail_only_their_command(
    env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gw, _ = env
    caplog.set_level(logging.ERROR)
    async with websockets.connect(ws_url(gw)) as ws, websockets.connect(ws_url(gw)) as other:
        await call(ws, 1, connect={"data": {"name": "dave"}})
        await call(other, 1, connect={"data": {"name": "erin"}})
        err = (await call(ws, 2, rpc={"method": "boom"}))["error"]
        assert err["code"] == 100 and "42" not in json.dumps(err)
        assert any("ValueError" in (r.exc_text or "") for r in caplog.records)
        err = (await call(ws, 3, rpc={"method": "hang"}))["error"]  # worker timeout 0.5 s
        assert err["code"] == 100
        for c in (ws, other):
            assert (await call(c, 4, rpc={"method": "whoami"}))["rpc"]["data"]["method"] == "whoami"


async def test_on_message_and_on_disconnect(env: Any) -> None:
    gw, events = env
    async with websockets.connect(ws_url(gw)) as ws:
        await call(ws, 1, connect={"data": {"name": "frank"}})
        await ws.send(json.dumps({"send": {"data": {"hello": 1}}}))
        await call(ws, 2, rpc={"method": "whoami"})
    for _ in range(100):
        if any(e[0] == "disconnect" for e in events):
            break
        await asyncio.sleep(0.02)
    assert ("message", "frank", {"hello": 1}) in events
    assert any(e[0] == "disconnect" and e[1] == "frank" for e in events)


async def test_subscription_limit_gives_106(gateway_factory: GatewayFactory) -> None:
    cfg = make_config(
        client={"allow_anonymous": True, "channel_limit": 2}, namespaces=[open_namespace("")]
    )
    gw = await gateway_factory(cfg)
    async with websockets.connect(ws_url(gw)) as ws:
        await call(ws, 1, connect={})
        assert "subscribe" in await call(ws, 2, subscribe={"channel": "a"})
        assert "subscribe" in await call(ws, 3, subscribe={"channel": "b"})
        assert (await call(ws, 4, subscribe={"channel": "c"}))["error"]["code"] == 106
