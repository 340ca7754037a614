"""The hub: this node's client sessions, by id and user, and each channel's subscribers.

Fan-out hands one pre-encoded frame to every subscriber's socket in a single synchronous
pass: no task, no await, no lock per recipient. A subscriber whose connection is closing
is skipped and counted.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from wshub.protocol.framing import text_frame

if TYPE_CHECKING:
    from wshub.protocol.session import ClientSession


class Hub:
    def __init__(self) -> None:
        self.clients: dict[str, ClientSession] = {}
        self.users: dict[str, dict[str, ClientSession]] = {}
        self.channels: dict[str, dict[ClientSession, None]] = {}
        self.num_subscriptions = 0
        self.skipped = 0

    # -- clients -------------------------------------------------------------------------

    def add_client(self, s: ClientSession) -> None:
        self.clients[s.client] = s
        self.users.setdefault(s.user, {})[s.client] = s

    def remove_client(self, s: ClientSession) -> None:
        if self.clients.pop(s.client, None) is None:
            return
        by_user = self.users.get(s.user)
        if by_user is not None:
            by_user.pop(s.client, None)
            if not by_user:
                del self.users[s.user]

    def user_sessions(self, user: str) -> list[ClientSession]:
        return list(self.users.get(user, {}).values())

    # -- subscriptions -------------------------------------------------------------------

    def add_subscriber(self, channel: str, s: ClientSession) -> bool:
        """Add ``s`` to ``channel``; True when it is the channel's first local subscriber."""
        subs = self.channels.get(channel)
        first = subs is None
        if subs is None:
            subs = self.channels[channel] = {}
        if s not in subs:
            subs[s] = None
            self.num_subscriptions += 1
        return first

    def remove_subscriber(self, channel: str, s: ClientSession) -> bool:
        """Remove ``s``; True when the channel has no local subscriber left."""
        subs = self.channels.get(channel)
        if subs is None:
            return False
        if subs.pop(s, 0) is None:
            self.num_subscriptions -= 1
        if not subs:
            del self.channels[channel]
            return True
        return False

    def subscribers(self, channel: str) -> Iterable[ClientSession]:
        return self.channels.get(channel, {}).keys()

    def broadcast(self, channel: str, payload: bytes, skip: Collection[ClientSession] = ()) -> int:
        """Hand ``payload`` to every live subscriber of ``channel``; returns how many.

        The WebSocket frame is built once; each subscriber's connection queues the same
        bytes, and the server writes the queues at the end of the loop iteration, a batch
        of connections per iteration (``transport.server.FLUSH_BATCH``). Subscribers in
        ``skip`` are left out (the node holds their deliveries back)."""
        subs = self.channels.get(channel)
        if not subs:
            return 0
        wire = text_frame(payload)
        size = len(payload)
        sent = 0
        if skip:  # rare: subscribers whose subscribe reply is not out yet
            for s in subs:
                if s not in skip and s.conn.send_frame(wire, size):
                    sent += 1
        else:
            for s in subs:
                if s.conn.send_frame(wire, size):
                    sent += 1
        skipped = len(subs) - sent
        if skipped:
            self.skipped += skipped
        return sent
