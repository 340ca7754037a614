"""Churn soak against a real ``wshub serve``: clients connect, subscribe, publish, call,
and leave (close frame, reset, or vanishing without a word) for a while; afterwards RSS
and open descriptors are back within 10% of the baseline and no task, connection or
session object is left behind.

CI runs it for 30 seconds. The full soak is ten minutes::

    WSHUB_SOAK_SECONDS=600 .venv/bin/pytest tests/hostile/test_soak.py -s
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from typing import Any

import pytest
from hostile_helpers import HUB, OPEN_NAMESPACE, Closed, MiniWS, SpawnGateway, wait_for

SOAK_SECONDS = float(os.environ.get("WSHUB_SOAK_SECONDS", "30"))
WARMUP_SECONDS = min(5.0, SOAK_SECONDS / 4)
WORKERS = 16
PING, PONG = 1.0, 1.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SOAK_SECONDS + 180)]


_ghosts: set[asyncio.Task[None]] = set()


async def _reap_later(c: MiniWS) -> None:
    await asyncio.sleep(PING + PONG + 1.5)
    c.abort()


async def session(port: int, tally: Counter[str]) -> None:
    """One client's life: a random mix of what clients do, then a random way to leave."""
    rng = random.random()
    if rng < 0.25:
        c = await MiniWS.connect(port, "/echo")
        for k in range(random.randint(1, 5)):
            c.send_text(f"m{k}")
            assert await c.recv() == f"m{k}".encode()
    else:
        c = await MiniWS.connect(port, HUB)
        assert "connect" in await c.hub_connect()
        channels = random.sample(["room", "news", "p:lobby", "p:game", "h:log"], 2)
        for ch in channels:
            assert "subscribe" in await c.call(subscribe={"channel": ch})
        assert "publish" in await c.call(publish={"channel": channels[0], "data": {"x": 1}})
        assert (await c.call(rpc={"method": "echo", "data": [1, 2]}))["rpc"]["data"] == [1, 2]
        if "p:" in channels[1]:
            assert "presence" in await c.call(presence={"channel": channels[1]})
    how = random.random()
    if how < 0.45:
        c.close()
        tally["close"] += 1
    elif how < 0.9:
        c.abort()
        tally["reset"] += 1
    else:
        # Vanish: no FIN, no reading, no pong; the heartbeat must reap it.
        c.answer_pings = False
        c.writer.transport.pause_reading()  # type: ignore[attr-defined]
        tally["vanish"] += 1
        ghost = asyncio.create_task(_reap_later(c))  # the socket stays open meanwhile
        _ghosts.add(ghost)
        ghost.add_done_callback(_ghosts.discard)


async def churn(port: int, seconds: float, tally: Counter[str]) -> None:
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            try:
                await session(port, tally)
            except (Closed, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                tally[f"error:{type(exc).__name__}"] += 1
            await asyncio.sleep(0.005)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    await asyncio.gather(*_ghosts)


async def test_churn_soak_returns_to_baseline(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway(
        {
            "client": {"allow_anonymous": True, "presence_ttl": 5.0},
            "websocket": {"ping_interval": PING, "pong_timeout": PONG},
            "namespaces": [
                OPEN_NAMESPACE,
                {**OPEN_NAMESPACE, "name": "p", "presence": True, "join_leave": True},
                {**OPEN_NAMESPACE, "name": "h", "history_size": 10, "history_ttl": 5.0},
            ],
            "log": {"level": "warning"},
        }
    )
    probe = await MiniWS.connect(gw.ws_port)
    await probe.hub_connect()
    probe.read_in_background()  # answers the heartbeat

    async def stats() -> dict[str, Any]:
        c = await MiniWS.connect(gw.ws_port)
        await c.hub_connect()
        data: dict[str, Any] = (await c.call(rpc={"method": "stats"}))["rpc"]["data"]
        c.close()
        return data

    async def settled() -> dict[str, Any]:
        await wait_for(lambda: gw.metric("wshub_connections") == 1, PING + PONG + 10)
        await asyncio.sleep(PING + PONG)
        s = await stats()
        s.update(rss=gw.rss_kib(), fds=gw.fd_count(), conns=gw.metric("wshub_connections"))
        return s

    warm: Counter[str] = Counter()
    await churn(gw.ws_port, WARMUP_SECONDS, warm)  # let caches and allocator pools fill
    base = await settled()
    tally: Counter[str] = Counter()
    t0 = time.monotonic()
    await churn(gw.ws_port, SOAK_SECONDS, tally)
    elapsed = time.monotonic() - t0
    after = await settled()
    sessions = sum(v for k, v in tally.items() if not k.startswith("error"))
    print(
        f"\nsoak {elapsed:.0f} s: {sessions} sessions ({dict(tally)}), "
        f"{sessions / elapsed:.0f}/s; baseline {base}; after {after}"
    )
    assert sessions > 20 * SOAK_SECONDS
    assert sum(v for k, v in tally.items() if k.startswith("error")) <= sessions // 100
    assert after["conns"] == 1
    assert after["rss"] <= base["rss"] * 1.10
    assert after["fds"] <= base["fds"] * 1.10
    assert after["tasks"] <= base["tasks"]
    assert after["connections"] <= base["connections"]
    assert after["sessions"] <= base["sessions"]
    assert gw.alive()
    with contextlib.suppress(Exception):
        probe.close()
