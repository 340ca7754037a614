"""Slow and stalled peers against a real ``wshub serve``: a client that stops reading costs
at most its queue bound and is closed as slow (3008); nobody else notices."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time

import pytest
from hostile_helpers import (
    HUB,
    OPEN_NAMESPACE,
    Closed,
    MiniWS,
    SpawnGateway,
    percentile,
    upgrade_bytes,
    wait_for,
)

pytestmark = pytest.mark.slow

MSG_SIZE = 50 * 1024
QUEUE = 1024 * 1024
RATE = 100  # publications per second


async def stalled_client(port: int, channel: str, rcvbuf: int = 4096) -> MiniWS:
    """A hub client with a tiny receive window that subscribes to ``channel`` and then
    never reads again (nor answers pings)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(upgrade_bytes(port, HUB, None))
    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
    c = MiniWS(reader, writer)
    c.answer_pings = False
    await c.hub_connect()
    assert "subscribe" in await c.call(subscribe={"channel": channel})
    writer.transport.pause_reading()  # type: ignore[attr-defined]
    return c


async def subscriber(port: int, channel: str) -> MiniWS:
    c = await MiniWS.connect(port)
    assert "connect" in await c.hub_connect()
    assert "subscribe" in await c.call(subscribe={"channel": channel})
    return c


async def test_client_that_stops_reading_costs_at_most_its_queue_bound(
    spawn_gateway: SpawnGateway,
) -> None:
    # Allocations of 32 KiB and more get their own mappings, given back on free: RSS then
    # follows the bytes the gateway holds instead of the allocator's high-water mark.
    gw = spawn_gateway(
        {
            "client": {"allow_anonymous": True, "command_rate": 0.0},
            "websocket": {"send_queue_bytes": QUEUE, "max_message_size": 128 * 1024},
            "namespaces": [OPEN_NAMESPACE],
        },
        env={"MALLOC_MMAP_THRESHOLD_": "32768"},
    )
    normals = [await subscriber(gw.ws_port, "big") for _ in range(10)]
    received: list[list[int]] = [[] for _ in normals]

    async def read(i: int, c: MiniWS) -> None:
        with contextlib.suppress(Closed):
            while True:
                msg = json.loads(await c.recv(30))
                received[i].append(msg["push"]["pub"]["data"]["n"])

    readers = [asyncio.create_task(read(i, c)) for i, c in enumerate(normals)]
    pub = await MiniWS.connect(gw.ws_port)
    await pub.hub_connect()
    pub_reader = asyncio.create_task(pub.closed_with(60))
    filler = "x" * (MSG_SIZE - 40)
    sent = 0

    async def publish(seconds: float) -> None:
        nonlocal sent
        t0 = time.monotonic()
        for k in range(int(seconds * RATE)):
            pub.command(publish={"channel": "big", "data": {"n": sent, "p": filler}})
            sent += 1
            await asyncio.sleep(max(0.0, t0 + (k + 1) / RATE - time.monotonic()))

    await publish(1.5)  # warm up: the steady state of ten readers
    baseline = gw.rss_kib()
    gw.reset_hwm()
    gw.mark_log()
    slow = await stalled_client(gw.ws_port, "big")
    await publish(4.0)  # 20 MB towards the stalled client
    peak_growth = gw.hwm_kib() - baseline
    assert await wait_for(lambda: gw.metric("wshub_slow_consumer_disconnects_total") == 1, 5)
    assert gw.metric("wshub_disconnects_total", code="3008") == 1
    closes = [
        json.loads(line)
        for line in gw.new_log_lines()
        if '"connection_close"' in line and '"code":3008' in line
    ]
    assert len(closes) == 1 and closes[0]["reason"] == "slow"
    await publish(1.0)
    await wait_for(lambda: all(len(r) == sent for r in received), 5)
    after = gw.rss_kib()
    print(
        f"\nslow consumer: baseline RSS {baseline} KiB, peak growth {peak_growth} KiB "
        f"(bound {QUEUE // 1024} KiB + one {MSG_SIZE // 1024} KiB message), "
        f"after it left {after - baseline:+d} KiB; {sent} publications"
    )
    # The stalled client never cost more than its queue bound (+ the message that crossed
    # it, + allocator slack); without the bound it would have held ~20 MB.
    assert peak_growth <= (QUEUE + MSG_SIZE) // 1024 + 384
    # ... and that memory was given back once it was gone.
    assert after - baseline <= QUEUE // 1024 // 2
    # Every normal subscriber got every publication, in order.
    for r in received:
        assert r == list(range(sent))
    assert gw.metric("wshub_connections") == 11
    for t in (*readers, pub_reader):
        t.cancel()
    slow.abort()
    for c in (*normals, pub):
        c.close()


async def test_one_stalled_client_does_not_slow_the_other_99(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway(
        {
            "client": {"allow_anonymous": True, "command_rate": 0.0},
            "namespaces": [OPEN_NAMESPACE],
            "log": {"level": "warning"},
        }
    )
    stalled = await stalled_client(gw.ws_port, "room")
    clients = [await subscriber(gw.ws_port, "room") for _ in range(99)]
    latencies: list[float] = []
    got = [0] * len(clients)

    async def read(i: int, c: MiniWS) -> None:
        with contextlib.suppress(Closed):
            while True:
                msg = json.loads(await c.recv(30))
                latencies.append(time.monotonic() - msg["push"]["pub"]["data"]["t"])
                got[i] += 1

    readers = [asyncio.create_task(read(i, c)) for i, c in enumerate(clients)]
    pub = await MiniWS.connect(gw.ws_port)
    await pub.hub_connect()
    pub_reader = asyncio.create_task(pub.closed_with(60))
    churn_times: list[float] = []
    churn_errors: list[str] = []
    stop = asyncio.Event()

    async def churn(k: int) -> None:
        # Others connect, subscribe, receive and leave meanwhile.
        n = 0
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                c = await subscriber(gw.ws_port, f"side{k}")
                churn_times.append(time.monotonic() - t0)
                c.close()
            except Exception as exc:
                churn_errors.append(repr(exc))
            n += 1
            await asyncio.sleep(0.05)

    churners = [asyncio.create_task(churn(k)) for k in range(3)]
    seconds, rate = 8.0, 10
    t0 = time.monotonic()
    payload = "y" * 1000
    for k in range(int(seconds * rate)):
        pub.command(publish={"channel": "room", "data": {"t": time.monotonic(), "p": payload}})
        await asyncio.sleep(max(0.0, t0 + (k + 1) / rate - time.monotonic()))
    stop.set()
    await asyncio.gather(*churners)
    total = int(seconds * rate)
    await wait_for(lambda: all(n == total for n in got), 5)
    p50, p99, worst = (percentile(latencies, q) for q in (50, 99, 100))
    print(
        f"\nstalled among 100: {len(latencies)} deliveries, publish->receive p50 "
        f"{p50 * 1000:.1f} ms p99 {p99 * 1000:.1f} ms max {worst * 1000:.1f} ms; "
        f"{len(churn_times)} connect+subscribe, p99 {percentile(churn_times, 99) * 1000:.1f} ms"
    )
    assert got == [total] * len(clients)
    assert p99 < 0.100
    assert not churn_errors
    assert len(churn_times) >= 50 and max(churn_times) < 1.0
    # The stalled client is still there (its queue is far from the bound) and costs nothing.
    assert gw.metric("wshub_slow_consumer_disconnects_total") == 0
    for t in (*readers, pub_reader):
        t.cancel()
    stalled.abort()
    for c in (*clients, pub):
        c.close()
