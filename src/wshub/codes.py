"""Every code a peer can see, as data, in one place.

Three families:

* WebSocket close codes (RFC 6455 section 7.4) used by the transport itself.
* Centrifugo client protocol error codes (replies to one command; the connection lives on).
* Centrifugo disconnect codes, sent as the WebSocket close code with a short reason.
  Reconnect semantics follow the protocol: codes 3000-3499, 4000-4499 and >= 5000 tell the
  SDK to reconnect; 3500-3999 and 4500-4999 are terminal (no automatic reconnect).
* Unsubscribe codes carried by the ``unsubscribe`` push: < 2500 leaves the subscription
  unsubscribed, >= 2500 makes the SDK resubscribe.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class WSClose(IntEnum):
    """RFC 6455 section 7.4.1 close codes the transport sends."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


@dataclass(frozen=True, slots=True)
class ClientError:
    """An error reply to one command. ``temporary`` asks the SDK to retry the command."""

    code: int
    message: str
    temporary: bool = False

    def with_message(self, message: str) -> ClientError:
        return ClientError(self.code, message, self.temporary)


ERROR_INTERNAL = ClientError(100, "internal server error", temporary=True)
ERROR_UNAUTHORIZED = ClientError(101, "unauthorized")
ERROR_UNKNOWN_CHANNEL = ClientError(102, "unknown channel")
ERROR_PERMISSION_DENIED = ClientError(103, "permission denied")
ERROR_METHOD_NOT_FOUND = ClientError(104, "method not found")
ERROR_ALREADY_SUBSCRIBED = ClientError(105, "already subscribed")
ERROR_LIMIT_EXCEEDED = ClientError(106, "limit exceeded")
ERROR_BAD_REQUEST = ClientError(107, "bad request")
ERROR_NOT_AVAILABLE = ClientError(108, "not available")
ERROR_TOKEN_EXPIRED = ClientError(109, "token expired")
ERROR_EXPIRED = ClientError(110, "expired")
ERROR_TOO_MANY_REQUESTS = ClientError(111, "too many requests", temporary=True)
ERROR_UNRECOVERABLE_POSITION = ClientError(112, "unrecoverable position")

CLIENT_ERRORS: tuple[ClientError, ...] = (
    ERROR_INTERNAL,
    ERROR_UNAUTHORIZED,
    ERROR_UNKNOWN_CHANNEL,
    ERROR_PERMISSION_DENIED,
    ERROR_METHOD_NOT_FOUND,
    ERROR_ALREADY_SUBSCRIBED,
    ERROR_LIMIT_EXCEEDED,
    ERROR_BAD_REQUEST,
    ERROR_NOT_AVAILABLE,
    ERROR_TOKEN_EXPIRED,
    ERROR_EXPIRED,
    ERROR_TOO_MANY_REQUESTS,
    ERROR_UNRECOVERABLE_POSITION,
)


@dataclass(frozen=True, slots=True)
class Disconnect:
    """A reason to close a connection: the WebSocket close code and a short reason.

    The reason must fit a close frame (at most 123 bytes of UTF-8).
    """

    code: int
    reason: str

    @property
    def reconnect(self) -> bool:
        """Whether SDKs reconnect after this disconnect (the protocol's code ranges)."""
        c = self.code
        if c < 3000:
            return c != WSClose.POLICY_VIOLATION
        return c < 3500 or c >= 5000 or 4000 <= c < 4500


# Reconnect range.
DISCONNECT_CONNECTION_CLOSED = Disconnect(3000, "connection closed")
DISCONNECT_SHUTDOWN = Disconnect(3001, "shutdown")
DISCONNECT_SERVER_ERROR = Disconnect(3004, "internal server error")
DISCONNECT_EXPIRED = Disconnect(3005, "connection expired")
DISCONNECT_SUB_EXPIRED = Disconnect(3006, "subscription expired")
DISCONNECT_SLOW = Disconnect(3008, "slow")
DISCONNECT_WRITE_ERROR = Disconnect(3009, "write error")
DISCONNECT_INSUFFICIENT_STATE = Disconnect(3010, "insufficient state")
DISCONNECT_FORCE_RECONNECT = Disconnect(3011, "force reconnect")
DISCONNECT_NO_PONG = Disconnect(3012, "no pong")
DISCONNECT_TOO_MANY_REQUESTS = Disconnect(3013, "too many requests")
# Terminal range.
DISCONNECT_INVALID_TOKEN = Disconnect(3500, "invalid token")
DISCONNECT_BAD_REQUEST = Disconnect(3501, "bad request")
DISCONNECT_STALE = Disconnect(3502, "stale")
DISCONNECT_FORCE_NO_RECONNECT = Disconnect(3503, "force disconnect")
DISCONNECT_CONNECTION_LIMIT = Disconnect(3504, "connection limit")
DISCONNECT_CHANNEL_LIMIT = Disconnect(3505, "channel limit")
DISCONNECT_INAPPROPRIATE_PROTOCOL = Disconnect(3506, "inappropriate protocol")
DISCONNECT_PERMISSION_DENIED = Disconnect(3507, "permission denied")
DISCONNECT_NOT_AVAILABLE = Disconnect(3508, "not available")
DISCONNECT_TOO_MANY_ERRORS = Disconnect(3509, "too many errors")

# Transport-level closes, for raw routes and for the RFC 6455 rules.
CLOSE_GOING_AWAY = Disconnect(WSClose.GOING_AWAY, "server shutting down")
CLOSE_PROTOCOL_ERROR = Disconnect(WSClose.PROTOCOL_ERROR, "protocol error")
CLOSE_INVALID_PAYLOAD = Disconnect(WSClose.INVALID_PAYLOAD, "invalid utf-8")
CLOSE_MESSAGE_TOO_BIG = Disconnect(WSClose.MESSAGE_TOO_BIG, "message too big")
CLOSE_INTERNAL_ERROR = Disconnect(WSClose.INTERNAL_ERROR, "internal error")
CLOSE_UNSUPPORTED_DATA = Disconnect(WSClose.UNSUPPORTED_DATA, "unsupported data")
CLOSE_IDLE = Disconnect(WSClose.POLICY_VIOLATION, "idle timeout")
# Raw routes have no protocol-level slow code; 1013 "try again later" is the closest
# standard code and keeps the reconnect semantics of DISCONNECT_SLOW.
CLOSE_SLOW = Disconnect(WSClose.TRY_AGAIN_LATER, "slow consumer")
CLOSE_NO_PONG = Disconnect(WSClose.GOING_AWAY, "no pong")


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Why a server ended one subscription (the ``unsubscribe`` push)."""

    code: int
    reason: str

    @property
    def resubscribe(self) -> bool:
        return self.code >= 2500


UNSUBSCRIBE_SERVER = Unsubscribe(2000, "server unsubscribe")
UNSUBSCRIBE_INSUFFICIENT = Unsubscribe(2500, "insufficient state")
UNSUBSCRIBE_EXPIRED = Unsubscribe(2501, "subscription expired")
