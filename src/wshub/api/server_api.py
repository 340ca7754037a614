"""The server HTTP API, wire-compatible with Centrifugo's (what the ``cent`` package and the
other Centrifugo API clients speak).

``POST /api/<method>`` with a JSON object body, on the HTTP port. Methods: publish,
broadcast, subscribe, unsubscribe, disconnect, refresh, presence, presence_stats, history,
history_remove, channels, info and batch. The OpenAPI 3.1 description is served at
``GET /api/openapi.json`` (see :mod:`wshub.api.openapi`).

* Authentication: ``X-API-Key: <key>`` or ``Authorization: apikey <key>`` (compared in
  constant time). Missing or wrong key -> 401. No ``api_key`` configured -> every /api path
  answers 404.
* Transport-level problems are HTTP statuses: a body that is not JSON, or a field of the
  wrong type -> 400 with a message; an unknown method -> 404; a body over the size limit
  -> 413.
* Everything else is HTTP 200 with ``{"result": {...}}`` or ``{"error": {"code": N,
  "message": "..."}}`` using the client protocol's error codes (102 unknown channel, 107 bad
  request, 108 not available ...). ``batch`` answers ``{"replies": [{"<method>": {...}} |
  {"error": {...}}, ...]}``, one reply per command, in order.

Publication data stays raw JSON bytes from the request body to the subscribers' frames.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import hmac
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from wshub import __version__, codes
from wshub.codes import Disconnect
from wshub.config import NamespaceConfig
from wshub.errors import CommandError
from wshub.protocol import messages as m

if TYPE_CHECKING:
    from wshub.gateway import Gateway
    from wshub.node import Node

log = logging.getLogger("wshub.api")

MAX_BODY_BYTES = 10 * 1024 * 1024
_JSON = "application/json"

Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
Offset = Annotated[int, Meta(ge=0, le=2**63 - 1)]
UnixSeconds = Annotated[int, Meta(ge=0, le=2**63 - 1)]

# --------------------------------------------------------------------------- requests


class StreamPosition(Struct, kw_only=True):
    """A place in a channel's history stream."""

    offset: Annotated[Offset, Meta(description="Offset in the history stream.")] = 0
    epoch: Annotated[str, Meta(description="Epoch of the stream.")] = ""


class DisconnectObject(Struct, kw_only=True):
    """A custom disconnect: WebSocket close code (3000-4999) and reason (<= 123 bytes)."""

    code: Annotated[int, Meta(ge=0, le=65535, description="Close code, 3000-4999.")] = 0
    reason: Annotated[str, Meta(description="Short reason, at most 123 bytes of UTF-8.")] = ""


class PublishRequest(Struct, kw_only=True):
    """Publish ``data`` into ``channel``."""

    channel: Annotated[str, Meta(description="Channel to publish into.")] = ""
    data: Annotated[Raw | UnsetType, Meta(description="Any JSON value.")] = UNSET
    b64data: Annotated[
        str | None, Meta(description="Base64 of the data (it must decode to JSON).")
    ] = None
    skip_history: Annotated[
        bool | None, Meta(description="Do not add the publication to history.")
    ] = None
    tags: Annotated[
        dict[str, str] | None, Meta(description="String tags delivered with the publication.")
    ] = None
    idempotency_key: Annotated[
        str | None, Meta(description="Accepted for compatibility; not used.")
    ] = None


class BroadcastRequest(Struct, kw_only=True):
    """Publish the same ``data`` into several channels."""

    channels: Annotated[list[str], Meta(description="Channels to publish into.")] = []
    data: Annotated[Raw | UnsetType, Meta(description="Any JSON value.")] = UNSET
    b64data: Annotated[
        str | None, Meta(description="Base64 of the data (it must decode to JSON).")
    ] = None
    skip_history: Annotated[
        bool | None, Meta(description="Do not add the publications to history.")
    ] = None
    tags: Annotated[
        dict[str, str] | None, Meta(description="String tags delivered with the publications.")
    ] = None
    idempotency_key: Annotated[
        str | None, Meta(description="Accepted for compatibility; not used.")
    ] = None


class SubscribeRequest(Struct, kw_only=True):
    """Subscribe a user's connections (or one of them) to a channel."""

    user: Annotated[str, Meta(description="User ID.")] = ""
    channel: Annotated[str, Meta(description="Channel.")] = ""
    client: Annotated[str | None, Meta(description="Only this client ID.")] = None
    session: Annotated[str | None, Meta(description="Accepted for compatibility.")] = None
    info: Annotated[Raw | UnsetType, Meta(description="Accepted for compatibility.")] = UNSET
    b64info: Annotated[str | None, Meta(description="Accepted for compatibility.")] = None
    data: Annotated[Raw | UnsetType, Meta(description="Accepted for compatibility.")] = UNSET
    b64data: Annotated[str | None, Meta(description="Accepted for compatibility.")] = None
    recover_since: Annotated[
        StreamPosition | None, Meta(description="Accepted for compatibility.")
    ] = None
    override: Annotated[dict[str, Any] | None, Meta(description="Accepted for compatibility.")] = (
        None
    )


class UnsubscribeRequest(Struct, kw_only=True):
    """Unsubscribe a user's connections (or one of them) from a channel."""

    user: Annotated[str, Meta(description="User ID.")] = ""
    channel: Annotated[str, Meta(description="Channel.")] = ""
    client: Annotated[str | None, Meta(description="Only this client ID.")] = None
    session: Annotated[str | None, Meta(description="Accepted for compatibility.")] = None


class DisconnectRequest(Struct, kw_only=True):
    """Disconnect a user's connections (or one of them)."""

    user: Annotated[str, Meta(description="User ID.")] = ""
    client: Annotated[str | None, Meta(description="Only this client ID.")] = None
    session: Annotated[str | None, Meta(description="Accepted for compatibility.")] = None
    whitelist: Annotated[list[str] | None, Meta(description="Client IDs to keep connected.")] = None
    disconnect: Annotated[
        DisconnectObject | None,
        Meta(description='Close code and reason (default 3503 "force disconnect").'),
    ] = None


class RefreshRequest(Struct, kw_only=True):
    """Set or clear the expiry of a user's connections, or expire them now."""

    user: Annotated[str, Meta(description="User ID.")] = ""
    client: Annotated[str | None, Meta(description="Only this client ID.")] = None
    session: Annotated[str | None, Meta(description="Accepted for compatibility.")] = None
    expired: Annotated[
        bool | None, Meta(description="Close the connections as expired (3005).")
    ] = None
    expire_at: Annotated[
        UnixSeconds | None,
        Meta(description="Unix time when the connections expire (absent: never)."),
    ] = None


class ChannelRequest(Struct, kw_only=True):
    """A request about one channel."""

    channel: Annotated[str, Meta(description="Channel.")] = ""


class HistoryRequest(Struct, kw_only=True):
    """Read a channel's history."""

    channel: Annotated[str, Meta(description="Channel.")] = ""
    limit: Annotated[
        Int64 | None,
        Meta(description="Publications to return: absent or 0 = position only, -1 = all kept."),
    ] = None
    since: Annotated[
        StreamPosition | None, Meta(description="Return publications after this position.")
    ] = None
    reverse: Annotated[bool | None, Meta(description="Newest first.")] = None


class ChannelsRequest(Struct, kw_only=True):
    """List the channels with subscribers on this node."""

    pattern: Annotated[
        str | None, Meta(description="Glob (``*``, ``?``, ``[...]``) the names must match.")
    ] = None


class InfoRequest(Struct, kw_only=True):
    """Node information (no parameters)."""


class BatchRequest(Struct, kw_only=True):
    """Several commands in one request."""

    commands: Annotated[
        list[dict[str, Raw]],
        Meta(description='Commands, each an object with one key: the method ({"publish": {...}}).'),
    ] = []
    parallel: Annotated[
        bool | None, Meta(description="Run the commands concurrently (replies keep the order).")
    ] = None


# --------------------------------------------------------------------------- results


class Error(Struct):
    code: int
    message: str


class EmptyResult(Struct):
    pass


class PublishResult(Struct, omit_defaults=True):
    offset: Annotated[int, Meta(description="Offset in history (absent: no history).")] = 0
    epoch: Annotated[str, Meta(description="Epoch of the history stream.")] = ""


class BroadcastResponse(Struct, omit_defaults=True):
    result: PublishResult | None = None
    error: Error | None = None


class BroadcastResult(Struct):
    responses: list[BroadcastResponse]


class ChannelInfo(Struct):
    num_clients: int


class ChannelsResult(Struct):
    channels: dict[str, ChannelInfo]


class NodeInfo(Struct):
    uid: str
    name: str
    version: str
    num_clients: int
    num_users: int
    num_channels: int
    num_subs: int
    uptime: int


class InfoResult(Struct):
    nodes: list[NodeInfo]


_EMPTY = EmptyResult()


class _HttpProblem(Exception):
    """A transport-level failure of the whole request: an HTTP status, not a reply."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bad(message: str) -> CommandError:
    return CommandError(codes.ERROR_BAD_REQUEST, message)


_Handler = Callable[[Any], Awaitable[Any]]


class ServerApi:
    """The /api endpoint of one gateway."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.node: Node = gw.node
        self.metrics = gw.metrics
        self.uid = str(uuid.uuid4())
        self._key = gw.config.api_key.encode()
        self.methods: dict[str, tuple[msgspec.json.Decoder[Any], _Handler]] = {
            name: (msgspec.json.Decoder(req_type), handler)
            for name, req_type, handler in (
                ("publish", PublishRequest, self.publish),
                ("broadcast", BroadcastRequest, self.broadcast),
                ("subscribe", SubscribeRequest, self.subscribe),
                ("unsubscribe", UnsubscribeRequest, self.unsubscribe),
                ("disconnect", DisconnectRequest, self.disconnect),
                ("refresh", RefreshRequest, self.refresh),
                ("presence", ChannelRequest, self.presence),
                ("presence_stats", ChannelRequest, self.presence_stats),
                ("history", HistoryRequest, self.history),
                ("history_remove", ChannelRequest, self.history_remove),
                ("channels", ChannelsRequest, self.channels),
                ("info", InfoRequest, self.info),
            )
        }
        self._batch_decoder = msgspec.json.Decoder(BatchRequest)

    @property
    def enabled(self) -> bool:
        return bool(self._key)

    # -- HTTP ----------------------------------------------------------------------------

    def authorized(self, headers: Mapping[str, str]) -> bool:
        presented: list[str] = []
        x_key = headers.get("x-api-key")
        if x_key is not None:
            presented.append(x_key.strip())
        auth = headers.get("authorization")
        if auth is not None:
            scheme, _, cred = auth.strip().partition(" ")
            if scheme.lower() == "apikey":
                presented.append(cred.strip())
        ok = False
        for key in presented:
            # Every presented key is compared, so timing says nothing about which matched.
            ok |= hmac.compare_digest(key.encode(), self._key)
        return ok and self.enabled

    async def endpoint(self, request: Request) -> Response:
        """``POST /api/<method>``."""
        if not self.enabled:
            return _error_response(404, codes.ERROR_METHOD_NOT_FOUND.code, "not found")
        method = str(request.path_params.get("method", ""))
        t0 = time.perf_counter()
        if not self.authorized(request.headers):
            self.metrics.api_call(method, "401", 0.0)
            log.info(
                "server API call refused: missing or wrong API key",
                extra={"event": "api_unauthorized", "peer": _peer(request)},
            )
            return _error_response(401, codes.ERROR_UNAUTHORIZED.code, "unauthorized")
        if method != "batch" and method not in self.methods:
            self.metrics.api_call(method, "404", time.perf_counter() - t0)
            return _error_response(404, codes.ERROR_METHOD_NOT_FOUND.code, "unknown API method")
        try:
            body = await _read_body(request)
            if method == "batch":
                payload = await self._batch(body)
                outcome = "ok"
            else:
                payload, outcome = await self.call(method, body)
        except _HttpProblem as p:
            self.metrics.api_call(method, str(p.status), time.perf_counter() - t0)
            return _error_response(p.status, codes.ERROR_BAD_REQUEST.code, p.message)
        elapsed = time.perf_counter() - t0
        self.metrics.api_call(method, outcome, elapsed)
        log.debug(
            "server API call",
            extra={
                "event": "api_call",
                "method": method,
                "outcome": outcome,
                "duration_ms": round(elapsed * 1000, 3),
            },
        )
        return Response(payload, media_type=_JSON)

    async def call(self, method: str, body: bytes) -> tuple[bytes, str]:
        """Run one method on a raw JSON body: the encoded reply and its outcome label.

        Raises _HttpProblem when the body does not decode.
        """
        decoder, handler = self.methods[method]
        try:
            req = decoder.decode(body or b"{}")
        except msgspec.DecodeError as exc:
            raise _HttpProblem(400, f"bad request: {_decode_message(exc)}") from None
        try:
            result = await handler(req)
        except CommandError as e:
            return _encode({"error": Error(e.error.code, e.error.message)}), str(e.error.code)
        except Exception:
            log.exception("server API call failed", extra={"event": "api_error", "method": method})
            err = codes.ERROR_INTERNAL
            return _encode({"error": Error(err.code, err.message)}), str(err.code)
        return _encode({"result": result}), "ok"

    async def _batch(self, body: bytes) -> bytes:
        try:
            req: BatchRequest = self._batch_decoder.decode(body or b"{}")
        except msgspec.DecodeError as exc:
            raise _HttpProblem(400, f"bad request: {_decode_message(exc)}") from None
        if req.parallel:
            parts = await asyncio.gather(*(self._batch_one(c) for c in req.commands))
        else:
            parts = [await self._batch_one(c) for c in req.commands]
        return b'{"replies":[' + b",".join(parts) + b"]}"

    async def _batch_one(self, command: dict[str, Raw]) -> bytes:
        t0 = time.perf_counter()
        if len(command) != 1:
            err = codes.ERROR_BAD_REQUEST
            return _encode({"error": Error(err.code, "a command has exactly one method key")})
        ((method, raw),) = command.items()
        if method not in self.methods:
            err = codes.ERROR_METHOD_NOT_FOUND
            self.metrics.api_call(method, str(err.code), time.perf_counter() - t0)
            return _encode({"error": Error(err.code, err.message)})
        try:
            reply, outcome = await self.call(method, bytes(raw))
        except _HttpProblem as p:
            err = codes.ERROR_BAD_REQUEST
            self.metrics.api_call(method, str(err.code), time.perf_counter() - t0)
            return _encode({"error": Error(err.code, p.message)})
        self.metrics.api_call(method, outcome, time.perf_counter() - t0)
        if outcome != "ok":
            return reply  # {"error": ...}
        # {"result": R} -> {"<method>": R}
        return b'{"' + method.encode() + b'":' + reply[len(b'{"result":') : -1] + b"}"

    # -- helpers -------------------------------------------------------------------------

    def _options(self, channel: str) -> NamespaceConfig:
        if not channel:
            raise _bad("channel required")
        if not self.node.channels.valid(channel):
            raise _bad("invalid channel name")
        opts = self.node.channels.options(channel)
        if opts is None:
            raise CommandError(codes.ERROR_UNKNOWN_CHANNEL)
        return opts

    @staticmethod
    def _data(data: Raw | UnsetType, b64data: str | None) -> bytes:
        if data is not UNSET:
            return _one_line(bytes(data))
        if b64data:
            try:
                raw = base64.b64decode(b64data, validate=True)
                msgspec.json.decode(raw)
            except (binascii.Error, ValueError, msgspec.DecodeError):
                raise _bad("b64data must be base64 of a JSON value") from None
            return _one_line(raw)
        raise _bad("data required")

    async def _publish_one(
        self,
        channel: str,
        data: bytes,
        tags: dict[str, str] | None,
        skip_history: bool,
    ) -> PublishResult:
        opts = self._options(channel)
        pos = await self.node.publish(
            channel, data, tags=tags or None, opts=opts, skip_history=skip_history
        )
        return PublishResult(offset=pos.offset, epoch=pos.epoch)

    # -- methods -------------------------------------------------------------------------

    async def publish(self, req: PublishRequest) -> PublishResult:
        data = self._data(req.data, req.b64data)
        return await self._publish_one(req.channel, data, req.tags, bool(req.skip_history))

    async def broadcast(self, req: BroadcastRequest) -> BroadcastResult:
        if not req.channels:
            raise _bad("channels required")
        data = self._data(req.data, req.b64data)
        out: list[BroadcastResponse] = []
        for channel in req.channels:
            try:
                res = await self._publish_one(channel, data, req.tags, bool(req.skip_history))
            except CommandError as e:
                out.append(BroadcastResponse(error=Error(e.error.code, e.error.message)))
            else:
                out.append(BroadcastResponse(result=res))
        return BroadcastResult(out)

    async def subscribe(self, req: SubscribeRequest) -> EmptyResult:
        if not req.user:
            raise _bad("user required")
        self._options(req.channel)
        await self.node.subscribe_user(req.user, req.channel, req.client or "")
        return _EMPTY

    async def unsubscribe(self, req: UnsubscribeRequest) -> EmptyResult:
        if not req.user:
            raise _bad("user required")
        self._options(req.channel)
        self.node.unsubscribe_user(req.user, req.channel, req.client or "")
        return _EMPTY

    async def disconnect(self, req: DisconnectRequest) -> EmptyResult:
        if not req.user:
            raise _bad("user required")
        disconnect = codes.DISCONNECT_FORCE_NO_RECONNECT
        d = req.disconnect
        if d is not None and (d.code or d.reason):
            if not 3000 <= d.code <= 4999:
                raise _bad("disconnect code must be within 3000-4999")
            if len(d.reason.encode()) > 123:
                raise _bad("disconnect reason is longer than 123 bytes")
            disconnect = Disconnect(d.code, d.reason)
        keep = set(req.whitelist or ())
        if not keep:
            self.node.disconnect_user(req.user, disconnect, req.client or "")
            return _EMPTY
        for s in self.node.hub.user_sessions(req.user):
            if s.client in keep or (req.client and s.client != req.client):
                continue
            self.node.disconnect_user(req.user, disconnect, s.client)
        return _EMPTY

    async def refresh(self, req: RefreshRequest) -> EmptyResult:
        if not req.user:
            raise _bad("user required")
        for s in self.node.hub.user_sessions(req.user):
            if req.client and s.client != req.client:
                continue
            if req.expired:
                self.node.disconnect_user(req.user, codes.DISCONNECT_EXPIRED, s.client)
                continue
            expire_at = float(req.expire_at) if req.expire_at else None
            expires, ttl = self.node._set_expiry(s, expire_at)
            push = m.Push(refresh=m.RefreshPush(expires=expires, ttl=ttl))
            s.conn.send(m.encode(m.Reply(push=push)))
        return _EMPTY

    async def presence(self, req: ChannelRequest) -> m.PresenceResult:
        opts = self._options(req.channel)
        if not opts.presence:
            raise CommandError(codes.ERROR_NOT_AVAILABLE)
        entries = await self.node.engine.presence.get(req.channel)
        return m.PresenceResult(
            {
                k: m.ClientInfoMsg(
                    user=v.user,
                    client=v.client,
                    conn_info=Raw(v.conn_info) if v.conn_info else UNSET,
                    chan_info=Raw(v.chan_info) if v.chan_info else UNSET,
                )
                for k, v in entries.items()
            }
        )

    async def presence_stats(self, req: ChannelRequest) -> m.PresenceStatsResult:
        opts = self._options(req.channel)
        if not opts.presence:
            raise CommandError(codes.ERROR_NOT_AVAILABLE)
        st = await self.node.engine.presence.stats(req.channel)
        return m.PresenceStatsResult(st.num_clients, st.num_users)

    async def history(self, req: HistoryRequest) -> m.HistoryResult:
        opts = self._options(req.channel)
        if opts.history_size <= 0 or opts.history_ttl <= 0:
            raise CommandError(codes.ERROR_NOT_AVAILABLE)
        limit = req.limit or 0
        if limit < 0:
            limit = -1
        since = None
        if req.since is not None:
            since = m.StreamPositionMsg(offset=req.since.offset, epoch=req.since.epoch)
        return await self.node.history(req.channel, limit, since, bool(req.reverse))

    async def history_remove(self, req: ChannelRequest) -> EmptyResult:
        opts = self._options(req.channel)
        if opts.history_size <= 0 or opts.history_ttl <= 0:
            raise CommandError(codes.ERROR_NOT_AVAILABLE)
        await self.node.engine.history.remove(req.channel)
        return _EMPTY

    async def channels(self, req: ChannelsRequest) -> ChannelsResult:
        pattern = req.pattern
        return ChannelsResult(
            {
                name: ChannelInfo(len(subs))
                for name, subs in self.node.hub.channels.items()
                if not pattern or fnmatch.fnmatchcase(name, pattern)
            }
        )

    async def info(self, _req: InfoRequest) -> InfoResult:
        hub = self.node.hub
        return InfoResult(
            [
                NodeInfo(
                    uid=self.uid,
                    name=f"{socket.gethostname()}_{self.gw.ws_port}",
                    version=__version__,
                    num_clients=len(hub.clients),
                    num_users=len(hub.users),
                    num_channels=len(hub.channels),
                    num_subs=hub.num_subscriptions,
                    uptime=int(time.time() - self.node.started_at),
                )
            ]
        )


# --------------------------------------------------------------------------- helpers

_encoder = msgspec.json.Encoder()


def _encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


_NEWLINES_TO_SPACES = bytes.maketrans(b"\r\n", b"  ")


def _one_line(data: bytes) -> bytes:
    """JSON ``data`` without line breaks: frames to clients are newline-delimited. In valid
    JSON a raw CR or LF can only be whitespace between tokens, so a space replaces it."""
    if b"\n" in data or b"\r" in data:
        return data.translate(_NEWLINES_TO_SPACES)
    return data


def _decode_message(exc: msgspec.DecodeError) -> str:
    text = str(exc)
    if text.startswith(("JSON is malformed", "Input data was truncated")):
        return f"body is not valid JSON ({text})"
    if text.startswith("Expected `object`, got"):
        return "body must be a JSON object"
    return text


def _peer(request: Request) -> str:
    client = request.client
    return client.host if client is not None else ""


def _error_response(status: int, code: int, message: str) -> Response:
    return Response(_encode({"error": Error(code, message)}), status_code=status, media_type=_JSON)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _HttpProblem(413, f"body larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _HttpProblem(413, f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    return body if body.strip() else b"{}"


def routes(gw: Gateway) -> list[BaseRoute]:
    """The /api routes: the methods and the OpenAPI document (404 when the API is off)."""
    from wshub.api.openapi import openapi_document  # noqa: PLC0415 - built on first request

    api = ServerApi(gw)

    async def openapi(_request: Request) -> Response:
        if not api.enabled:
            return _error_response(404, codes.ERROR_METHOD_NOT_FOUND.code, "not found")
        return Response(openapi_document(), media_type=_JSON)

    return [
        Route("/api/openapi.json", openapi, methods=["GET"]),
        Route("/api/{method}", api.endpoint, methods=["POST"]),
    ]
