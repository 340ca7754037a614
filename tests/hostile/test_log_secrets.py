"""Credentials never reach a log line, a metric label or an error message: a real
``wshub serve`` at debug level is given tokens in the query, in the Authorization header,
in a cookie and in connect/refresh/subscribe commands, good and bad ones."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from hostile_helpers import (
    HUB,
    OPEN_NAMESPACE,
    Closed,
    MiniWS,
    Refused,
    SpawnGateway,
    upgrade_request,
)

SECRET = "hostile-log-secrets-hmac-key-long-enough"


def token(**claims: Any) -> str:
    return jwt.encode({"sub": "alice", **claims}, SECRET, algorithm="HS256")


def pieces(secret: str) -> list[str]:
    """The secret and, for a JWT, its payload and signature segments on their own."""
    out = [secret]
    if secret.count(".") == 2:
        _head, payload, sig = secret.split(".")
        out += [payload, sig]
    return out


@pytest.mark.slow
async def test_credentials_never_reach_logs_metrics_or_messages(
    spawn_gateway: SpawnGateway,
) -> None:
    gw = spawn_gateway(
        {
            "auth": {"jwt": True},
            "token": {"hmac_secret": SECRET},
            "log": {"level": "debug", "access": True},
            "namespaces": [OPEN_NAMESPACE],
        }
    )
    q_jwt = token(src="query")
    h_jwt = token(src="header")
    c_jwt = token(src="connect", exp=int(time.time()) + 3600)
    r_jwt = token(src="refresh", exp=int(time.time()) + 7200)
    s_jwt = token(src="sub", channel="room")
    expired = token(src="expired", exp=int(time.time()) - 3600)
    opaque = ["opaque-Query-credential-4711", "opaque-Bearer-credential-4712"]
    opaque += ["opaque-Connect-credential-4713", "opaque-Cookie-credential-4714"]
    secrets = [q_jwt, h_jwt, c_jwt, r_jwt, s_jwt, expired, SECRET, *opaque]
    seen: list[str] = []  # everything the gateway said to clients

    # The good path: every credential at once.
    c = await MiniWS.connect(
        gw.ws_port,
        f"{HUB}?token={q_jwt}&room=1",
        {"Authorization": f"Bearer {h_jwt}", "Cookie": f"session={opaque[3]}"},
    )
    for cmd in (
        {"connect": {"token": c_jwt, "name": "test"}},
        {"refresh": {"token": r_jwt}},
        {"subscribe": {"channel": "room", "token": s_jwt}},
        {"rpc": {"method": "boom", "data": {"token": c_jwt}}},
        {"rpc": {"method": "echo", "data": 1}},
    ):
        reply = await c.call(**cmd)
        assert "error" not in reply or cmd.get("rpc", {}).get("method") == "boom", reply
        seen.append(str(reply.get("error", "")))
    c.close()
    # Refusals before the upgrade.
    for path, headers in (
        (f"{HUB}?token={opaque[0]}", {}),
        (HUB, {"Authorization": f"Bearer {opaque[1]}"}),
        (f"/echo?token={expired}", {"Authorization": f"Bearer {opaque[1]}"}),
        (f"{HUB}?token={q_jwt}x", {}),
    ):
        resp = await upgrade_request(gw.ws_port, path, headers)
        assert resp.status in (401, 403)
        seen += [resp.body.decode(), str(resp.headers)]
    # Bad tokens in the connect command: an opaque one (3500) and an expired JWT (109).
    c = await MiniWS.connect(gw.ws_port, f"{HUB}?token={q_jwt}")
    c.command(connect={"token": opaque[2]})
    try:
        await c.recv()
    except Closed as closed:
        assert closed.code == 3500
        seen.append(closed.reason)
    c = await MiniWS.connect(gw.ws_port, f"{HUB}?token={q_jwt}")
    reply = await c.hub_connect(expired)
    assert reply["error"]["code"] == 109
    seen.append(str(reply))
    c.close()
    # A command the codec refuses, with a token inside.
    c = await MiniWS.connect(gw.ws_port, f"{HUB}?token={q_jwt}")
    c.send_text(f'{{"id": 1, "connect": {{"token": ["{c_jwt}"]}}}}')
    try:
        await c.recv()
    except Closed as closed:
        assert closed.code == 3501
        seen.append(closed.reason)
    with pytest.raises(Refused):
        await MiniWS.connect(gw.ws_port, f"{HUB}?token={opaque[0]}")

    metrics = gw.metrics()
    gw.stop()
    logs = gw.stderr() + gw.stdout()
    records = gw.log_records()
    events = {r.get("event") for r in records}
    assert {"connection_open", "connection_close", "upgrade_rejected"} <= events
    assert any(r.get("logger") == "wshub.node" and "traceback" in r for r in records)
    opened = [r for r in records if r.get("event") == "connection_open"]
    assert opened and all("token=[REDACTED]" in r["query"] for r in opened)
    for name, text in (("log", logs), ("metrics", metrics), ("client", "\n".join(seen))):
        for secret in secrets:
            for piece in pieces(secret):
                assert piece not in text, f"{name} contains a credential: {piece[:12]}..."
