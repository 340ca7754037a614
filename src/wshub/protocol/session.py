"""Per-connection state of the client protocol, with no I/O and no clock of its own."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from wshub.brokers.base import ClientInfo

if TYPE_CHECKING:
    from wshub.protocol.messages import Command


class Sink(Protocol):
    """Where a session's bytes go (a transport Connection in production)."""

    id: str
    closing: bool

    def send(self, data: bytes) -> bool: ...


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; time is passed in."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now

    def take(self, now: float, n: float = 1.0) -> bool:
        tokens = self.tokens + (now - self.last) * self.rate
        tokens = min(tokens, self.burst)
        self.last = now
        if tokens >= n:
            self.tokens = tokens - n
            return True
        self.tokens = tokens
        return False

    def wait_time(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens are available (after the last ``take``)."""
        missing = n - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate


@dataclass(slots=True)
class Subscription:
    channel: str
    namespace: str
    recoverable: bool = False
    positioned: bool = False
    join_leave: bool = False
    presence: bool = False
    chan_info: bytes | None = None
    expires_at: float | None = None
    server_side: bool = False


@dataclass(slots=True, eq=False)
class ClientSession:
    """One client of the Centrifugo protocol. Identity is the object (hashable by id()).

    ``conn`` is where pushes go; while a multi-command frame is being answered it is a
    :class:`HeldSink` so that pushes follow that frame's replies, then it is ``real`` again.
    """

    conn: Sink
    real: Any
    client: str
    user: str = ""
    conn_info: bytes | None = None
    connected: bool = False
    closed: bool = False
    name: str = ""
    version: str = ""
    expires_at: float | None = None
    subs: dict[str, Subscription] = field(default_factory=dict)
    pending: deque[list[Command]] = field(default_factory=deque)  # replaced lazily
    busy: bool = False
    bucket: TokenBucket | None = None
    limited_in_a_row: int = 0
    commands: int = 0
    last_command_at: float = 0.0
    connected_at: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)
    timer: Any = None
    info_cache: ClientInfo | None = None
    app_ctx: Any = None
    """The handlers' view of this client, built once per identity (owned by the node)."""
    after_reply: list[Callable[[], None]] = field(default_factory=list)
    """Actions that must follow the current frame's replies (join pushes)."""

    def info(self, chan_info: bytes | None = None) -> ClientInfo:
        if chan_info is None:
            ci = self.info_cache
            if ci is None:
                ci = self.info_cache = ClientInfo(self.client, self.user, self.conn_info, None)
            return ci
        return ClientInfo(self.client, self.user, self.conn_info, chan_info)


class HeldSink:
    """Collects frames while a session answers a multi-command frame."""

    __slots__ = ("closing", "frames", "id")

    def __init__(self, real: Sink) -> None:
        self.id = real.id
        self.closing = False
        self.frames: list[bytes] = []

    def send(self, data: bytes) -> bool:
        self.frames.append(data)
        return True
