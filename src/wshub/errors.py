"""The one exception tree. Everything wshub raises on purpose derives from WshubError."""

from __future__ import annotations

from typing import Any

from wshub.codes import ClientError, Disconnect


class WshubError(Exception):
    """Base of every error wshub raises on purpose."""


class ConfigError(WshubError):
    """An invalid configuration value. ``key`` names the offending setting."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class CommandError(WshubError):
    """Raise from a handler to answer one command with a protocol error reply."""

    def __init__(self, error: ClientError, message: str | None = None) -> None:
        super().__init__(message or error.message)
        self.error = error if message is None else error.with_message(message)


class DisconnectError(WshubError):
    """Raise from a handler (or anywhere in a connection's processing) to close it."""

    def __init__(self, disconnect: Disconnect) -> None:
        super().__init__(f"disconnect {disconnect.code}: {disconnect.reason}")
        self.disconnect = disconnect


class ProtocolViolation(WshubError):
    """The peer broke the wire protocol; the connection closes with ``disconnect``."""

    def __init__(self, disconnect: Disconnect, detail: str = "") -> None:
        super().__init__(detail or disconnect.reason)
        self.disconnect = disconnect
        self.detail = detail


class Rejection(WshubError):
    """A pre-upgrade refusal: a plain HTTP response, never a 101."""

    def __init__(
        self,
        status: int,
        error: str,
        *,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}")
        self.status = status
        self.error = error
        self.headers = headers or {}
        self.body = body
