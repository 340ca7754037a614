"""End to end with the real ``centrifuge`` npm SDK (5.x) under Node.js.

Each test starts a gateway in the test's event loop and runs ``js/driver.mjs`` with one
scenario as an asyncio subprocess. The driver prints what the SDK reports as JSON lines;
when it needs the test (a fresh token, or a server-side action such as dropping its
connection or publishing) it asks on stdout and waits for the answer on stdin.

``npm ci`` runs once per session when ``js/node_modules`` is missing or older than the
lock file. The module is skipped only when ``node`` is not installed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from sdk_setup import GRACE, config, token

from support import GatewayFactory, ws_url
from wshub import codes
from wshub.app import App
from wshub.example import app as example_app
from wshub.gateway import Gateway

pytestmark = pytest.mark.node

JS_DIR = Path(__file__).parent / "js"
DRIVER_TIMEOUT = 20.0

Event = dict[str, Any]
OnRequest = Callable[[Event], Awaitable[dict[str, Any]]]


# -- the Node side ---------------------------------------------------------------------------


def _node_modules_fresh() -> bool:
    hidden_lock = JS_DIR / "node_modules" / ".package-lock.json"
    if not hidden_lock.exists():
        return False
    newest_input = max(
        (JS_DIR / "package-lock.json").stat().st_mtime, (JS_DIR / "package.json").stat().st_mtime
    )
    return hidden_lock.stat().st_mtime >= newest_input


@pytest.fixture(scope="session")
def node_driver() -> list[str]:
    """The command that runs the driver; installs the npm packages first if needed."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not _node_modules_fresh():
        npm = shutil.which("npm")
        assert npm is not None, "node is installed but npm is not"
        proc = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"npm ci failed:\n{proc.stdout}\n{proc.stderr}"
    return [node, str(JS_DIR / "driver.mjs")]


async def drive(
    cmd: list[str],
    scenario: str,
    gw: Gateway,
    on_request: OnRequest | None = None,
    **params: Any,
) -> list[Event]:
    """Run one driver scenario to its end and return the events it printed."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        scenario,
        ws_url(gw),
        json.dumps({"timeout": 10000, **params}),
        cwd=JS_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stderr_task = asyncio.ensure_future(proc.stderr.read())
    events: list[Event] = []

    async def pump() -> None:
        assert proc.stdin is not None and proc.stdout is not None
        async for line in proc.stdout:
            ev = json.loads(line)
            events.append(ev)
            if ev["ev"] == "request":
                assert on_request is not None, f"unexpected request {ev}"
                answer = await on_request(ev)
                proc.stdin.write(json.dumps({"id": ev["id"], **answer}).encode() + b"\n")
                await proc.stdin.drain()

    try:
        await asyncio.wait_for(pump(), DRIVER_TIMEOUT)
        rc = await asyncio.wait_for(proc.wait(), 5)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = (await stderr_task).decode(errors="replace")
    tail = "\n".join(json.dumps(e) for e in events[-8:])
    assert rc == 0, f"driver {scenario} exited {rc}:\n{tail}\n{stderr}"
    assert events and events[-1]["ev"] == "done", f"{tail}\n{stderr}"
    return events


def of(events: list[Event], ev: str, **match: Any) -> list[Event]:
    return [e for e in events if e["ev"] == ev and all(e.get(k) == v for k, v in match.items())]


# -- the gateway side --------------------------------------------------------------------------


def rpc_app() -> App:
    app = App()

    @app.rpc("echo")
    async def echo(_ctx: Any, data: Any) -> Any:
        return data

    @app.rpc("boom")
    async def boom(_ctx: Any, _data: Any) -> Any:
        raise RuntimeError("handler bug")

    return app


def client_id(events: list[Event], who: str = "a") -> str:
    return str(of(events, "connected", who=who)[-1]["client"])


# -- tests ----------------------------------------------------------------------------------------


async def test_connect_with_jwt_and_echo_rpc(
    node_driver: list[str], gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(config(), example_app)
    events = await drive(node_driver, "connect", gw, token=token("alice"))
    assert of(events, "connected")[0]["client"]
    assert of(events, "rpc") == [{"ev": "rpc", "method": "echo", "data": {"hello": "world"}}]
    assert not of(events, "client_error")


@pytest.mark.parametrize("allow", [False, True])
async def test_anonymous_connect(
    node_driver: list[str], gateway_factory: GatewayFactory, allow: bool
) -> None:
    gw = await gateway_factory(config(client={"allow_anonymous": allow}))
    events = await drive(node_driver, "anonymous", gw)
    if allow:
        assert of(events, "connected")
    else:
        assert not of(events, "connected")
        # Error 101 is terminal: the SDK stops with it and does not reconnect.
        first = of(events, "disconnected")[0]
        assert (first["code"], first["reason"]) == (101, "unauthorized")
        assert len(of(events, "connecting")) == 1


async def test_publish_reaches_the_other_client(
    node_driver: list[str], gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(config())
    events = await drive(
        node_driver,
        "pubsub",
        gw,
        token=token("alice"),
        token2=token("bob"),
        channel="room",
    )
    pubs = of(events, "publication", who="b")
    assert [(p["data"], p["user"]) for p in pubs] == [({"n": 1}, "alice"), ({"n": 2}, "alice")]


async def test_presence_with_join_and_leave(
    node_driver: list[str], gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(config())
    events = await drive(
        node_driver,
        "presence",
        gw,
        token=token("alice"),
        token2=token("bob"),
        user2="bob",
        channel="pres:lobby",
    )
    joins = of(events, "join", who="a")
    assert [j["user"] for j in joins] == ["alice", "bob"]  # its own join, then bob's
    presence = of(events, "presence")
    assert presence[0]["users"] == ["alice", "bob"] and presence[0]["clients"] == 2
    stats = of(events, "presence_stats")[0]
    assert (stats["numClients"], stats["numUsers"]) == (2, 2)
    assert [x["user"] for x in of(events, "leave", who="a")] == ["bob"]
    assert presence[1]["users"] == ["alice"]


async def test_history_limit_since_reverse(
    node_driver: list[str], gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(config())
    events = await drive(node_driver, "history", gw, token=token("alice"), channel="hist:h")
    h = {e["q"]: e for e in of(events, "history")}
    assert h["top"]["ns"] == [] and h["top"]["offset"] == 5 and h["top"]["epoch"]
    assert h["limit2"]["ns"] == [1, 2] and h["limit2"]["offsets"] == [1, 2]
    assert h["all"]["ns"] == [1, 2, 3, 4, 5] and h["all"]["offsets"] == [1, 2, 3, 4, 5]
    assert h["since2"]["ns"] == [3, 4, 5]
    assert h["reverse2"]["ns"] == [5, 4]
    assert h["reverse_since4"]["ns"] == [3, 2, 1]
    assert of(events, "history_error", q="bad_epoch")[0]["code"] == 112


async def test_rpc_handler_error_is_100_and_the_connection_goes_on(
    node_driver: list[str], gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(config(), rpc_app())
    events = await drive(node_driver, "rpc", gw, token=token("alice"))
    boom = of(events, "rpc_error", method="boom")[0]
    assert (boom["code"], boom["temporary"]) == (100, True)
    assert "handler bug" not in boom["message"]
    assert of(events, "rpc_error", method="no-such-method")[0]["code"] == 104
    echoes = of(events, "rpc", method="echo")
    assert [e["data"] for e in echoes] == [{"n": 1}, {"n": 3}]
    assert echoes[-1]["state"] == "connected"
    assert len(of(events, "connecting")) == 1  # never reconnected


async def test_token_refresh_keeps_the_connection(
    node_driver: list[str], gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(config(), rpc_app())
    first = token("alice", ttl=2)
    first_exp = jwt.decode(first, options={"verify_signature": False})["exp"]

    async def on_request(ev: Event) -> dict[str, Any]:
        assert ev["what"] == "token" and ev["kind"] == "connection"
        return {"token": token("alice", ttl=2)}

    # The driver goes on once the first token expired and its grace passed.
    until = (first_exp + GRACE + 0.5) * 1000
    events = await drive(
        node_driver, "refresh", gw, on_request, token=first, until=until, refreshes=2
    )
    after = of(events, "after_refresh")[0]
    assert after["refreshes"] >= 2 and after["state"] == "connected"
    assert after["client"] == after["first"]  # the same connection all along
    assert after["data"] == {"still": "here"}
    assert len(of(events, "connecting")) == 1
    assert [e["code"] for e in of(events, "disconnected")] == [0]  # its own disconnect()
    assert not of(events, "client_error")


async def test_connection_without_refresh_is_closed_3005(
    node_driver: list[str], gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(config())
    # Over a second left when the driver connects: the SDK asks for a token before the close.
    tok = token("alice", ttl=2.5)
    exp = jwt.decode(tok, options={"verify_signature": False})["exp"]
    events = await drive(node_driver, "expire", gw, token=tok)
    closed_at = time.time()
    (expired,) = of(events, "connecting", code=codes.DISCONNECT_EXPIRED.code)
    assert expired["reason"] == codes.DISCONNECT_EXPIRED.reason
    assert of(events, "token_asked")[0]["count"] >= 1  # it tried, and failed, to refresh
    assert exp + GRACE - 0.2 <= closed_at < exp + GRACE + 1.5


async def test_subscription_token_and_sub_refresh(
    node_driver: list[str], gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(config())
    channel = "private:secret"

    async def on_request(ev: Event) -> dict[str, Any]:
        assert ev["what"] == "token" and ev["kind"] == "subscription"
        assert ev["channel"] == channel
        return {"token": token("alice", ttl=2, channel=channel)}

    events = await drive(
        node_driver, "subtoken", gw, on_request, token=token("alice"), channel=channel, refreshes=2
    )
    refused = of(events, "unsubscribed", channel=channel)[0]
    assert refused["code"] == 103
    assert len(of(events, "subscribed", channel=channel)) == 1
    after = of(events, "after_sub_refresh")[0]
    assert after["tokens"] >= 3 and after["state"] == "subscribed"
    assert after["data"] == {"after": "refresh"}
    assert not of(events, "sub_error")


async def test_recovery_after_forced_reconnect(
    node_driver: list[str], gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(config())
    channel = "hist:recover"
    await gw.node.publish(channel, b'{"n":0}')  # before the subscription: never delivered
    events: list[Event] = []

    async def on_request(ev: Event) -> dict[str, Any]:
        if ev["what"] == "away":
            # The driver's events so far are not in `events` yet: find the client by user.
            (s,) = gw.node.hub.user_sessions("alice")
            gw.server.connections[s.client].close(codes.DISCONNECT_FORCE_RECONNECT)
            for n in (1, 2, 3):
                await gw.node.publish(channel, b'{"n":%d}' % n)
        elif ev["what"] == "live":
            await gw.node.publish(channel, b'{"n":4}')
        return {}

    events = await drive(
        node_driver, "recovery", gw, on_request, token=token("alice"), channel=channel, missed=3
    )
    first, second = of(events, "subscribed", channel=channel)
    assert first["recoverable"] and not first["wasRecovering"]
    assert first["streamPosition"]["offset"] == 1
    assert second["wasRecovering"] and second["recovered"] and second["hasRecoveredPublications"]
    assert second["streamPosition"]["epoch"] == first["streamPosition"]["epoch"]
    assert of(events, "connecting", code=codes.DISCONNECT_FORCE_RECONNECT.code)
    pubs = of(events, "publication", channel=channel)
    assert [(p["data"]["n"], p["offset"]) for p in pubs] == [(1, 2), (2, 3), (3, 4), (4, 5)]


@pytest.mark.parametrize("recover", [False, True])
async def test_server_side_subscription_from_token_channels(
    node_driver: list[str], gateway_factory: GatewayFactory, recover: bool
) -> None:
    gw = await gateway_factory(config())
    channel = "hist:feed" if recover else "news"

    async def on_request(ev: Event) -> dict[str, Any]:
        if ev["what"] == "away":
            (s,) = gw.node.hub.user_sessions("alice")
            gw.server.connections[s.client].abort()
            await gw.node.publish(channel, b'{"n":1}')
            await gw.node.publish(channel, b'{"n":2}')
        elif ev["what"] == "publish":
            await gw.node.publish(channel, b'{"n":3}')
        return {}

    events = await drive(
        node_driver,
        "server_side",
        gw,
        on_request,
        token=token("alice", channels=[channel]),
        channel=channel,
        recover=recover,
        missed=2,
    )
    subs = of(events, "server_subscribed", channel=channel)
    pubs = [p["data"]["n"] for p in of(events, "server_publication", channel=channel)]
    if recover:
        assert len(subs) == 2 and subs[1]["recovered"] and subs[1]["wasRecovering"]
        assert pubs == [1, 2, 3]
    else:
        assert len(subs) == 1
        assert pubs == [3]


async def test_user_limited_channel_refuses_another_user(
    node_driver: list[str], gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(config())
    channel = "chat:dm#alice,bob"
    events = await drive(
        node_driver,
        "user_limited",
        gw,
        token=token("carol"),
        token2=token("alice"),
        channel=channel,
    )
    assert of(events, "unsubscribed", who="a")[0]["code"] == 103
    assert of(events, "subscribed", who="b", channel=channel)
