"""The library side: an App collects raw routes, RPC methods and hooks.

Hooks are plain callables, sync or async. Each receives a context object and returns
``None`` to go on with the defaults, or a value to decide. Raising
:class:`wshub.CommandError` answers that one command with a protocol error; raising
:class:`wshub.DisconnectError` closes the connection with that disconnect. Any other
exception gives the command an internal-error reply (100) and a traceback in the log;
nothing else is affected. Hooks run on the bounded worker pool with a timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from wshub.transport.raw import RawConnection

F = TypeVar("F", bound=Callable[..., Any])

MaybeAwaitable = Any


@dataclass(slots=True)
class ConnectContext:
    """What on_connecting sees. Set ``user``, ``info`` (JSON-able, shown to others as
    conn_info), ``channels`` (server-side subscriptions), ``reply_data`` (sent back in the
    connect reply) or ``expire_at`` to change the outcome; token claims have been applied
    already.

    The hook returns None to keep the defaults (a connection with neither a user nor a
    token is then refused with 101 unless anonymous connections are allowed), True to
    accept (anonymous included), or False to refuse with 103; it may raise CommandError
    (that error reply) or DisconnectError (close with that code)."""

    client: str
    user: str
    token_claims: dict[str, Any] | None
    data: Any
    name: str
    version: str
    client_ip: str
    headers: dict[str, str]
    state: dict[str, Any]
    info: Any = None
    channels: list[str] = field(default_factory=list)
    reply_data: Any = None
    expire_at: float | None = None


@dataclass(slots=True)
class ClientContext:
    """The connection a command came from."""

    client: str
    user: str
    info: Any
    state: dict[str, Any]


@dataclass(slots=True)
class SubscribeContext:
    client: ClientContext
    channel: str
    data: Any
    token_claims: dict[str, Any] | None
    chan_info: Any = None
    reply_data: Any = None


@dataclass(slots=True)
class PublishContext:
    client: ClientContext
    channel: str
    data: Any


@dataclass(slots=True)
class RPCContext:
    client: ClientContext
    method: str


@dataclass(slots=True)
class DisconnectContext:
    client: ClientContext
    code: int
    reason: str


@dataclass(slots=True)
class RefreshContext:
    client: ClientContext
    token_claims: dict[str, Any] | None
    expire_at: float | None = None


@dataclass(slots=True)
class Allow:
    """Returned by on_subscribe/on_publish to allow explicitly (bypassing the namespace's
    permission options). ``data`` replaces the published data (on_publish) or is sent in
    the subscribe reply; ``info`` becomes chan_info (on_subscribe)."""

    data: Any = None
    info: Any = None


RawHandler = Callable[["RawConnection"], Awaitable[None]]


class App:
    """Routes and handlers of one gateway."""

    def __init__(self) -> None:
        self.raw_routes: dict[str, RawHandler] = {}
        self.route_subprotocols: dict[str, tuple[str, ...]] = {}
        self.rpc_methods: dict[str, Callable[[RPCContext, Any], MaybeAwaitable]] = {}
        self.connecting: Callable[[ConnectContext], MaybeAwaitable] | None = None
        self.subscribe: Callable[[SubscribeContext], MaybeAwaitable] | None = None
        self.publish: Callable[[PublishContext], MaybeAwaitable] | None = None
        self.disconnect: Callable[[DisconnectContext], MaybeAwaitable] | None = None
        self.refresh: Callable[[RefreshContext], MaybeAwaitable] | None = None
        self.message: Callable[[ClientContext, Any], MaybeAwaitable] | None = None
        self.middleware: list[Any] = []
        self.token_validator: Callable[[str], dict[str, Any] | None] | None = None

    def route(
        self, path: str, *, subprotocols: tuple[str, ...] = ()
    ) -> Callable[[RawHandler], RawHandler]:
        """Serve ``path`` as a raw WebSocket route: the handler receives a RawConnection
        to iterate for messages and send on. ``subprotocols``: the Sec-WebSocket-Protocol
        values it speaks; the first one the client offers is selected (the connection's
        ``subprotocol``), and none is selected when the client offers none of them."""

        def deco(fn: RawHandler) -> RawHandler:
            self.raw_routes[path] = fn
            self.route_subprotocols[path] = tuple(subprotocols)
            return fn

        return deco

    def rpc(self, method: str) -> Callable[[F], F]:
        """Register an RPC method: ``(ctx: RPCContext, data) -> result`` (JSON-able)."""

        def deco(fn: F) -> F:
            self.rpc_methods[method] = fn
            return fn

        return deco

    def on_connecting(self, fn: F) -> F:
        self.connecting = fn
        return fn

    def on_subscribe(self, fn: F) -> F:
        self.subscribe = fn
        return fn

    def on_publish(self, fn: F) -> F:
        self.publish = fn
        return fn

    def on_disconnect(self, fn: F) -> F:
        self.disconnect = fn
        return fn

    def on_refresh(self, fn: F) -> F:
        self.refresh = fn
        return fn

    def on_message(self, fn: F) -> F:
        """Handle the ``send`` command (asynchronous message, no reply)."""
        self.message = fn
        return fn
