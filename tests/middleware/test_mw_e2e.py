"""The pre-upgrade chain over real sockets: every refusal is a plain HTTP status with a JSON
body (never a 101, never a traceback), and accepted connections carry what it attached."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import jwt
import pytest

from rawclient import handshake
from support import GatewayFactory, make_config
from wshub.app import App
from wshub.logs import JsonFormatter, ScrubFilter
from wshub.transport.raw import RawConnection

SECRET = "middleware-e2e-secret-long-enough-for-hs256"


def _app() -> App:
    app = App()

    @app.route("/echo")
    async def echo(ws: RawConnection) -> None:
        ws.send(json.dumps({"user": ws.state.get("user")}))
        async for msg in ws:
            ws.send(msg)

    return app


async def upgrade(gw: Any, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    loop = asyncio.get_running_loop()
    sock, status, rest = await loop.run_in_executor(
        None, lambda: handshake(gw.ws_port, path, headers)
    )
    body = rest
    if status != 101:
        sock.settimeout(2)
        while True:
            try:
                chunk = await loop.run_in_executor(None, sock.recv, 65536)
            except OSError:
                break
            if not chunk:
                break
            body += chunk
    sock.close()
    return status, body


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> Any:
    cfg = make_config(
        auth={"jwt": True},
        token={"hmac_secret": SECRET},
        origin={"allowed": ["https://app.example.com"], "missing": "refuse"},
        limits={"connect_rate": 5.0, "connect_burst": 4, "max_connections": 3},
    )
    return await gateway_factory(cfg, _app())


def good_token(sub: str = "alice") -> str:
    return jwt.encode({"sub": sub}, SECRET, algorithm="HS256")


ORIGIN = {"Origin": "https://app.example.com"}


@pytest.mark.parametrize(
    ("path", "headers", "status", "error"),
    [
        ("/echo", ORIGIN, 401, "missing_token"),
        ("/echo?token=garbage", ORIGIN, 403, "invalid_token"),
        ("/echo?token={good}", {"Origin": "https://evil.test"}, 403, "origin_not_allowed"),
        (
            "/echo?token={good}",
            {"Origin": "https://app.example.com.evil.test"},
            403,
            "origin_not_allowed",
        ),
        ("/echo?token={good}", {"Origin": "null"}, 403, "origin_not_allowed"),
        ("/echo?token={good}", {}, 403, "origin_not_allowed"),
        ("/nowhere", ORIGIN, 404, "not_found"),
    ],
)
async def test_refusals_are_plain_json_never_101(
    gw: Any, path: str, headers: dict[str, str], status: int, error: str
) -> None:
    got, body = await upgrade(gw, path.format(good=good_token()), headers)
    assert got == status
    doc = json.loads(body)
    assert doc["error"] == error
    assert "Traceback" not in body.decode()


async def test_rate_limit_429_with_retry_after_and_cap_503(gw: Any) -> None:
    loop = asyncio.get_running_loop()
    path = f"/echo?token={good_token()}"
    held = []
    statuses = []
    for _ in range(3):  # fill the global cap (3)
        sock, status, _ = await loop.run_in_executor(
            None, lambda: handshake(gw.ws_port, path, ORIGIN)
        )
        held.append(sock)
        statuses.append(status)
    assert statuses == [101, 101, 101]
    sock, status, _ = await loop.run_in_executor(None, lambda: handshake(gw.ws_port, path, ORIGIN))
    sock.close()
    assert status == 503
    # The burst (4) is spent by now: the next upgrade is rate-limited.
    sock, status, _rest = await loop.run_in_executor(
        None, lambda: handshake(gw.ws_port, path, ORIGIN)
    )
    sock.close()
    assert status == 429
    for s in held:
        s.close()


async def test_accepted_connection_carries_the_user(gw: Any) -> None:
    import websockets

    url = f"ws://127.0.0.1:{gw.ws_port}/echo?token={good_token('bob')}"
    async with websockets.connect(url, origin="https://app.example.com") as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv()) == {"user": "bob"}


async def test_access_log_lines_never_contain_credentials(
    gateway_factory: GatewayFactory,
) -> None:
    import websockets

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    try:
        cfg = make_config(auth={"jwt": True}, token={"hmac_secret": SECRET})
        gw = await gateway_factory(cfg, _app())
        tok = good_token("carol")
        url = f"ws://127.0.0.1:{gw.ws_port}/echo?token={tok}&room=1"
        async with websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {tok}"}
        ) as ws:
            await ws.recv()
            await ws.send("hello")
            await ws.recv()
        await upgrade(gw, f"/echo?token={tok}x")
        await asyncio.sleep(0.2)
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    text = stream.getvalue()
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    kinds = {e.get("event") for e in events}
    assert {"connection_open", "connection_close", "upgrade_rejected"} <= kinds
    assert tok not in text and tok[:40] not in text
    close = next(e for e in events if e.get("event") == "connection_close")
    assert close["messages_in"] == 1 and close["code"] in (1000, 1005)
