"""End to end with the real ``centrifuge-python`` SDK, in the test's event loop.

Every test starts a gateway with the shared fixtures and talks to it only through the
SDK's public API (Client, subscriptions, event handlers, get_token callbacks); the
server side acts through the gateway's node (publish, dropping a connection).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
from centrifuge import (
    Client,
    ClientEventHandler,
    ClientState,
    ReplyError,
    StreamPosition,
    Subscription,
    SubscriptionEventHandler,
    SubscriptionState,
)
from sdk_setup import GRACE, config, token

from support import GatewayFactory, open_namespace, ws_url
from wshub import codes
from wshub.app import App
from wshub.brokers.base import Publication
from wshub.example import app as example_app
from wshub.gateway import Gateway

WAIT = 5.0


class Recorder(ClientEventHandler, SubscriptionEventHandler):
    """Records every event of a client or a subscription as ``(name, ctx)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()

    def _record(self, name: str, ctx: Any) -> None:
        self.events.append((name, ctx))
        self._changed.set()

    def of(self, name: str) -> list[Any]:
        return [ctx for n, ctx in self.events if n == name]

    async def wait(
        self, name: str, pred: Callable[[Any], bool] = lambda _ctx: True, count: int = 1
    ) -> list[Any]:
        """Wait until ``count`` events ``name`` satisfying ``pred`` were recorded."""

        async def until() -> list[Any]:
            while True:
                found = [ctx for ctx in self.of(name) if pred(ctx)]
                if len(found) >= count:
                    return found
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(until(), WAIT)

    async def on_connecting(self, ctx: Any) -> None:
        self._record("connecting", ctx)

    async def on_connected(self, ctx: Any) -> None:
        self._record("connected", ctx)

    async def on_disconnected(self, ctx: Any) -> None:
        self._record("disconnected", ctx)

    async def on_error(self, ctx: Any) -> None:
        self._record("error", ctx)

    async def on_subscribing(self, ctx: Any) -> None:
        self._record("subscribing", ctx)

    async def on_subscribed(self, ctx: Any) -> None:
        self._record("subscribed", ctx)

    async def on_unsubscribed(self, ctx: Any) -> None:
        self._record("unsubscribed", ctx)

    async def on_publication(self, ctx: Any) -> None:
        self._record("publication", ctx)

    async def on_join(self, ctx: Any) -> None:
        self._record("join", ctx)

    async def on_leave(self, ctx: Any) -> None:
        self._record("leave", ctx)


Clients = Callable[..., tuple[Client, Recorder]]


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    """``clients(url, **Client kwargs)`` -> (client, recorder); all disconnected at the end."""
    made: list[Client] = []

    def make(url: str, **kwargs: Any) -> tuple[Client, Recorder]:
        rec = Recorder()
        opts: dict[str, Any] = dict(
            timeout=3.0, min_reconnect_delay=0.3, max_reconnect_delay=1.0, proxy=None
        )
        opts.update(kwargs)
        c = Client(url, events=rec, **opts)
        made.append(c)
        return c, rec

    yield make
    for c in made:
        await c.disconnect()


def subscribe(c: Client, channel: str, **kwargs: Any) -> tuple[Subscription, Recorder]:
    rec = Recorder()
    return c.new_subscription(channel, events=rec, **kwargs), rec


def session_of(gw: Gateway, user: str) -> Any:
    (s,) = gw.node.hub.user_sessions(user)
    return s


# -- tests ----------------------------------------------------------------------------------------


async def test_connect_with_jwt_and_echo_rpc(
    gateway_factory: GatewayFactory, clients: Clients
) -> None:
    gw = await gateway_factory(config(), example_app)
    c, rec = clients(ws_url(gw), token=token("alice", info={"name": "Alice"}))
    await c.connect()
    await c.ready(WAIT)
    (connected,) = rec.of("connected")
    assert connected.client and connected.version
    assert session_of(gw, "alice").client == connected.client
    assert (await c.rpc("echo", {"hello": "world"})).data == {"hello": "world"}


@pytest.mark.parametrize("allow", [False, True])
async def test_anonymous_connect(
    gateway_factory: GatewayFactory, clients: Clients, allow: bool
) -> None:
    gw = await gateway_factory(config(client={"allow_anonymous": allow}))
    c, rec = clients(ws_url(gw))
    await c.connect()
    if allow:
        await c.ready(WAIT)
        assert c.state == ClientState.CONNECTED
        # An anonymous client may use a namespace open to anonymous clients.
        sub, _ = subscribe(c, "room")
        await sub.subscribe()
        await sub.ready(WAIT)
    else:
        (ctx,) = await rec.wait("disconnected")
        assert (ctx.code, ctx.reason) == (101, "unauthorized")
        assert c.state == ClientState.DISCONNECTED
        assert not rec.of("connected")


async def test_publish_reaches_the_other_client(
    gateway_factory: GatewayFactory, clients: Clients
) -> None:
    gw = await gateway_factory(config())
    a, _ = clients(ws_url(gw), token=token("alice", info={"name": "Alice"}))
    b, _ = clients(ws_url(gw), token=token("bob"))
    await a.connect()
    await b.connect()
    sub, srec = subscribe(b, "room")
    await sub.subscribe()
    await sub.ready(WAIT)
    await a.publish("room", {"n": 1})
    await a.publish("room", {"n": 2})
    pubs = await srec.wait("publication", count=2)
    assert [p.pub.data for p in pubs] == [{"n": 1}, {"n": 2}]
    info = pubs[0].pub.info
    assert (info.user, info.conn_info) == ("alice", {"name": "Alice"})


async def test_presence_with_join_and_leave(
    gateway_factory: GatewayFactory, clients: Clients
) -> None:
    gw = await gateway_factory(config())
    a, _ = clients(ws_url(gw), token=token("alice"))
    b, _ = clients(ws_url(gw), token=token("bob"))
    await a.connect()
    sa, arec = subscribe(a, "pres:lobby", join_leave=True)
    await sa.subscribe()
    await sa.ready(WAIT)
    await b.connect()
    sb, _ = subscribe(b, "pres:lobby", join_leave=True)
    await sb.subscribe()
    await sb.ready(WAIT)
    await arec.wait("join", lambda ctx: ctx.info.user == "bob")
    presence = await sa.presence()
    assert sorted(ci.user for ci in presence.clients.values()) == ["alice", "bob"]
    assert set(presence.clients) == {ci.client for ci in presence.clients.values()}
    stats = await sa.presence_stats()
    assert (stats.num_clients, stats.num_users) == (2, 2)
    await b.disconnect()
    (left,) = await arec.wait("leave")
    assert left.info.user == "bob"
    presence = await a.presence("pres:lobby")
    assert [ci.user for ci in presence.clients.values()] == ["alice"]


async def test_history_limit_since_reverse(
    gateway_factory: GatewayFactory, clients: Clients
) -> None:
    gw = await gateway_factory(config())
    c, _ = clients(ws_url(gw), token=token("alice"))
    await c.connect()
    for n in range(1, 6):
        await c.publish("hist:h", {"n": n})

    def ns(res: Any) -> list[int]:
        return [p.data["n"] for p in res.publications]

    top = await c.history("hist:h")
    assert (ns(top), top.offset) == ([], 5) and top.epoch
    first = await c.history("hist:h", limit=2)
    assert ns(first) == [1, 2] and [p.offset for p in first.publications] == [1, 2]
    assert ns(await c.history("hist:h", limit=-1)) == [1, 2, 3, 4, 5]
    since = StreamPosition(offset=2, epoch=top.epoch)
    assert ns(await c.history("hist:h", limit=10, since=since)) == [3, 4, 5]
    assert ns(await c.history("hist:h", limit=2, reverse=True)) == [5, 4]
    since4 = StreamPosition(offset=4, epoch=top.epoch)
    assert ns(await c.history("hist:h", limit=-1, since=since4, reverse=True)) == [3, 2, 1]
    with pytest.raises(ReplyError) as info:
        await c.history("hist:h", limit=1, since=StreamPosition(offset=1, epoch="other"))
    assert info.value.code == 112
    with pytest.raises(ReplyError) as info:
        await c.history("room", limit=1)  # no history in this namespace
    assert info.value.code == 108


async def test_rpc_handler_error_is_100_and_the_connection_goes_on(
    gateway_factory: GatewayFactory, clients: Clients
) -> None:
    app = App()

    @app.rpc("echo")
    async def echo(_ctx: Any, data: Any) -> Any:
        return data

    @app.rpc("boom")
    def boom(_ctx: Any, _data: Any) -> Any:
        raise ValueError("handler bug")

    gw = await gateway_factory(config(), app)
    c, rec = clients(ws_url(gw), token=token("alice"))
    other, _ = clients(ws_url(gw), token=token("bob"))
    await c.connect()
    await other.connect()
    with pytest.raises(ReplyError) as info:
        await c.rpc("boom", {})
    assert (info.value.code, info.value.temporary) == (100, True)
    assert "handler bug" not in info.value.message
    with pytest.raises(ReplyError) as info:
        await c.rpc("nope", {})
    assert info.value.code == 104
    assert (await c.rpc("echo", [1, 2])).data == [1, 2]
    assert (await other.rpc("echo", "x")).data == "x"
    assert c.state == ClientState.CONNECTED and len(rec.of("connected")) == 1


async def test_token_refresh_keeps_the_connection(
    gateway_factory: GatewayFactory, clients: Clients
) -> None:
    gw = await gateway_factory(config())
    first = token("alice", ttl=2)
    first_exp = jwt.decode(first, options={"verify_signature": False})["exp"]
    calls: list[float] = []
    two = asyncio.Event()

    async def get_token() -> str:
        calls.append(time.time())
        if len(calls) == 2:
            two.set()
        return token("alice", ttl=2)

    c, rec = clients(ws_url(gw), token=first, get_token=get_token)
    await c.connect()
    await c.ready(WAIT)
    client_id = c.client_id
    # Past the first token's expiry and the grace after it.
    await asyncio.sleep(max(first_exp + GRACE + 0.5 - time.time(), 0))
    await asyncio.wait_for(two.wait(), WAIT)  # a chain of refreshes, not just one
    assert c.state == ClientState.CONNECTED and c.client_id == client_id
    assert (await c.publish("room", {"ok": True})) is not None
    assert len(rec.of("connecting")) == 1 and not rec.of("disconnected")
    assert session_of(gw, "alice").client == client_id


async def test_connection_without_refresh_is_closed_3005(
    gateway_factory: GatewayFactory, clients: Clients
) -> None:
    gw = await gateway_factory(config())
    tok = token("alice", ttl=1.5)
    exp = jwt.decode(tok, options={"verify_signature": False})["exp"]
    c, rec = clients(ws_url(gw), token=tok)
    await c.connect()
    await c.ready(WAIT)
    (expired,) = await rec.wait("connecting", lambda ctx: ctx.code != 0)
    assert (expired.code, expired.reason) == (
        codes.DISCONNECT_EXPIRED.code,
        codes.DISCONNECT_EXPIRED.reason,
    )
    assert exp + GRACE - 0.2 <= time.time() < exp + GRACE + 1.5
    # The SDK reconnects with the same, now expired, token: 109, and without get_token it
    # stops as unauthorized.
    (stopped,) = await rec.wait("disconnected")
    assert stopped.code == 1
    assert any(getattr(e.error, "code", None) == 109 for e in rec.of("error"))


async def test_subscription_token_and_sub_refresh(
    gateway_factory: GatewayFactory, clients: Clients
) -> None:
    gw = await gateway_factory(config())
    channel = "private:secret"
    c, _ = clients(ws_url(gw), token=token("alice"))
    await c.connect()

    denied, drec = subscribe(c, channel)
    await denied.subscribe()
    (ctx,) = await drec.wait("unsubscribed")
    assert ctx.code == 103
    c.remove_subscription(denied)

    # Another user's token is no good either.
    stolen, srec = subscribe(c, channel, token=token("bob", channel=channel))
    await stolen.subscribe()
    (ctx,) = await srec.wait("unsubscribed")
    assert ctx.code == 103
    c.remove_subscription(stolen)

    issued: list[str] = []
    three = asyncio.Event()

    async def get_token(ch: str) -> str:
        issued.append(ch)
        if len(issued) == 3:
            three.set()
        return token("alice", ttl=2, channel=ch)

    sub, rec = subscribe(c, channel, get_token=get_token)
    await sub.subscribe()
    await sub.ready(WAIT)
    # The first token and two sub_refresh tokens (each lives about a second).
    await asyncio.wait_for(three.wait(), WAIT)
    assert issued == [channel] * 3
    await asyncio.sleep(0.2)  # the last sub_refresh reply
    assert sub.state == SubscriptionState.SUBSCRIBED
    assert len(rec.of("subscribed")) == 1 and not rec.of("error")
    await sub.publish({"after": "refresh"})
    (pub,) = await rec.wait("publication")
    assert pub.pub.data == {"after": "refresh"}


async def test_recovery_after_the_server_drops_the_connection(
    gateway_factory: GatewayFactory, clients: Clients
) -> None:
    gw = await gateway_factory(config())
    channel = "hist:recover"
    await gw.node.publish(channel, b'{"n":0}')
    c, crec = clients(ws_url(gw), token=token("alice"))
    await c.connect()
    sub, rec = subscribe(c, channel, recoverable=True)
    await sub.subscribe()
    await sub.ready(WAIT)
    (first,) = rec.of("subscribed")
    assert first.recoverable and first.stream_position.offset == 1

    gw.server.connections[session_of(gw, "alice").client].abort()
    for n in (1, 2, 3):
        await gw.node.publish(channel, b'{"n":%d}' % n)
    _, second = await rec.wait("subscribed", count=2)
    assert second.was_recovering and second.recovered
    assert second.stream_position.epoch == first.stream_position.epoch
    await rec.wait("publication", count=3)
    await gw.node.publish(channel, b'{"n":4}')
    await rec.wait("publication", count=4)
    await asyncio.sleep(0.3)  # any duplicate would arrive meanwhile
    pubs = [(p.pub.data["n"], p.pub.offset) for p in rec.of("publication")]
    assert pubs == [(1, 2), (2, 3), (3, 4), (4, 5)]
    assert len(crec.of("connected")) == 2


async def test_a_publication_the_node_missed_is_recovered_by_the_sdk(
    gateway_factory: GatewayFactory, clients: Clients
) -> None:
    """The node sees an offset skip (publication 2 reached history, never the node): the
    SDK gets unsubscribe 2500, resubscribes on its own and recovers, in order, once."""
    gw = await gateway_factory(config())
    channel = "hist:gap"
    c, crec = clients(ws_url(gw), token=token("alice"))
    await c.connect()
    sub, rec = subscribe(c, channel, recoverable=True)
    await sub.subscribe()
    await sub.ready(WAIT)
    await gw.node.publish(channel, b'{"n":1}')
    await rec.wait("publication")
    await gw.node.engine.history.append(channel, Publication(data=b'{"n":2}'), size=100, ttl=300)
    await gw.node.publish(channel, b'{"n":3}')
    _, again = await rec.wait("subscribed", count=2)
    assert again.was_recovering and again.recovered
    (subscribing,) = rec.of("subscribing")[1:]
    assert subscribing.code == codes.UNSUBSCRIBE_INSUFFICIENT.code
    await rec.wait("publication", count=3)
    await asyncio.sleep(0.3)  # any duplicate would arrive meanwhile
    pubs = [(p.pub.data["n"], p.pub.offset) for p in rec.of("publication")]
    assert pubs == [(1, 1), (2, 2), (3, 3)]
    assert len(crec.of("connected")) == 1  # the connection stayed up


async def test_unrecoverable_gap_is_reported(
    gateway_factory: GatewayFactory, clients: Clients
) -> None:
    """More missed than history keeps: recovered is false (the app must reload)."""
    cfg = config()
    cfg.namespaces.append(open_namespace("short", history_size=2, history_ttl=300))
    gw = await gateway_factory(cfg)
    c, _ = clients(ws_url(gw), token=token("alice"))
    await c.connect()
    sub, rec = subscribe(c, "short:x", recoverable=True)
    await sub.subscribe()
    await sub.ready(WAIT)
    gw.server.connections[session_of(gw, "alice").client].abort()
    for n in range(1, 6):
        await gw.node.publish("short:x", b'{"n":%d}' % n)
    _, second = await rec.wait("subscribed", count=2)
    assert second.was_recovering and not second.recovered
    await asyncio.sleep(0.2)
    assert not rec.of("publication")


@pytest.mark.parametrize("recover", [False, True])
async def test_server_side_subscription_from_token_channels(
    gateway_factory: GatewayFactory, clients: Clients, recover: bool
) -> None:
    gw = await gateway_factory(config())
    channel = "hist:feed" if recover else "news"
    c, rec = clients(ws_url(gw), token=token("alice", channels=[channel]))
    await c.connect()
    (subscribed,) = await rec.wait("subscribed")
    assert subscribed.channel == channel
    expected = [3]
    if recover:
        gw.server.connections[session_of(gw, "alice").client].abort()
        await gw.node.publish(channel, b'{"n":1}')
        await gw.node.publish(channel, b'{"n":2}')
        _, again = await rec.wait("subscribed", count=2)
        assert again.was_recovering and again.recovered
        expected = [1, 2, 3]
    await gw.node.publish(channel, b'{"n":3}')
    pubs = await rec.wait("publication", count=len(expected))
    await asyncio.sleep(0.2)
    assert [p.pub.data["n"] for p in rec.of("publication")] == expected
    assert all(p.channel == channel for p in pubs)


async def test_user_limited_channel_refuses_another_user(
    gateway_factory: GatewayFactory, clients: Clients
) -> None:
    gw = await gateway_factory(config())
    channel = "chat:dm#alice,bob"
    carol, _ = clients(ws_url(gw), token=token("carol"))
    alice, _ = clients(ws_url(gw), token=token("alice"))
    await carol.connect()
    await alice.connect()
    refused, rrec = subscribe(carol, channel)
    await refused.subscribe()
    (ctx,) = await rrec.wait("unsubscribed")
    assert ctx.code == 103
    ok, orec = subscribe(alice, channel)
    await ok.subscribe()
    await ok.ready(WAIT)
    assert orec.of("subscribed")[0].channel == channel
