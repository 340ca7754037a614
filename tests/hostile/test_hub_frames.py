"""Hostile frames on the hub endpoint (tests/transport/test_frames.py covers raw routes):
each one closes that connection with the right code (1002, 1007, 1009), the session is
cleaned up, and a healthy hub client on the same gateway carries on."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from typing import Any

import pytest
from hostile_helpers import (
    HUB,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    MiniWS,
    build_frame,
    upgrade_request,
    wait_for,
)

from support import GatewayFactory, make_config, open_namespace
from wshub.app import App

MAX = 1024


def _app() -> App:
    app = App()

    @app.rpc("echo")
    async def echo(_ctx: Any, data: Any) -> Any:
        return data

    return app


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> Any:
    cfg = make_config(
        client={"allow_anonymous": True, "command_rate": 0.0},
        websocket={"max_message_size": MAX},
        namespaces=[open_namespace("")],
    )
    return await gateway_factory(cfg, _app(), http=False)


def cmd(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack(">H", code) + reason


SUB = cmd({"id": 9, "subscribe": {"channel": "other"}})

CASES: dict[str, tuple[list[bytes], int]] = {
    # size (9): refused on the header alone, before any payload is read
    "declared-length-over-limit": ([build_frame(OP_TEXT, length=MAX + 1)], 1009),
    "declared-length-2^40": ([build_frame(OP_TEXT, length=1 << 40)], 1009),
    "fragments-over-limit": (
        [build_frame(OP_TEXT, b" " * 100, fin=False)]
        + [build_frame(OP_CONT, b" " * 100, fin=False) for _ in range(10)],
        1009,
    ),
    # compression is never negotiated, so a "compressed" frame is a protocol error
    "rsv1-compressed": ([build_frame(OP_TEXT, SUB, rsv=4)], 1002),
    # malformed frames (10)
    "rsv2": ([build_frame(OP_TEXT, SUB, rsv=2)], 1002),
    "rsv3-on-continuation": (
        [build_frame(OP_TEXT, SUB[:5], fin=False), build_frame(OP_CONT, SUB[5:], rsv=1)],
        1002,
    ),
    "opcode-3": ([build_frame(0x3, SUB)], 1002),
    "opcode-0xB": ([build_frame(0xB)], 1002),
    "ping-over-125": ([build_frame(OP_PING, b"p" * 126)], 1002),
    "fragmented-ping": ([build_frame(OP_PING, b"a", fin=False), build_frame(OP_CONT, b"b")], 1002),
    "continuation-without-start": ([build_frame(OP_CONT, SUB)], 1002),
    "new-message-inside-fragmented": (
        [build_frame(OP_TEXT, SUB[:5], fin=False), build_frame(OP_TEXT, SUB)],
        1002,
    ),
    "unmasked": ([build_frame(OP_TEXT, SUB, masked=False)], 1002),
    "binary-garbage-then-close-1-byte": ([build_frame(OP_CLOSE, b"\x03")], 1002),
    "invalid-utf8-text": ([build_frame(OP_TEXT, b'{"id": 9, "rpc": {"method": "\xff"}}')], 1007),
    "invalid-utf8-in-fragment": (
        [build_frame(OP_TEXT, b'{"id": 9,', fin=False), build_frame(OP_CONT, b"\xed\xa0\x80}")],
        1007,
    ),
    "invalid-utf8-close-reason": ([build_frame(OP_CLOSE, close_payload(1000, b"bye \xff"))], 1007),
    "invalid-close-code": ([build_frame(OP_CLOSE, close_payload(1005))], 1002),
    # a binary frame is not a hub command: the hub protocol is JSON text
    "binary-json": ([build_frame(OP_BINARY, b"\x00\xff")], 3501),
}


@pytest.mark.parametrize(("frames", "code"), CASES.values(), ids=CASES.keys())
async def test_hostile_frame_closes_only_that_connection(
    gw: Any, frames: list[bytes], code: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hub = gw.node.hub
    healthy = await MiniWS.connect(gw.ws_port)
    await healthy.hub_connect()
    await healthy.call(subscribe={"channel": "room"})
    inbox = healthy.read_in_background()
    victim = await MiniWS.connect(gw.ws_port)
    victim_id = (await victim.hub_connect())["connect"]["client"]
    await victim.call(subscribe={"channel": "room"})
    for f in frames:
        victim.send_raw(f)
    assert await victim.closed_with(3) == code
    assert await wait_for(lambda: victim_id not in gw.server.connections, 3)
    assert victim_id not in hub.clients
    assert len(hub.channels["room"]) == 1
    # The gateway and the healthy connection carry on.
    await gw.node.publish("room", b'{"after": true}')
    healthy.command(rpc={"method": "echo", "data": "still here"})
    got = [await asyncio.wait_for(inbox.get(), 2) for _ in range(2)]
    msgs = [json.loads(m) for m in got if isinstance(m, bytes)]
    assert {"pub" in m.get("push", {}) for m in msgs} == {True, False}
    assert any(m.get("rpc", {}).get("data") == "still here" for m in msgs)
    # A peer's mistake is not a server fault: no traceback, nothing at error level.
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    healthy.close()
    victim.abort()


async def test_compression_is_never_negotiated_on_the_hub(gw: Any) -> None:
    resp = await upgrade_request(
        gw.ws_port,
        HUB,
        {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"},
    )
    assert resp.status == 101
    assert "sec-websocket-extensions" not in resp.headers
