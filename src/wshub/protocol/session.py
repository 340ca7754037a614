"""Per-connection state of the client protocol, with no I/O and no clock of its own."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from wshub.brokers.base import ClientInfo
from wshub.protocol.framing import text_frame
from wshub.protocol.tokenbucket import TokenBucket

__all__ = ["ClientSession", "HeldSink", "Sink", "Subscription", "TokenBucket"]

if TYPE_CHECKING:
    from wshub.protocol.messages import Command


class Sink(Protocol):
    """Where a session's bytes go (a transport Connection in production)."""

    id: str
    closing: bool

    def send(self, data: bytes) -> bool: ...

    def send_frame(self, wire: bytes, size: int) -> bool:
        """Send a complete text frame built once for many sinks (``size``: payload bytes)."""
        ...


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


class ClientSession:
    """One client of the Centrifugo protocol. Identity is the object (hashable by id()).

    ``conn`` is where pushes go; while a multi-command frame is being answered it is a
    :class:`HeldSink` so that pushes follow that frame's replies, then it is ``real`` again.
    A plain slotted class: one is built per connection, on the accept path.
    """

    __slots__ = (
        "after_reply",
        "app_ctx",
        "bucket",
        "busy",
        "client",
        "closed",
        "commands",
        "conn",
        "conn_info",
        "connected",
        "connected_at",
        "expires_at",
        "info_cache",
        "last_command_at",
        "limited_in_a_row",
        "name",
        "pending",
        "real",
        "state",
        "subs",
        "timer",
        "user",
        "version",
    )

    def __init__(
        self,
        conn: Sink,
        real: Any,
        client: str,
        *,
        user: str = "",
        conn_info: bytes | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.conn = conn
        self.real = real
        self.client = client
        self.user = user
        self.conn_info = conn_info
        self.state: dict[str, Any] = state if state is not None else {}
        self.connected = False
        self.closed = False
        self.name = ""
        self.version = ""
        self.expires_at: float | None = None
        self.subs: dict[str, Subscription] = {}
        self.pending: deque[list[Command]] | None = None
        """Frames waiting while one is being answered (created on first need)."""
        self.busy = False
        self.bucket: TokenBucket | None = None
        self.limited_in_a_row = 0
        self.commands = 0
        self.last_command_at = 0.0
        self.connected_at = 0.0
        self.timer: Any = None
        self.info_cache: ClientInfo | None = None
        self.app_ctx: Any = None
        """The handlers' view of this client, built once per identity (owned by the node)."""
        self.after_reply: list[Callable[[], None]] | None = None
        """Actions that must follow the current frame's replies (join pushes)."""

    def defer(self, action: Callable[[], None]) -> None:
        """Run ``action`` after the replies of the frame being answered."""
        if self.after_reply is None:
            self.after_reply = [action]
        else:
            self.after_reply.append(action)

    def info(self, chan_info: bytes | None = None) -> ClientInfo:
        if chan_info is None:
            ci = self.info_cache
            if ci is None:
                ci = self.info_cache = ClientInfo(self.client, self.user, self.conn_info, None)
            return ci
        return ClientInfo(self.client, self.user, self.conn_info, chan_info)


class HeldSink:
    """Collects frames while a session answers a multi-command frame; ``release`` sends
    them, in order, to the real sink."""

    __slots__ = ("closing", "frames", "id")

    def __init__(self, real: Sink) -> None:
        self.id = real.id
        self.closing = False
        self.frames: list[tuple[bytes, int]] = []
        """(wire frame, payload size) pairs."""

    def send(self, data: bytes) -> bool:
        self.frames.append((text_frame(data), len(data)))
        return True

    def send_frame(self, wire: bytes, size: int) -> bool:
        self.frames.append((wire, size))
        return True

    def release(self, sink: Sink) -> None:
        frames, self.frames = self.frames, []
        for wire, size in frames:
            sink.send_frame(wire, size)
