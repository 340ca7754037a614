"""A reconnect storm against a real ``wshub serve``: 5000 hub clients (from 50 loopback
addresses) are dropped at once and all reconnect within a second. Upgrades beyond the
per-IP rate get 429 (or 503 over the cap) with Retry-After; the clients honour it with
jitter; the process keeps its memory and event-loop lag bounded and everyone is back
within a bounded time."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest
from hostile_helpers import (
    HUB,
    OPEN_NAMESPACE,
    Closed,
    MiniWS,
    Refused,
    SpawnGateway,
    percentile,
    raise_nofile,
)

pytestmark = pytest.mark.slow

IPS = 50
PER_IP = 100
CLIENTS = IPS * PER_IP
RATE, BURST = 20.0, 20  # upgrades per second per IP
BACK_WITHIN = 20.0


class Storm:
    def __init__(self, port: int) -> None:
        self.port = port
        self.statuses: Counter[str] = Counter()
        self.missing_retry_after = 0

    async def connect(self, ip: str, spread: float) -> MiniWS:
        """Connect and send the connect command, retrying as an SDK does: after
        Retry-After (with jitter) when refused, with a backoff on a network error."""
        await asyncio.sleep(random.random() * spread)
        backoff = 0.2
        while True:
            try:
                c = await MiniWS.connect(self.port, HUB, local_ip=ip, timeout=10)
                reply = await c.hub_connect(timeout=10)
                assert "connect" in reply, reply
                self.statuses["101"] += 1
                return c
            except Refused as r:
                self.statuses[str(r.response.status)] += 1
                retry = r.response.headers.get("retry-after")
                if retry is None:
                    self.missing_retry_after += 1
                    retry = "1"
                await asyncio.sleep(int(retry) * (1 + random.random()))
            except (OSError, asyncio.IncompleteReadError, TimeoutError, Closed) as exc:
                self.statuses[type(exc).__name__] += 1
                await asyncio.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 5.0)

    async def all(self, spread: float) -> list[MiniWS]:
        ips = [f"127.0.0.{2 + i}" for i in range(IPS)]
        return await asyncio.gather(*(self.connect(ips[k % IPS], spread) for k in range(CLIENTS)))


async def test_reconnect_storm(spawn_gateway: SpawnGateway) -> None:
    raise_nofile(3 * CLIENTS + 512)
    gw = spawn_gateway(
        {
            "client": {"allow_anonymous": True},
            "limits": {
                "connect_rate": RATE,
                "connect_burst": BURST,
                "max_connections": CLIENTS + 100,
            },
            "namespaces": [OPEN_NAMESPACE],
            "log": {"level": "warning"},
        }
    )
    probe = await MiniWS.connect(gw.ws_port, HUB, local_ip="127.0.0.1")
    await probe.hub_connect()
    await probe.call(rpc={"method": "lag"})  # starts the in-process lag monitor
    idle_rss = gw.rss_kib()
    t0 = time.monotonic()
    clients = await Storm(gw.ws_port).all(spread=2.0)
    ramp = time.monotonic() - t0
    assert gw.metric("wshub_connections") == CLIENTS + 1
    await asyncio.sleep(0.5)
    connected_rss = gw.rss_kib()
    await probe.call(rpc={"method": "lag"})  # reset the worst lag
    gw.reset_hwm()

    rtts: list[float] = []
    stop = asyncio.Event()

    async def probing() -> None:
        # A client that was not dropped: its RPC round trips through the storm.
        while not stop.is_set():
            t = time.monotonic()
            await probe.call(timeout=10, rpc={"method": "echo", "data": 1})
            rtts.append(time.monotonic() - t)
            await asyncio.sleep(0.05)

    prober = asyncio.create_task(probing())
    for c in clients:  # all dropped at once: RST, no close handshake
        c.abort()
    storm = Storm(gw.ws_port)
    t0 = time.monotonic()
    clients = await asyncio.wait_for(storm.all(spread=1.0), BACK_WITHIN + 10)
    back = time.monotonic() - t0
    stop.set()
    await prober
    lag = (await probe.call(rpc={"method": "lag"}))["rpc"]["data"]
    peak_rss = gw.hwm_kib()
    assert gw.metric("wshub_connections") == CLIENTS + 1
    print(
        f"\nstorm: {CLIENTS} clients (ramp {ramp:.1f} s) dropped and back in {back:.1f} s; "
        f"upgrades {dict(storm.statuses)}; worst loop lag {lag * 1000:.0f} ms; probe RPC "
        f"p50 {percentile(rtts, 50) * 1000:.0f} ms p99 {percentile(rtts, 99) * 1000:.0f} ms "
        f"max {max(rtts) * 1000:.0f} ms; RSS idle {idle_rss // 1024} MiB, with {CLIENTS} "
        f"{connected_rss // 1024} MiB, peak in the storm {peak_rss // 1024} MiB"
    )
    assert gw.alive()
    assert back < BACK_WITHIN
    assert storm.statuses["429"] > 0  # the rate limit did its job ...
    assert storm.missing_retry_after == 0  # ... and every refusal said when to come back
    assert set(storm.statuses) <= {"101", "429", "503"}
    # Bounded memory: the storm costs at most half again what the clients cost anyway.
    assert peak_rss - idle_rss <= 1.5 * (connected_rss - idle_rss) + 16 * 1024
    # Bounded lag: the loop never stalled for long, and the probe kept being answered.
    assert lag < 1.0
    assert max(rtts) < 2.0
    for c in (*clients, probe):
        c.abort()
