"""Shared fixtures: real gateways on ephemeral loopback ports, in the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from support import (  # noqa: F401 - re-exported for tests that import from conftest
    REDIS_URL,
    GatewayFactory,
    http_url,
    listen_socket,
    make_config,
    open_namespace,
    ws_url,
)
from wshub.app import App
from wshub.config import Config
from wshub.gateway import Gateway


@pytest.fixture
async def gateway_factory() -> AsyncIterator[GatewayFactory]:
    """``await gateway_factory(config=None, app=None, http=True)`` -> a started Gateway.

    Every gateway started through it is shut down at the end of the test.
    """
    started: list[Gateway] = []

    async def make(
        config: Config | None = None, app: App | None = None, http: bool = True
    ) -> Gateway:
        gw = Gateway(config or make_config(), app)
        await gw.start(ws_sock=listen_socket(), http_sock=listen_socket() if http else None)
        started.append(gw)
        return gw

    yield make
    for gw in reversed(started):
        await gw.shutdown()


@pytest.fixture
async def redis_ok() -> None:
    """Skips the test when no Redis answers at ``REDIS_URL``."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception:
        pytest.skip(f"no Redis at {REDIS_URL}")
    finally:
        await client.aclose()
