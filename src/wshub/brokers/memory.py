"""The in-memory engine: one process, no persistence.

* ``MemoryBroker`` calls the node's handler directly from ``publish`` (no task, no queue):
  with ``HistoryStore.append`` being synchronous underneath, ``await append`` followed by
  ``await publish`` never yields to the loop, so delivery order equals offset order.
* ``MemoryHistory`` keeps a bounded ``deque`` per channel, offsets from 1 and a random epoch
  per stream. A stream not appended to for ``ttl`` seconds is dropped entirely; recreating it
  yields a new epoch and offset 0, which is how clients learn history was lost.
* ``MemoryPresence`` keeps client id -> ClientInfo per channel, each entry with its own ttl.

Expiry uses a heap with one entry in charge per stream / presence entry (refreshing an
expiry only moves a timestamp; the entry is rescheduled when it comes due). Due entries are
popped on every operation (O(1) when nothing is due) and by a background task owned by the
object, started lazily while something can expire and cancelled by ``close()``, so expired
channels are freed without any read touching them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from wshub.brokers.base import (
    BrokerEventHandler,
    ClientInfo,
    Engine,
    HistoryResult,
    PresenceStats,
    Publication,
    StreamPosition,
)

__all__ = ["MemoryBroker", "MemoryHistory", "MemoryPresence", "memory_engine"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

_INF = math.inf


def new_epoch() -> str:
    """A fresh random stream epoch (8 hex chars)."""
    return secrets.token_hex(4)


# --------------------------------------------------------------------------- broker


class MemoryBroker:
    """Delivers to the handler given at ``start``, synchronously, without filtering."""

    __slots__ = ("_channels", "_handler")

    def __init__(self) -> None:
        self._handler: BrokerEventHandler | None = None
        self._channels: set[str] = set()

    async def start(self, handler: BrokerEventHandler) -> None:
        self._handler = handler

    async def close(self) -> None:
        self._handler = None
        self._channels.clear()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    def is_subscribed(self, channel: str) -> bool:
        return channel in self._channels

    async def publish(self, channel: str, pub: Publication, epoch: str = "") -> None:
        handler = self._handler
        if handler is None:  # not started or closed: nobody to deliver to
            return
        try:
            handler.handle_publication(channel, pub, epoch)
        except Exception:
            # A subscriber-side failure must not fail the publisher (as with a real broker).
            logger.exception("handler failed on publication in %r", channel)

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            handler.handle_join(channel, info)
        except Exception:
            logger.exception("handler failed on join in %r", channel)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            handler.handle_leave(channel, info)
        except Exception:
            logger.exception("handler failed on leave in %r", channel)


# --------------------------------------------------------------------------- expiry


class _Timed:
    """Something with an expiry time that ``_ExpiryHeap`` can schedule."""

    __slots__ = ("due", "expires_at")

    def __init__(self, expires_at: float) -> None:
        self.expires_at = expires_at
        self.due: float | None = None  # due time of the heap entry in charge, if any


K = TypeVar("K")
T = TypeVar("T", bound=_Timed)


class _ExpiryHeap(Generic[K, T]):
    """Min-heap of (due time, key, item).

    Invariant: every stored item with a finite ``expires_at`` has a heap entry "in charge"
    (its time is ``item.due``) with ``due <= expires_at``, so popping everything due at
    ``now`` finds every expired item. Extending an expiry costs nothing: the entry is
    rescheduled when it comes due. Shortening it pushes an earlier entry, which takes charge.
    Entries not in charge (superseded, or for removed/replaced items) are skipped when popped.
    """

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K, T]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, key: K, item: T) -> None:
        """Call after setting ``item.expires_at`` (new item or refresh)."""
        due = item.due
        if item.expires_at != _INF and (due is None or item.expires_at < due):
            heapq.heappush(self._heap, (item.expires_at, next(self._seq), key, item))
            item.due = item.expires_at

    def has_due(self, now: float) -> bool:
        return bool(self._heap) and self._heap[0][0] <= now

    def pop_expired(self, now: float, current: Callable[[K], T | None]) -> list[K]:
        """Keys whose item (still the one stored under ``key``) has expired at ``now``."""
        heap = self._heap
        expired: list[K] = []
        while heap and heap[0][0] <= now:
            at, _, key, item = heapq.heappop(heap)
            if item.due != at or current(key) is not item:
                continue  # superseded, or the item was removed or replaced meanwhile
            item.due = None
            if item.expires_at <= now:
                expired.append(key)
            else:
                self.schedule(key, item)  # refreshed since it was scheduled
        return expired

    def maybe_compact(self, live: int, items: Callable[[], Iterable[tuple[K, T]]]) -> None:
        """Rebuild when stale entries outnumber live ones (remove/re-add churn)."""
        if len(self._heap) <= 2 * live + 1024:
            return
        self._heap = []
        for key, item in items():
            item.due = None
            self.schedule(key, item)


class _Sweeper:
    """A background task that calls ``sweep`` every ``interval`` seconds while ``pending``
    says there is something that may expire. Started lazily from inside the event loop."""

    __slots__ = ("_closed", "_interval", "_pending", "_sweep", "_task")

    def __init__(
        self, interval: float, sweep: Callable[[], object], pending: Callable[[], bool]
    ) -> None:
        self._interval = interval
        self._sweep = sweep
        self._pending = pending
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def ensure_running(self) -> None:
        if self._task is None and not self._closed and self._interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def running(self) -> bool:
        return self._task is not None

    async def _run(self) -> None:
        try:
            while self._pending():
                await asyncio.sleep(self._interval)
                try:
                    self._sweep()
                except Exception:
                    logger.exception("expiry sweep failed")
        finally:
            self._task = None

    async def close(self) -> None:
        self._closed = True
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None


# --------------------------------------------------------------------------- history


class _Stream(_Timed):
    __slots__ = ("appended", "epoch", "items", "top")

    def __init__(self, epoch: str, size: int, expires_at: float) -> None:
        super().__init__(expires_at)
        self.epoch = epoch
        self.top = 0
        self.items: deque[Publication] = deque(maxlen=max(size, 0))
        self.appended = False  # created by a read only: reads keep refreshing its expiry


def _slice(items: deque[Publication], start: int, stop: int) -> list[Publication]:
    """``list(items)[start:stop]`` for 0 <= start <= stop <= len, walking from the nearer end."""
    n = len(items)
    if stop <= start:
        return []
    if start <= n - stop:
        return list(itertools.islice(items, start, stop))
    out = list(itertools.islice(reversed(items), n - stop, n - start))
    out.reverse()
    return out


class MemoryHistory:
    """Bounded per-channel streams with offsets, epochs, size and ttl.

    ``meta_ttl``: a read of a channel without a stream creates an empty one (offset 0 and a
    fixed epoch) so that a client subscribing before the first publication keeps a stable
    epoch; such a never-appended stream expires ``meta_ttl`` seconds after its last read.
    ``ttl <= 0`` in ``append`` means the stream never expires. Read results are the stored
    publication objects: callers must not mutate them.
    """

    def __init__(
        self,
        clock: Clock = time.monotonic,
        *,
        cleanup_interval: float = 1.0,
        meta_ttl: float = 300.0,
    ) -> None:
        self._clock = clock
        self._meta_ttl = meta_ttl
        self._streams: dict[str, _Stream] = {}
        self._expiry: _ExpiryHeap[str, _Stream] = _ExpiryHeap()
        self._sweeper = _Sweeper(cleanup_interval, self.purge_expired, self._has_scheduled)

    # -- housekeeping

    @property
    def num_streams(self) -> int:
        return len(self._streams)

    def _has_scheduled(self) -> bool:
        return len(self._expiry) > 0

    def purge_expired(self) -> int:
        """Drop every expired stream now; returns how many were dropped."""
        return self._purge(self._clock())

    def _purge(self, now: float) -> int:
        self._expiry.maybe_compact(len(self._streams), self._streams.items)
        if not self._expiry.has_due(now):
            return 0
        expired = self._expiry.pop_expired(now, self._streams.get)
        for channel in expired:
            del self._streams[channel]
        return len(expired)

    def _for_read(self, channel: str) -> _Stream:
        now = self._clock()
        self._purge(now)
        stream = self._streams.get(channel)
        if stream is None:
            stream = _Stream(new_epoch(), 0, _INF)
            self._streams[channel] = stream
        if not stream.appended:
            stream.expires_at = now + self._meta_ttl if self._meta_ttl > 0 else _INF
            self._expiry.schedule(channel, stream)
            self._sweeper.ensure_running()
        return stream

    # -- HistoryStore

    async def append(
        self, channel: str, pub: Publication, *, size: int, ttl: float
    ) -> StreamPosition:
        now = self._clock()
        self._purge(now)
        stream = self._streams.get(channel)
        if stream is None:
            stream = _Stream(new_epoch(), size, _INF)
            self._streams[channel] = stream
        elif stream.items.maxlen != max(size, 0):
            stream.items = deque(stream.items, maxlen=max(size, 0))
        stream.top += 1
        pub.offset = stream.top
        tags = pub.tags
        # a copy: the caller's object may change after this; data and info are immutable
        stream.items.append(
            Publication(
                pub.data, pub.info, pub.offset, None if tags is None else dict(tags), pub.time_ms
            )
        )
        stream.appended = True
        stream.expires_at = now + ttl if ttl > 0 else _INF
        self._expiry.schedule(channel, stream)
        self._sweeper.ensure_running()
        return StreamPosition(stream.top, stream.epoch)

    async def read(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 0,
        reverse: bool = False,
    ) -> HistoryResult:
        stream = self._for_read(channel)
        position = StreamPosition(stream.top, stream.epoch)
        if limit == 0 or not stream.items:
            return HistoryResult([], position)
        items = stream.items
        n = len(items)
        first = stream.top - n + 1  # offset of items[0]
        # [lo, hi): the index range selected by ``since``
        lo, hi = 0, n
        if since is not None:
            if reverse:
                hi = min(max(since.offset - first, 0), n)  # offsets < since.offset
            else:
                lo = min(max(since.offset - first + 1, 0), n)  # offsets > since.offset
        if limit > 0:
            if reverse:
                lo = max(lo, hi - limit)
            else:
                hi = min(hi, lo + limit)
        pubs = _slice(items, lo, hi)
        if reverse:
            pubs.reverse()
        return HistoryResult(pubs, position)

    async def position(self, channel: str) -> StreamPosition:
        stream = self._for_read(channel)
        return StreamPosition(stream.top, stream.epoch)

    async def remove(self, channel: str) -> None:
        self._streams.pop(channel, None)

    async def close(self) -> None:
        await self._sweeper.close()
        self._streams.clear()
        self._expiry = _ExpiryHeap()


# --------------------------------------------------------------------------- presence


class _PresenceEntry(_Timed):
    __slots__ = ("info",)

    def __init__(self, info: ClientInfo, expires_at: float) -> None:
        super().__init__(expires_at)
        self.info = info


class MemoryPresence:
    """client id -> ClientInfo per channel; entries expire ``ttl`` after their last ``add``
    (``ttl <= 0``: never). Empty channels are removed."""

    def __init__(self, clock: Clock = time.monotonic, *, cleanup_interval: float = 1.0) -> None:
        self._clock = clock
        self._channels: dict[str, dict[str, _PresenceEntry]] = {}
        self._count = 0
        self._expiry: _ExpiryHeap[tuple[str, str], _PresenceEntry] = _ExpiryHeap()
        self._sweeper = _Sweeper(cleanup_interval, self.purge_expired, self._has_scheduled)

    @property
    def num_channels(self) -> int:
        return len(self._channels)

    def _has_scheduled(self) -> bool:
        return len(self._expiry) > 0

    def purge_expired(self) -> int:
        """Drop every expired entry now; returns how many were dropped."""
        return self._purge(self._clock())

    def _current(self, key: tuple[str, str]) -> _PresenceEntry | None:
        clients = self._channels.get(key[0])
        return None if clients is None else clients.get(key[1])

    def _entries(self) -> Iterable[tuple[tuple[str, str], _PresenceEntry]]:
        for channel, clients in self._channels.items():
            for client, entry in clients.items():
                yield (channel, client), entry

    def _purge(self, now: float) -> int:
        self._expiry.maybe_compact(self._count, self._entries)
        if not self._expiry.has_due(now):
            return 0
        expired = self._expiry.pop_expired(now, self._current)
        for channel, client in expired:
            self._discard(channel, client)
        return len(expired)

    def _discard(self, channel: str, client: str) -> None:
        clients = self._channels.get(channel)
        if clients is None or clients.pop(client, None) is None:
            return
        self._count -= 1
        if not clients:
            del self._channels[channel]

    async def add(self, channel: str, info: ClientInfo, *, ttl: float) -> None:
        now = self._clock()
        self._purge(now)
        expires_at = now + ttl if ttl > 0 else _INF
        clients = self._channels.get(channel)
        if clients is None:
            clients = self._channels[channel] = {}
        entry = clients.get(info.client)
        if entry is None:
            entry = clients[info.client] = _PresenceEntry(info, expires_at)
            self._count += 1
        else:
            entry.info = info
            entry.expires_at = expires_at
        self._expiry.schedule((channel, info.client), entry)
        self._sweeper.ensure_running()

    async def remove(self, channel: str, client: str) -> None:
        self._discard(channel, client)

    async def get(self, channel: str) -> dict[str, ClientInfo]:
        self._purge(self._clock())
        clients = self._channels.get(channel)
        if clients is None:
            return {}
        return {client: entry.info for client, entry in clients.items()}

    async def stats(self, channel: str) -> PresenceStats:
        self._purge(self._clock())
        clients = self._channels.get(channel)
        if clients is None:
            return PresenceStats(0, 0)
        return PresenceStats(len(clients), len({e.info.user for e in clients.values()}))

    async def close(self) -> None:
        await self._sweeper.close()
        self._channels.clear()
        self._count = 0
        self._expiry = _ExpiryHeap()


# --------------------------------------------------------------------------- engine


def memory_engine(
    clock: Clock = time.monotonic,
    *,
    cleanup_interval: float = 1.0,
    meta_ttl: float = 300.0,
) -> Engine:
    """Broker, history and presence for a single node."""
    return Engine(
        broker=MemoryBroker(),
        history=MemoryHistory(clock, cleanup_interval=cleanup_interval, meta_ttl=meta_ttl),
        presence=MemoryPresence(clock, cleanup_interval=cleanup_interval),
        name="memory",
    )
