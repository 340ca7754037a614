"""The three engine interfaces and the values that cross them.

The node is the only caller. Payloads are raw JSON bytes: engines never parse them, so a
publication is encoded once by the client and never re-encoded on its way to subscribers.

Ordering contract: for one channel, publications reach ``BrokerEventHandler`` in the order
their offsets were assigned by ``HistoryStore.append`` on the same engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who a connection is, as presence, join/leave and publication ``info`` show it.

    ``conn_info`` and ``chan_info`` are raw JSON bytes or None.
    """

    client: str
    user: str
    conn_info: bytes | None = None
    chan_info: bytes | None = None


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A place in a channel's history stream. ``epoch`` changes when the stream is lost."""

    offset: int
    epoch: str


@dataclass(slots=True)
class Publication:
    """One message in a channel. ``offset`` is 0 when the channel keeps no history."""

    data: bytes
    info: ClientInfo | None = None
    offset: int = 0
    tags: dict[str, str] | None = None
    time_ms: int = 0


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """Publications read from history plus the stream's current top position."""

    publications: list[Publication]
    position: StreamPosition


@dataclass(frozen=True, slots=True)
class PresenceStats:
    num_clients: int
    num_users: int


class BrokerEventHandler(Protocol):
    """What a broker calls when something arrives for a channel (implemented by the node)."""

    def handle_publication(self, channel: str, pub: Publication, epoch: str) -> None: ...

    def handle_join(self, channel: str, info: ClientInfo) -> None: ...

    def handle_leave(self, channel: str, info: ClientInfo) -> None: ...

    def handle_resync(self) -> None:
        """The broker's subscriptions were down and are back (a reconnect): whatever was
        published meanwhile never arrived. A broker that cannot lose its subscriptions
        (memory) never calls it."""


class Broker(Protocol):
    """Pub/sub between nodes. ``subscribe`` declares this node's interest in a channel;
    a broker may deliver publications of channels nobody subscribed to (memory does not
    filter), the node drops them."""

    async def start(self, handler: BrokerEventHandler) -> None: ...

    async def close(self) -> None: ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    async def publish(self, channel: str, pub: Publication, epoch: str = "") -> None: ...

    async def publish_join(self, channel: str, info: ClientInfo) -> None: ...

    async def publish_leave(self, channel: str, info: ClientInfo) -> None: ...


class HistoryStore(Protocol):
    """A bounded stream per channel with uint64 offsets and an epoch."""

    async def append(
        self, channel: str, pub: Publication, *, size: int, ttl: float
    ) -> StreamPosition:
        """Store ``pub``, assigning it the next offset (set on ``pub`` too).

        Keeps at most ``size`` publications; the whole stream expires ``ttl`` seconds after
        its last append. Returns the new top position.
        """
        ...

    async def read(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 0,
        reverse: bool = False,
    ) -> HistoryResult:
        """Publications after ``since.offset`` (all kept ones when None), oldest first
        unless ``reverse``. ``limit`` 0 returns none (position only), -1 returns all kept.
        When ``since.epoch`` differs from the stream's epoch the read still succeeds; the
        caller compares epochs."""
        ...

    async def position(self, channel: str) -> StreamPosition: ...

    async def remove(self, channel: str) -> None: ...

    async def close(self) -> None: ...


class PresenceManager(Protocol):
    """Who is in a channel: client id -> ClientInfo, entries expiring after ``ttl``."""

    async def add(self, channel: str, info: ClientInfo, *, ttl: float) -> None: ...

    async def remove(self, channel: str, client: str) -> None: ...

    async def get(self, channel: str) -> dict[str, ClientInfo]: ...

    async def stats(self, channel: str) -> PresenceStats: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class Engine:
    """The three parts the node is built with."""

    broker: Broker
    history: HistoryStore
    presence: PresenceManager
    name: str = field(default="memory")
