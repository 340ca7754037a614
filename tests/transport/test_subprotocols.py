"""Sec-WebSocket-Protocol: at most one header in the 101, carrying one value the client
offered; nothing when the client offers nothing the route speaks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets

from rawclient import handshake
from support import GatewayFactory, make_config, ws_url
from wshub.app import App
from wshub.transport.raw import RawConnection


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> Any:
    app = App()

    @app.route("/chat", subprotocols=("chat.v2", "chat.v1"))
    async def chat(ws: RawConnection) -> None:
        ws.send(ws.subprotocol or "-")
        async for _ in ws:
            pass

    return await gateway_factory(make_config(), app)


async def test_first_offered_supported_value_is_selected(gw: Any) -> None:
    async with websockets.connect(
        ws_url(gw, "/chat"),
        subprotocols=["other", "chat.v1", "chat.v2"],  # type: ignore[list-item]
    ) as ws:
        assert ws.subprotocol == "chat.v1"
        assert await asyncio.wait_for(ws.recv(), 2) == "chat.v1"


async def test_no_header_when_nothing_offered_matches(gw: Any) -> None:
    async with websockets.connect(ws_url(gw, "/chat")) as ws:
        assert ws.subprotocol is None
        assert await asyncio.wait_for(ws.recv(), 2) == "-"
    loop = asyncio.get_running_loop()
    sock, status, _ = await loop.run_in_executor(
        None, lambda: handshake(gw.ws_port, "/chat", {"Sec-WebSocket-Protocol": "x, y"})
    )
    sock.close()
    assert status == 101


async def test_exactly_one_header_with_one_value_across_several_offer_headers(gw: Any) -> None:
    import socket as socketlib

    loop = asyncio.get_running_loop()

    def raw_upgrade() -> bytes:
        s = socketlib.create_connection(("127.0.0.1", gw.ws_port), timeout=3)
        req = (
            "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: zzz, chat.v2\r\nSec-WebSocket-Protocol: chat.v1\r\n\r\n"
        )
        s.sendall(req.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        s.close()
        return data.split(b"\r\n\r\n")[0]

    head = (await loop.run_in_executor(None, raw_upgrade)).decode().lower().split("\r\n")
    assert head[0].startswith("http/1.1 101")
    values = [h.split(":", 1)[1].strip() for h in head if h.startswith("sec-websocket-protocol:")]
    assert values == ["chat.v2"]
