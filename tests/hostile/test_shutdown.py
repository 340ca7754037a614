"""SIGTERM to a real ``wshub serve`` with 1000 clients connected: every client gets a close
frame (3001 shutdown on the hub, 1001 on a raw route), none sees 1006, and the process
exits 0 within the drain time."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest
import websockets
from hostile_helpers import HUB, SpawnGateway, raise_nofile

pytestmark = pytest.mark.slow

CLIENTS = 1000
DRAIN = 5.0


async def test_sigterm_closes_every_client_properly_within_the_drain_time(
    spawn_gateway: SpawnGateway,
) -> None:
    raise_nofile(4 * CLIENTS + 256)
    gw = spawn_gateway(
        {
            "app": "wshub.example:app",
            "client": {"allow_anonymous": True},
            "websocket": {"drain_time": DRAIN},
            "log": {"level": "warning"},
        }
    )
    gate = asyncio.Semaphore(64)

    async def open_client(k: int) -> websockets.ClientConnection:
        path = HUB if k % 2 == 0 else "/echo"
        async with gate:
            ws = await websockets.connect(gw.url(path), ping_interval=None, open_timeout=20)
            if path == HUB:
                await ws.send(json.dumps({"id": 1, "connect": {}}))
                assert "connect" in json.loads(await ws.recv())
            else:
                await ws.send("hello")
                assert await ws.recv() == "hello"
        return ws

    t0 = time.monotonic()
    clients = await asyncio.gather(*(open_client(k) for k in range(CLIENTS)))
    opened = time.monotonic() - t0
    assert gw.metric("wshub_connections") == CLIENTS

    async def outcome(k: int, ws: websockets.ClientConnection) -> tuple[str, int | None]:
        await asyncio.wait_for(ws.wait_closed(), DRAIN + 5)
        rcvd = ws.protocol.close_rcvd
        return ("hub" if k % 2 == 0 else "raw"), (rcvd.code if rcvd is not None else None)

    waiters = [asyncio.create_task(outcome(k, ws)) for k, ws in enumerate(clients)]
    loop = asyncio.get_running_loop()
    code = await loop.run_in_executor(None, lambda: gw.stop(timeout=DRAIN + 10))
    results = await asyncio.gather(*waiters)
    tally = Counter(results)
    print(
        f"\n{CLIENTS} clients opened in {opened:.1f} s; SIGTERM -> exit {code} in "
        f"{gw.exit_seconds:.2f} s (drain time {DRAIN} s); close codes {dict(tally)}"
    )
    assert code == 0
    assert gw.exit_seconds is not None and gw.exit_seconds < DRAIN
    assert tally == {("hub", 3001): CLIENTS // 2, ("raw", 1001): CLIENTS // 2}
    assert all(ws.close_code != 1006 for ws in clients)
    errors = [r for r in gw.log_records() if r.get("level") in ("error", "critical")]
    assert not errors, errors[:3]
