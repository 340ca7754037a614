"""Engine harnesses for the contract suite.

Each engine provides a factory yielding an ``EngineHarness``. To add an engine: write its
factory and add one ``pytest.param`` line to ``ENGINES``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from wshub.brokers.base import ClientInfo, Engine, Publication
from wshub.brokers.memory import MemoryHistory, MemoryPresence, memory_engine
from wshub.brokers.redis import redis_engine

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingHandler:
    """A ``BrokerEventHandler`` that records everything it is given."""

    def __init__(self) -> None:
        self.publications: list[tuple[str, Publication, str]] = []
        self.joins: list[tuple[str, ClientInfo]] = []
        self.leaves: list[tuple[str, ClientInfo]] = []
        self.events: list[tuple[str, str]] = []  # (kind, channel) in arrival order
        self.resyncs = 0
        self._changed = asyncio.Event()

    def handle_publication(self, channel: str, pub: Publication, epoch: str) -> None:
        self.publications.append((channel, pub, epoch))
        self.events.append(("pub", channel))
        self._changed.set()

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self.joins.append((channel, info))
        self.events.append(("join", channel))
        self._changed.set()

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        self.leaves.append((channel, info))
        self.events.append(("leave", channel))
        self._changed.set()

    def handle_resync(self) -> None:
        self.resyncs += 1
        self.events.append(("resync", ""))
        self._changed.set()

    def pubs_in(self, channel: str) -> list[tuple[Publication, str]]:
        return [(p, e) for c, p, e in self.publications if c == channel]

    async def wait_until(self, predicate: Callable[[], bool], seconds: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (engines may deliver asynchronously)."""
        async with asyncio.timeout(seconds):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


@dataclass
class EngineHarness:
    name: str
    engine: Engine
    handler: RecordingHandler
    # The engine's clock when it can be faked; None means the engine runs on real time and
    # ``advance`` sleeps (so such engines get a short ``ttl``).
    clock: FakeClock | None
    # A ttl the tests scale (fractions/multiples) for history and presence expiry.
    ttl: float
    # How many channel-level structures (streams, presence sets) the engine still holds,
    # observed without touching them (no read that could trigger lazy expiry).
    stored_channels: Callable[[], Awaitable[int]]
    # Give the engine's own background expiry a chance to run.
    settle: Callable[[], Awaitable[None]]
    # Redis engine only: its client and key/channel prefix (for engine-specific tests).
    redis: Redis | None = None
    prefix: str = ""

    async def advance(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)


@asynccontextmanager
async def memory_harness() -> AsyncIterator[EngineHarness]:
    clock = FakeClock()
    engine = memory_engine(clock, cleanup_interval=0.01)
    history, presence = engine.history, engine.presence
    assert isinstance(history, MemoryHistory)
    assert isinstance(presence, MemoryPresence)

    async def stored_channels() -> int:
        return history.num_streams + presence.num_channels

    async def settle() -> None:
        await asyncio.sleep(0.1)  # the sweepers run every 0.01 s of real time

    handler = RecordingHandler()
    await engine.broker.start(handler)
    try:
        yield EngineHarness(
            name="memory",
            engine=engine,
            handler=handler,
            clock=clock,
            ttl=10.0,
            stored_channels=stored_channels,
            settle=settle,
        )
    finally:
        await engine.broker.close()
        await engine.history.close()
        await engine.presence.close()


@asynccontextmanager
async def redis_harness(prefix: str | None = None) -> AsyncIterator[EngineHarness]:
    """A Redis engine under a unique prefix (or ``prefix``, to build a second node on it)."""
    if prefix is None:
        prefix = f"wshub.test.{uuid.uuid4().hex[:12]}."
    # every connection carries a name (CLIENT LIST) so a test can find and kill its own
    client = Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=1.0, client_name=prefix)
    try:
        await client.ping()
    except Exception as exc:  # Redis not answering: the only reason to skip
        await client.aclose()
        pytest.skip(f"Redis at {REDIS_HOST}:{REDIS_PORT} not reachable: {exc!r}")
    engine = redis_engine(client, prefix=prefix)

    async def stored_channels() -> int:
        return len([k async for k in client.scan_iter(match=prefix + "*", count=1000)])

    async def settle() -> None:
        await asyncio.sleep(0.2)  # Redis expires keys actively ~10 times a second

    handler = RecordingHandler()
    await engine.broker.start(handler)
    try:
        yield EngineHarness(
            name="redis",
            engine=engine,
            handler=handler,
            clock=None,
            ttl=1.0,
            stored_channels=stored_channels,
            settle=settle,
            redis=client,
            prefix=prefix,
        )
    finally:
        await engine.broker.close()
        await engine.history.close()
        await engine.presence.close()
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


HarnessFactory = Callable[[], AbstractAsyncContextManager[EngineHarness]]

FACTORIES: dict[str, HarnessFactory] = {
    "memory": memory_harness,
    "redis": redis_harness,
}

ENGINES = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


@pytest.fixture(params=ENGINES)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[EngineHarness]:
    async with FACTORIES[request.param]() as h:
        yield h
