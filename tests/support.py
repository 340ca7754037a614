"""Test helpers shared by every test folder (import as ``from support import ...``)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis
import websockets

from wshub.config import Config, NamespaceConfig
from wshub.gateway import Gateway

GatewayFactory = Callable[..., Awaitable[Gateway]]

REDIS_URL = "redis://127.0.0.1:6379/0"  # the tests' real Redis


def open_namespace(name: str = "", **overrides: Any) -> NamespaceConfig:
    """A namespace where any connected client may subscribe, publish, see presence and
    history (override what a test is about)."""
    opts: dict[str, Any] = dict(
        name=name,
        allow_subscribe_for_client=True,
        allow_subscribe_for_anonymous=True,
        allow_publish_for_client=True,
        allow_publish_for_anonymous=True,
        allow_presence_for_client=True,
        allow_history_for_client=True,
    )
    opts.update(overrides)
    return NamespaceConfig(**opts)


def make_config(**overrides: Any) -> Config:
    """A Config for tests: ephemeral ports, quiet logs; ``section__field=value`` or
    ``section={...}`` override nested values."""
    data: dict[str, Any] = msgspec.to_builtins(Config())
    data["port"] = 0
    data["http_port"] = 0
    for key, value in overrides.items():
        if "__" in key:
            section, field = key.split("__", 1)
            data[section][field] = value
        elif isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return msgspec.convert(data, Config)


def listen_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    s.setblocking(False)
    return s


def ws_url(gw: Gateway, path: str = "/connection/websocket") -> str:
    return f"ws://127.0.0.1:{gw.ws_port}{path}"


def http_url(gw: Gateway, path: str = "") -> str:
    return f"http://127.0.0.1:{gw.http_port}{path}"


async def recv(ws: websockets.ClientConnection, timeout: float = 3.0) -> dict[str, Any]:
    """The next protocol message from ``ws``, skipping ``{}`` pings."""
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if msg:
            return msg  # type: ignore[no-any-return]


async def call(ws: websockets.ClientConnection, cid: int, **cmd: Any) -> dict[str, Any]:
    """Send command ``cid`` and return its reply (pushes before it are skipped)."""
    await ws.send(json.dumps({"id": cid, **cmd}))
    while True:
        msg = await recv(ws)
        if msg.get("id") == cid:
            return msg


async def next_push(ws: websockets.ClientConnection, kind: str) -> dict[str, Any]:
    """The next push of ``kind`` (pub, join, leave, unsubscribe ...), skipping others."""
    while True:
        push = (await recv(ws)).get("push", {})
        if kind in push:
            return push  # type: ignore[no-any-return]


async def kill_pubsub(admin: aioredis.Redis, name: str) -> str:
    """Close the pub/sub connection of the Redis client named ``name`` (its ``client_name``)
    from the Redis side, as a Redis restart or a network cut would; returns its id."""
    clients = await admin.client_list(_type="pubsub")
    ids = [c["id"] for c in clients if c.get("name") == name]
    assert len(ids) == 1, clients
    await admin.client_kill_filter(_id=ids[0])
    return str(ids[0])
