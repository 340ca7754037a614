"""/health and /ready: alive while the process serves; ready unless draining or the
configured broker does not answer."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx

from conftest import GatewayFactory, http_url, make_config
from wshub.brokers.memory import memory_engine
from wshub.gateway import Gateway


async def get(gw: Gateway, path: str) -> httpx.Response:
    async with httpx.AsyncClient() as c:
        return await c.get(http_url(gw, path))


class PingableBroker:
    """The memory broker plus a ``ping`` whose behaviour the test controls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.mode = "ok"
        self.pings = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def ping(self) -> bool:
        self.pings += 1
        if self.mode == "down":
            raise ConnectionError("broker down")
        if self.mode == "hang":
            await asyncio.sleep(30)
        return True


async def test_health_and_ready_on_a_healthy_gateway(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory()
    r = await get(gw, "/health")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    r = await get(gw, "/ready")
    assert (r.status_code, r.json()) == (200, {"ready": True})


async def test_not_ready_while_draining(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory()
    gw.node.shutdown_disconnect()  # the first step of a graceful shutdown
    r = await get(gw, "/ready")
    assert (r.status_code, r.json()) == (503, {"ready": False, "reason": "draining"})
    assert (await get(gw, "/health")).status_code == 200  # still alive


async def test_ready_follows_the_broker_ping() -> None:
    engine = memory_engine()
    broker = PingableBroker(engine.broker)
    engine.broker = broker
    gw = Gateway(make_config(), engine=engine)
    await gw.start(ws_sock=_listen(), http_sock=_listen())
    try:
        assert (await get(gw, "/ready")).status_code == 200
        broker.mode = "down"
        r = await get(gw, "/ready")
        assert (r.status_code, r.json()) == (503, {"ready": False, "reason": "broker_unreachable"})
        broker.mode = "hang"
        t0 = asyncio.get_running_loop().time()
        assert (await get(gw, "/ready")).status_code == 503
        assert asyncio.get_running_loop().time() - t0 < 5  # bounded by the ping timeout
        broker.mode = "ok"
        assert (await get(gw, "/ready")).status_code == 200
        assert broker.pings == 4
    finally:
        await gw.shutdown()


async def test_redis_engine_unreachable_is_not_ready(gateway_factory: GatewayFactory) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gw = await gateway_factory(make_config(engine="redis", redis_url=f"redis://127.0.0.1:{port}/0"))
    r = await get(gw, "/ready")
    assert (r.status_code, r.json()) == (503, {"ready": False, "reason": "broker_unreachable"})
    assert (await get(gw, "/health")).status_code == 200


def _listen() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    s.setblocking(False)
    return s
