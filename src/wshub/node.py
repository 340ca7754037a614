"""The node: the one place that joins the hub, the engine (broker, history, presence), the
handlers and the transport. It implements the Centrifugo client protocol's commands for
connections on /connection/websocket, receives publications from the broker, and serves
the server API's operations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import orjson

from wshub import codes
from wshub.app import (
    Allow,
    App,
    ClientContext,
    ConnectContext,
    DisconnectContext,
    PublishContext,
    RefreshContext,
    RPCContext,
    SubscribeContext,
)
from wshub.brokers.base import ClientInfo, Engine, Publication, StreamPosition
from wshub.codes import ClientError, Disconnect
from wshub.config import Config, NamespaceConfig
from wshub.errors import CommandError, DisconnectError, ProtocolViolation
from wshub.hub import Hub
from wshub.hub.channels import Channels, allowed_users
from wshub.metrics import Metrics
from wshub.middleware.base import Request
from wshub.protocol import messages as m
from wshub.protocol.codec import (
    PING,
    decode_commands,
    encode_error,
    encode_join_push,
    encode_leave_push,
    encode_publication_push,
    publication_msg,
)
from wshub.protocol.session import ClientSession, HeldSink, Subscription, TokenBucket
from wshub.tokens import TokenExpired, TokenInvalid, TokenVerifier
from wshub.transport.connection import Connection
from wshub.workers import WorkerPool, outcome, start_task

log = logging.getLogger("wshub.node")

VERSION = "wshub 0.1.0"
_MAX_PENDING_FRAMES = 32
_encode = m.encode
_NO_RAW = msgspec.UNSET


def _raw(value: Any) -> msgspec.Raw | msgspec.UnsetType:
    return _NO_RAW if value is None else msgspec.Raw(orjson.dumps(value))


def _json_or_none(raw: msgspec.Raw | msgspec.UnsetType) -> Any:
    return None if raw is msgspec.UNSET else _client_json(bytes(raw))


def _client_json(data: bytes) -> Any:
    """Parse JSON a client sent. msgspec accepted it as JSON, but some valid JSON is more
    than orjson takes (``1e400``, nesting past 1024): that is a bad request (107), not an
    internal error with a traceback."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _Reply(codes.ERROR_BAD_REQUEST) from None


def _result_json(value: Any) -> bytes:
    """Encode a handler's result; msgspec takes what orjson refuses (nesting past 255,
    integers past 64 bits), so an echoed client value always goes back."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return msgspec.json.encode(value)


def _raw_bytes(raw: msgspec.Raw | msgspec.UnsetType, default: bytes = b"null") -> bytes:
    return default if raw is msgspec.UNSET else bytes(raw)


def _bytes_or_none(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value)


def _ttl(expire_at: float) -> int:
    """Whole seconds until ``expire_at``, at least 1: SDKs read ``ttl`` whenever ``expires``
    is set (JSON omits a zero ``ttl``; centrifuge-python then fails with a KeyError, and
    centrifuge-js refreshes at once), and the expiry grace covers the rounding."""
    return max(int(expire_at - time.time()), 1)


class _Reply(Exception):
    def __init__(self, error: ClientError) -> None:
        self.error = error


class Node:
    """Implements the hub route's transport Handler and the broker's event handler."""

    def __init__(self, config: Config, engine: Engine, app: App, metrics: Metrics) -> None:
        self.config = config
        self.engine = engine
        self.app = app
        self.metrics = metrics
        self.hub = Hub()
        self.channels = Channels(config)
        self.tokens = TokenVerifier(config.token)
        w = config.workers
        self.pool = WorkerPool(w.concurrency, w.queue_size, w.timeout)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ping_interval = int(config.websocket.ping_interval) or 25
        self._presence_channels: dict[str, int] = {}
        self.started_at = time.time()
        self.draining = False
        # Sessions that have not sent connect yet, oldest first (monotonic open time): one
        # sweeper timer closes the stale ones, instead of a timer per connection.
        self._pending: dict[ClientSession, float] = {}
        # channel -> (epoch, offset) of the newest publication this node has seen there, for
        # channels with history and local subscribers: a publication that skips ahead, or a
        # broker resync with the history ahead of it, means this node missed some.
        self._positions: dict[str, tuple[str, int]] = {}
        # channel -> session -> (offset, push) delivered while that session's subscribe was
        # being answered: sent after its reply, less what the reply already covered.
        self._syncing: dict[str, dict[ClientSession, list[tuple[int, bytes]]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.engine.broker.start(self)
        if self.config.namespaces and any(ns.presence for ns in self.config.namespaces):
            self._spawn(self._presence_refresher())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._pending.clear()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pool.close()
        await self.engine.broker.close()
        await self.engine.history.close()
        await self.engine.presence.close()

    def _fire(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start ``coro`` (an engine call nobody waits for) as an owned task, eagerly where
        possible: with the memory engine it is done before this returns."""
        t = start_task(coro)
        if t.done():
            self._task_done(t)
            return
        self._tasks.add(t)
        t.add_done_callback(self._task_done)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._task_done)

    def _task_done(self, t: asyncio.Task[Any]) -> None:
        self._tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            self.metrics.broker_errors.inc()
            log.error("background operation failed", exc_info=t.exception())

    async def _presence_refresher(self) -> None:
        ttl = self.config.client.presence_ttl
        while True:
            await asyncio.sleep(max(ttl / 3, 0.5))
            for s in list(self.hub.clients.values()):
                for sub in list(s.subs.values()):
                    if sub.presence and not s.closed:  # it may close during an add
                        await self.engine.presence.add(sub.channel, s.info(sub.chan_info), ttl=ttl)

    # -- transport Handler ---------------------------------------------------------------

    def make_handler(self, _request: Request) -> Node:
        return self

    def on_open(self, conn: Connection) -> None:
        now = time.monotonic()
        c = self.config.client
        s = ClientSession(conn=conn, real=conn, client=conn.id, state=conn.state)
        s.bucket = TokenBucket(c.command_rate, c.command_burst, now) if c.command_rate > 0 else None
        s.connected_at = time.time()
        conn.ctx = s
        if self.config.websocket.connect_timeout > 0:
            self._pending[s] = now
            if self._sweeper is None:
                self._arm_sweeper(now)

    def _arm_sweeper(self, now: float) -> None:
        """Fire when the oldest pending session goes stale; later ones that go stale within
        a tenth of the timeout (at most 0.5 s) are closed in the same pass."""
        timeout = self.config.websocket.connect_timeout
        oldest = next(iter(self._pending.values()))
        delay = max(oldest + timeout - now, 0.0) + min(timeout / 10, 0.5)
        self._sweeper = asyncio.get_running_loop().call_later(delay, self._sweep_stale)

    def _sweep_stale(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        cutoff = now - self.config.websocket.connect_timeout
        pending = self._pending
        while pending:
            s, opened = next(iter(pending.items()))
            if opened > cutoff:
                break
            del pending[s]
            if not s.connected and not s.closed:
                _close(s, codes.DISCONNECT_STALE)
        if pending:
            self._arm_sweeper(now)

    def send_ping(self, conn: Connection) -> None:
        s: ClientSession = conn.ctx
        if s.connected:
            conn.send(PING)
            if s.expires_at is not None and s.timer is None:
                self._arm_expiry(s)
            if s.subs:
                self._expire_subscriptions(s)

    def _expire_subscriptions(self, s: ClientSession) -> None:
        """End subscriptions whose token expired and was not refreshed (sub_refresh) within
        the grace period: the unsubscribe push 2501 makes the SDK resubscribe with a new
        token. Checked at heartbeat pace."""
        deadline = time.time() - self.config.client.expire_grace
        for sub in [x for x in s.subs.values() if x.expires_at is not None]:
            if sub.expires_at is not None and sub.expires_at < deadline:
                self._end_subscription(s, sub.channel, codes.UNSUBSCRIBE_EXPIRED)

    def on_close(self, conn: Connection, code: int, reason: str) -> None:
        s: ClientSession | None = conn.ctx
        if s is None or s.closed:
            return
        s.closed = True
        if s.timer is not None:
            s.timer.cancel()
            s.timer = None
        if not s.connected:
            self._pending.pop(s, None)
            return
        self.hub.remove_client(s)
        for sub in list(s.subs.values()):
            self._drop_subscription(s, sub)
        s.subs.clear()
        if self.app.disconnect is not None:
            ctx = DisconnectContext(_client_ctx(s), code, reason)
            self.pool.submit(
                lambda: _call(self.app.disconnect, ctx), self._hook_done("on_disconnect")
            )

    def _hook_done(self, hook: str) -> Callable[[Any, BaseException | None], None]:
        def done(_result: Any, exc: BaseException | None) -> None:
            if exc is not None and not isinstance(exc, asyncio.CancelledError):
                self.metrics.handler_failed(hook)
                log.error("%s handler failed", hook, exc_info=exc)

        return done

    def on_message(self, conn: Connection, data: bytes, text: bool) -> None:
        if data == PING:
            return  # a pong
        s: ClientSession = conn.ctx
        cmds = decode_commands(data)
        if s.busy:
            if s.pending is None:
                s.pending = deque()
            s.pending.append(cmds)
            if len(s.pending) >= _MAX_PENDING_FRAMES:
                conn.pause_reading()
            return
        if len(cmds) == 1 and self.pool.has_capacity:
            self._run_one(s, cmds[0])
        else:
            self._run_frame(s, cmds)

    def _run_one(self, s: ClientSession, cmd: m.Command) -> None:
        """The common case, one command: its task runs eagerly (Python 3.12+) and usually
        finishes right here; only one that has to wait (a slow handler, a remote engine)
        holds the connection's later frames back until it is done."""
        task = start_task(self._command(s, cmd))
        if task.done():
            reply, exc = outcome(task)
            if exc is None:
                if reply is not None and not s.closed:
                    s.conn.send(reply)
                if s.after_reply:
                    _run_after_reply(s)
                return
            self._finish(s, [cmd], [], None, exc)
            return
        s.busy = True

        def done(result: bytes | None, exc: BaseException | None) -> None:
            self._finish(s, [cmd], [result] if exc is None else [], None, exc)

        self.pool.track(task, done)

    def _run_frame(self, s: ClientSession, cmds: list[m.Command]) -> None:
        replies: list[bytes | None] = []  # one entry per command processed
        s.busy = True
        held = HeldSink(s.real) if len(cmds) > 1 else None
        if held is not None:
            s.conn = held

        def done(_result: Any, exc: BaseException | None) -> None:
            self._finish(s, cmds, replies, held, exc)

        if not self.pool.submit(lambda: self._process(s, cmds, replies), done):
            self.metrics.worker_rejections.inc()
            for cmd in cmds:
                if cmd.id:
                    replies.append(encode_error(cmd.id, codes.ERROR_TOO_MANY_REQUESTS))
            done(None, None)

    def _finish(
        self,
        s: ClientSession,
        cmds: list[m.Command],
        replies: list[bytes | None],
        held: HeldSink | None,
        exc: BaseException | None,
    ) -> None:
        """Send a frame's replies (one frame), then what they held back, then go on with
        the next queued frame."""
        if exc is not None:
            if isinstance(exc, (DisconnectError, ProtocolViolation)):
                _close(s, exc.disconnect)
            else:
                if not isinstance(exc, (TimeoutError, asyncio.CancelledError)):
                    log.error("command processing failed", exc_info=exc)
                for cmd in cmds[len(replies) :]:
                    if cmd.id:
                        replies.append(encode_error(cmd.id, codes.ERROR_INTERNAL))
        if held is not None:
            s.conn = s.real
        out = [r for r in replies if r is not None]
        if out and not s.closed:
            s.conn.send(out[0] if len(out) == 1 else b"\n".join(out))
        if held is not None:
            held.release(s.conn)
        if s.after_reply:
            _run_after_reply(s)
        s.busy = False
        if s.pending and not s.closed:
            nxt = s.pending.popleft()
            if len(s.pending) < _MAX_PENDING_FRAMES // 2:
                _resume_reading(s)
            self._run_frame(s, nxt)

    async def _process(
        self, s: ClientSession, cmds: list[m.Command], replies: list[bytes | None]
    ) -> None:
        for cmd in cmds:
            if s.closed:
                return
            replies.append(await self._command(s, cmd))

    async def _command(self, s: ClientSession, cmd: m.Command) -> bytes | None:
        now = time.monotonic()
        s.commands += 1
        s.last_command_at = now
        bucket = s.bucket
        if bucket is not None and not bucket.take(now):
            s.limited_in_a_row += 1
            if s.limited_in_a_row >= self.config.client.command_rate_disconnect_after:
                raise DisconnectError(codes.DISCONNECT_TOO_MANY_REQUESTS)
            self.metrics.command_error(111)
            return encode_error(cmd.id, codes.ERROR_TOO_MANY_REQUESTS) if cmd.id else None
        s.limited_in_a_row = 0
        try:
            if not s.connected:
                if cmd.connect is None:
                    raise ProtocolViolation(codes.DISCONNECT_BAD_REQUEST, "command before connect")
                return await self._connect(s, cmd.id, cmd.connect)
            if cmd.rpc is not None:
                return await self._rpc(s, cmd.id, cmd.rpc)
            if cmd.publish is not None:
                return await self._publish(s, cmd.id, cmd.publish)
            if cmd.subscribe is not None:
                return await self._subscribe(s, cmd.id, cmd.subscribe)
            if cmd.unsubscribe is not None:
                return await self._unsubscribe(s, cmd.id, cmd.unsubscribe)
            if cmd.presence is not None:
                return await self._presence(s, cmd.id, cmd.presence)
            if cmd.presence_stats is not None:
                return await self._presence_stats(s, cmd.id, cmd.presence_stats)
            if cmd.history is not None:
                return await self._history(s, cmd.id, cmd.history)
            if cmd.send is not None:
                await self._send(s, cmd.send)
                return None
            if cmd.refresh is not None:
                return await self._refresh(s, cmd.id, cmd.refresh)
            if cmd.sub_refresh is not None:
                return await self._sub_refresh(s, cmd.id, cmd.sub_refresh)
            if cmd.ping is not None:
                return _encode(m.Reply(id=cmd.id, ping=m.EMPTY)) if cmd.id else None
            if cmd.connect is not None:
                raise ProtocolViolation(
                    codes.DISCONNECT_BAD_REQUEST, "connect on a connected client"
                )
            if cmd.id == 0:
                return None  # an empty object: the pong to our ping
            raise ProtocolViolation(codes.DISCONNECT_BAD_REQUEST, "unknown command")
        except _Reply as r:
            self.metrics.command_error(r.error.code)
            return encode_error(cmd.id, r.error) if cmd.id else None
        except CommandError as e:
            self.metrics.command_error(e.error.code)
            return encode_error(cmd.id, e.error) if cmd.id else None
        except (DisconnectError, ProtocolViolation):
            raise
        except Exception:
            log.exception("command failed", extra={"client": s.client})
            self.metrics.command_error(100)
            return encode_error(cmd.id, codes.ERROR_INTERNAL) if cmd.id else None

    async def _hook(self, hook: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a user hook; its unexpected exceptions become error 100 for this command."""
        t0 = time.perf_counter()
        try:
            return await _call(fn, *args)
        except (CommandError, DisconnectError):
            raise
        except Exception:
            self.metrics.handler_failed(hook)
            log.exception("%s handler raised", hook)
            raise _Reply(codes.ERROR_INTERNAL) from None
        finally:
            if hook == "rpc":
                self.metrics.handler_duration(str(args[0].method), time.perf_counter() - t0)

    # -- connect and refresh ---------------------------------------------------------------

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            return self.tokens.verify(token)
        except TokenExpired:
            raise _Reply(codes.ERROR_TOKEN_EXPIRED) from None
        except TokenInvalid:
            raise DisconnectError(codes.DISCONNECT_INVALID_TOKEN) from None

    async def _connect(self, s: ClientSession, cmd_id: int, req: m.ConnectRequest) -> bytes:
        cfg = self.config.client
        claims: dict[str, Any] | None = None
        user = ""
        info: Any = None
        channels: list[str] = []
        expire_at: float | None = None
        if req.token:
            claims = self._verify(req.token)
            user = str(claims.get("sub", ""))
            info = claims.get("info")
            channels = [str(c) for c in claims.get("channels", []) or []]
            if "exp" in claims:
                expire_at = float(claims["exp"])
        elif "user" in s.state:
            user = str(s.state["user"] or "")
        elif not (cfg.allow_anonymous or cfg.insecure or self.app.connecting is not None):
            raise _Reply(codes.ERROR_UNAUTHORIZED)
        reply_data: Any = None
        if self.app.connecting is not None:
            conn: Connection = s.real
            ctx = ConnectContext(
                client=s.client,
                user=user,
                token_claims=claims,
                data=_json_or_none(req.data),
                name=req.name,
                version=req.version,
                client_ip=conn.request.client_ip,
                headers=dict(req.headers),
                state=s.state,
                info=info,
                channels=channels,
                expire_at=expire_at,
            )
            result = await self._hook("on_connecting", self.app.connecting, ctx)
            if result is False:
                raise _Reply(codes.ERROR_PERMISSION_DENIED)
            user, info, channels, reply_data, expire_at = (
                ctx.user,
                ctx.info,
                ctx.channels,
                ctx.reply_data,
                ctx.expire_at,
            )
            anonymous_ok = cfg.allow_anonymous or cfg.insecure
            if not user and not req.token and not anonymous_ok and result is None:
                raise _Reply(codes.ERROR_UNAUTHORIZED)
        if s.closed:
            # The client left while on_connecting ran (on_close has been and gone):
            # register nothing, or the session would stay in the hub for good.
            raise DisconnectError(codes.DISCONNECT_CONNECTION_CLOSED)
        s.user = user
        s.state["user"] = user  # the access log names the user at close
        s.conn_info = _bytes_or_none(info)
        s.info_cache = None
        s.app_ctx = None
        s.name = req.name
        s.version = req.version
        s.connected = True
        self._pending.pop(s, None)
        self.hub.add_client(s)
        result_subs: dict[str, m.SubscribeResult] = {}
        for ch in channels:
            res = await self._server_subscribe(s, ch, req.subs.get(ch))
            if res is not None:
                result_subs[ch] = res
        expires, ttl = self._set_expiry(s, expire_at)
        return _encode(
            m.Reply(
                id=cmd_id,
                connect=m.ConnectResult(
                    client=s.client,
                    version=VERSION,
                    expires=expires,
                    ttl=ttl,
                    data=_raw(reply_data),
                    subs=result_subs or None,
                    ping=self._ping_interval,
                    pong=True,
                ),
            )
        )

    def _set_expiry(self, s: ClientSession, expire_at: float | None) -> tuple[bool, int]:
        if s.timer is not None:
            s.timer.cancel()
            s.timer = None
        s.expires_at = expire_at
        if expire_at is None:
            return False, 0
        # From the exact expiry: ``ttl`` is rounded, and a timer that fired before the
        # expiry would leave the connection open for good.
        self._arm_expiry(s)
        return True, _ttl(expire_at)

    def _arm_expiry(self, s: ClientSession) -> None:
        """Start the expiry timer once expiry is near. Tokens usually live for hours: until
        then the heartbeat (send_ping) looks, so an idle connection holds no timer."""
        assert s.expires_at is not None
        delay = max(s.expires_at - time.time(), 0.0) + self.config.client.expire_grace
        if (
            delay <= 2 * self.config.websocket.ping_interval
            or self.config.websocket.ping_interval <= 0
        ):
            s.timer = asyncio.get_running_loop().call_later(delay, self._expired, s)

    def _expired(self, s: ClientSession) -> None:
        s.timer = None
        if s.closed or s.expires_at is None:
            return
        if s.expires_at <= time.time():
            _close(s, codes.DISCONNECT_EXPIRED)

    async def _refresh(self, s: ClientSession, cmd_id: int, req: m.RefreshRequest) -> bytes:
        claims: dict[str, Any] | None = None
        expire_at: float | None = None
        if req.token:
            claims = self._verify(req.token)
            if str(claims.get("sub", "")) != s.user:
                raise DisconnectError(codes.DISCONNECT_INVALID_TOKEN)
            expire_at = float(claims["exp"]) if "exp" in claims else None
        elif self.app.refresh is None:
            raise _Reply(codes.ERROR_BAD_REQUEST)
        if self.app.refresh is not None:
            ctx = RefreshContext(_client_ctx(s), claims, expire_at)
            await self._hook("on_refresh", self.app.refresh, ctx)
            expire_at = ctx.expire_at
        expires, ttl = self._set_expiry(s, expire_at)
        return _encode(
            m.Reply(
                id=cmd_id,
                refresh=m.RefreshResult(client=s.client, version=VERSION, expires=expires, ttl=ttl),
            )
        )

    # -- channels --------------------------------------------------------------------------

    def _options(self, channel: str) -> NamespaceConfig:
        if not self.channels.valid(channel):
            raise _Reply(codes.ERROR_BAD_REQUEST.with_message("invalid channel name"))
        opts = self.channels.options(channel)
        if opts is None:
            raise _Reply(codes.ERROR_UNKNOWN_CHANNEL)
        return opts

    async def _subscribe(self, s: ClientSession, cmd_id: int, req: m.SubscribeRequest) -> bytes:
        channel = req.channel
        opts = self._options(channel)
        if channel in s.subs:
            raise _Reply(codes.ERROR_ALREADY_SUBSCRIBED)
        if len(s.subs) >= self.config.client.channel_limit:
            raise _Reply(codes.ERROR_LIMIT_EXCEEDED)
        chan_info: Any = None
        reply_data: Any = None
        expire_at: float | None = None
        allowed = self.config.client.insecure
        claims: dict[str, Any] | None = None
        if req.token:
            claims = self._verify_sub_token(s, channel, req.token)
            chan_info = claims.get("info")
            expire_at = float(claims["exp"]) if "exp" in claims else None
            allowed = True
        if not allowed:
            users = allowed_users(channel)
            if users is not None and opts.allow_user_limited_channels:
                if s.user and s.user in users:
                    allowed = True
                elif self.app.subscribe is None:
                    raise _Reply(codes.ERROR_PERMISSION_DENIED)
            elif opts.allow_subscribe_for_client and (s.user or opts.allow_subscribe_for_anonymous):
                allowed = True
        if self.app.subscribe is not None:
            ctx = SubscribeContext(_client_ctx(s), channel, _json_or_none(req.data), claims)
            res = await self._hook("on_subscribe", self.app.subscribe, ctx)
            if isinstance(res, Allow) or res is True:
                allowed = True
            elif res is False:
                allowed = False
            if isinstance(res, Allow):
                chan_info = res.info if res.info is not None else ctx.chan_info
                reply_data = res.data if res.data is not None else ctx.reply_data
            else:
                chan_info = ctx.chan_info if ctx.chan_info is not None else chan_info
                reply_data = ctx.reply_data
        if not allowed:
            raise _Reply(codes.ERROR_PERMISSION_DENIED)
        sub = Subscription(
            channel=channel,
            namespace=opts.name,
            join_leave=opts.join_leave and (opts.force_push_join_leave or req.join_leave),
            presence=opts.presence,
            chan_info=_bytes_or_none(chan_info),
            expires_at=expire_at,
        )
        result = await self._attach(
            s,
            sub,
            opts,
            recover=req.recover,
            offset=req.offset,
            epoch=req.epoch,
            recoverable=req.recoverable,
        )
        if channel not in s.subs:  # closed meanwhile
            raise _Reply(codes.ERROR_INTERNAL)
        if expire_at is not None:
            result.expires = True
            result.ttl = _ttl(expire_at)
        result.data = _raw(reply_data)
        return _encode(m.Reply(id=cmd_id, subscribe=result))

    def _verify_sub_token(self, s: ClientSession, channel: str, token: str) -> dict[str, Any]:
        claims = self._verify(token)
        if str(claims.get("channel", "")) != channel or str(claims.get("sub", "")) != s.user:
            raise _Reply(codes.ERROR_PERMISSION_DENIED)
        return claims

    async def _attach(
        self,
        s: ClientSession,
        sub: Subscription,
        opts: NamespaceConfig,
        *,
        recover: bool = False,
        offset: int = 0,
        epoch: str = "",
        recoverable: bool = False,
        after: list[Callable[[], None]] | None = None,
    ) -> m.SubscribeResult:
        """Subscribe ``s``: hub, broker, presence, join, and history recovery.

        Recovery is opt-in per subscription (the SDK's ``recoverable`` option, or
        ``recover`` on a resubscribe) unless the namespace sets ``force_recovery``.
        What must follow the client's confirmation (the join, publications held meanwhile)
        runs after the command's reply, or, with ``after``, when the caller runs that list
        (after its subscribe push).
        """
        defer = s.defer if after is None else after.append
        if s.closed:
            # The client left while a handler awaited (on_subscribe, on_connecting): its
            # on_close has already run, so nothing may be registered for it any more.
            raise DisconnectError(codes.DISCONNECT_CONNECTION_CLOSED)
        channel = sub.channel
        result = m.SubscribeResult()
        has_history = opts.history_size > 0 and opts.history_ttl > 0
        recovering = recover and has_history
        if has_history:
            sub.recoverable = recover or recoverable or opts.force_recovery
            sub.positioned = True
        # Subscribe in the hub before reading history: nothing published from here on is
        # missed, and with the memory engine nothing runs in between at all.
        # Publications that reach the hub before the reply is out are held for this
        # session and sent after it (the SDKs ignore pushes for a subscription they have
        # not seen confirmed), less those the reply's position or recovery covers.
        s.subs[channel] = sub
        self._syncing.setdefault(channel, {})[s] = []
        first = self.hub.add_subscriber(channel, s)
        self.metrics.subscriptions.set(self.hub.num_subscriptions)
        try:
            await self._attach_engine(
                s, sub, result, first=first, recovering=recovering, offset=offset, epoch=epoch
            )
        except BaseException:
            # An engine failure (Redis down, a corrupt key) fails the subscribe: the client
            # must not stay half-subscribed (receiving, yet refused a retry as "already
            # subscribed"). No join went out yet, so no leave either.
            if s.subs.get(channel) is sub:
                del s.subs[channel]
                self._drop_subscription(s, sub, leave=False)
            raise
        covered = result.offset if sub.positioned else 0
        defer(lambda: self._release_held(s, sub, covered))
        if opts.join_leave:
            info = s.info(sub.chan_info)
            defer(lambda: self._fire(self.engine.broker.publish_join(channel, info)))
        return result

    async def _attach_engine(
        self,
        s: ClientSession,
        sub: Subscription,
        result: m.SubscribeResult,
        *,
        first: bool,
        recovering: bool,
        offset: int,
        epoch: str,
    ) -> None:
        """The engine side of :meth:`_attach`: broker, history (recovery), presence."""
        channel = sub.channel
        if first:
            self.metrics.channels.set(len(self.hub.channels))
            await self.engine.broker.subscribe(channel)
        if sub.positioned:
            if recovering:
                res = await self.engine.history.read(
                    channel, since=StreamPosition(offset, epoch), limit=-1
                )
                top = res.position
                pubs = res.publications
                if epoch == top.epoch and offset == top.offset:
                    result.recovered = True
                elif (
                    epoch == top.epoch
                    and offset < top.offset
                    and pubs
                    and pubs[0].offset == offset + 1
                ):
                    result.recovered = True
                    result.publications = [publication_msg(p) for p in pubs]
                else:
                    result.recovered = False
                result.was_recovering = True
            else:
                top = await self.engine.history.position(channel)
            if channel in self.hub.channels:
                self._positions.setdefault(channel, (top.epoch, top.offset))
            result.recoverable = sub.recoverable
            result.positioned = True
            result.epoch = top.epoch
            result.offset = top.offset
        if sub.presence:
            await self.engine.presence.add(
                channel, s.info(sub.chan_info), ttl=self.config.client.presence_ttl
            )
            if s.closed:  # closed during the add: on_close's remove may have run first
                self._fire(self.engine.presence.remove(channel, s.client))

    async def _server_subscribe(
        self,
        s: ClientSession,
        channel: str,
        req: m.SubscribeRequest | None = None,
        after: list[Callable[[], None]] | None = None,
    ) -> m.SubscribeResult | None:
        """Subscribe ``s`` to ``channel`` on the server's initiative; ``req`` is what the
        connect command's ``subs`` asks for the channel (recovery on reconnect)."""
        opts = self.channels.options(channel)
        if opts is None or not self.channels.valid(channel) or channel in s.subs or s.closed:
            return None
        sub = Subscription(
            channel=channel,
            namespace=opts.name,
            presence=opts.presence,
            join_leave=opts.join_leave,
            server_side=True,
        )
        if req is None:
            # A server-side subscription has no client option to opt in: with history on
            # it is always recoverable.
            return await self._attach(s, sub, opts, recoverable=True, after=after)
        return await self._attach(
            s,
            sub,
            opts,
            recover=req.recover,
            offset=req.offset,
            epoch=req.epoch,
            recoverable=True,
            after=after,
        )

    def _end_sync(self, channel: str, s: ClientSession) -> list[tuple[int, bytes]]:
        syncing = self._syncing.get(channel)
        if syncing is None:
            return []
        held = syncing.pop(s, [])
        if not syncing:
            del self._syncing[channel]
        return held

    def _release_held(self, s: ClientSession, sub: Subscription, covered: int) -> None:
        """After the subscribe reply: what arrived meanwhile, past the reply's position."""
        held = self._end_sync(sub.channel, s)
        if s.closed or s.subs.get(sub.channel) is not sub:
            return
        for offset, push in held:
            if offset == 0 or offset > covered:
                s.conn.send(push)

    def _end_subscription(self, s: ClientSession, channel: str, why: codes.Unsubscribe) -> bool:
        """End ``s``'s subscription to ``channel`` on the server's initiative and tell the
        client (an unsubscribe push; codes from 2500 make the SDK resubscribe)."""
        sub = s.subs.pop(channel, None)
        if sub is None:
            return False
        self._drop_subscription(s, sub)
        push = m.Push(channel=channel, unsubscribe=m.UnsubscribePush(why.code, why.reason))
        s.conn.send(_encode(m.Reply(push=push)))
        return True

    def _drop_subscription(
        self, s: ClientSession, sub: Subscription, *, leave: bool = True
    ) -> None:
        channel = sub.channel
        self._end_sync(channel, s)  # a subscribe still being answered holds nothing more
        if self.hub.remove_subscriber(channel, s):
            self._positions.pop(channel, None)
            self._fire(self.engine.broker.unsubscribe(channel))
            self.metrics.channels.set(len(self.hub.channels))
        self.metrics.subscriptions.set(self.hub.num_subscriptions)
        if sub.presence:
            self._fire(self.engine.presence.remove(channel, s.client))
        opts = self.channels.options(channel)
        if leave and opts is not None and opts.join_leave:
            self._fire(self.engine.broker.publish_leave(channel, s.info(sub.chan_info)))

    async def _unsubscribe(self, s: ClientSession, cmd_id: int, req: m.ChannelRequest) -> bytes:
        sub = s.subs.pop(req.channel, None)
        if sub is not None:
            self._drop_subscription(s, sub)
        return _encode(m.Reply(id=cmd_id, unsubscribe=m.EMPTY))

    async def _sub_refresh(self, s: ClientSession, cmd_id: int, req: m.SubRefreshRequest) -> bytes:
        sub = s.subs.get(req.channel)
        if sub is None:
            raise _Reply(codes.ERROR_PERMISSION_DENIED)
        claims = self._verify_sub_token(s, req.channel, req.token)
        expire_at = float(claims["exp"]) if "exp" in claims else None
        sub.expires_at = expire_at
        ttl = _ttl(expire_at) if expire_at is not None else 0
        return _encode(
            m.Reply(
                id=cmd_id, sub_refresh=m.SubRefreshResult(expires=expire_at is not None, ttl=ttl)
            )
        )

    # -- publish, presence, history ------------------------------------------------------------

    async def _publish(self, s: ClientSession, cmd_id: int, req: m.PublishRequest) -> bytes:
        channel = req.channel
        opts = self._options(channel)
        allowed = self.config.client.insecure or (
            opts.allow_publish_for_client and (s.user or opts.allow_publish_for_anonymous)
        )
        if not allowed and opts.allow_publish_for_subscriber and channel in s.subs:
            allowed = True
        data = _raw_bytes(req.data)
        if self.app.publish is not None:
            ctx = PublishContext(_client_ctx(s), channel, _client_json(data))
            res = await self._hook("on_publish", self.app.publish, ctx)
            if isinstance(res, Allow) or res is True:
                allowed = True
                if isinstance(res, Allow) and res.data is not None:
                    data = orjson.dumps(res.data)
            elif res is False:
                allowed = False
        if not allowed:
            raise _Reply(codes.ERROR_PERMISSION_DENIED)
        sub = s.subs.get(channel)
        # A publisher subscribed to its own channel gets the reply first, then the push
        # (as with a multi-command frame, where s.conn is already held).
        held = HeldSink(s.real) if sub is not None and s.conn is s.real else None
        if held is not None:
            s.conn = held
        try:
            info = None
            if not opts.client_publication_exclude_client_info:
                info = s.info(sub.chan_info if sub is not None else None)
            await self.publish(channel, data, info=info, opts=opts)
        finally:
            if held is not None:
                s.conn = s.real
                if held.frames:
                    s.defer(lambda: held.release(s.conn))
        return _encode(m.Reply(id=cmd_id, publish=m.EMPTY))

    async def publish(
        self,
        channel: str,
        data: bytes,
        *,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        opts: NamespaceConfig | None = None,
        skip_history: bool = False,
    ) -> StreamPosition:
        """Publish raw JSON ``data`` into ``channel`` (client publish and server API)."""
        if opts is None:
            opts = self.channels.options(channel)
            if opts is None:
                raise CommandError(codes.ERROR_UNKNOWN_CHANNEL)
        pub = Publication(data=data, info=info, tags=tags, time_ms=int(time.time() * 1000))
        position = StreamPosition(0, "")
        if opts.history_size > 0 and opts.history_ttl > 0 and not skip_history:
            position = await self.engine.history.append(
                channel, pub, size=opts.history_size, ttl=opts.history_ttl
            )
        await self.engine.broker.publish(channel, pub, position.epoch)
        return position

    async def _check_access(
        self, s: ClientSession, channel: str, for_subscriber: bool, for_client: bool
    ) -> None:
        if self.config.client.insecure:
            return
        if for_client or (for_subscriber and channel in s.subs):
            return
        raise _Reply(codes.ERROR_PERMISSION_DENIED)

    async def _presence(self, s: ClientSession, cmd_id: int, req: m.ChannelRequest) -> bytes:
        opts = self._options(req.channel)
        if not opts.presence:
            raise _Reply(codes.ERROR_NOT_AVAILABLE)
        await self._check_access(
            s, req.channel, opts.allow_presence_for_subscriber, opts.allow_presence_for_client
        )
        entries = await self.engine.presence.get(req.channel)
        return _encode(
            m.Reply(
                id=cmd_id,
                presence=m.PresenceResult({k: _info_msg(v) for k, v in entries.items()}),
            )
        )

    async def _presence_stats(self, s: ClientSession, cmd_id: int, req: m.ChannelRequest) -> bytes:
        opts = self._options(req.channel)
        if not opts.presence:
            raise _Reply(codes.ERROR_NOT_AVAILABLE)
        await self._check_access(
            s, req.channel, opts.allow_presence_for_subscriber, opts.allow_presence_for_client
        )
        st = await self.engine.presence.stats(req.channel)
        return _encode(
            m.Reply(
                id=cmd_id,
                presence_stats=m.PresenceStatsResult(st.num_clients, st.num_users),
            )
        )

    async def _history(self, s: ClientSession, cmd_id: int, req: m.HistoryRequest) -> bytes:
        opts = self._options(req.channel)
        if opts.history_size <= 0 or opts.history_ttl <= 0:
            raise _Reply(codes.ERROR_NOT_AVAILABLE)
        await self._check_access(
            s, req.channel, opts.allow_history_for_subscriber, opts.allow_history_for_client
        )
        result = await self.history(req.channel, req.limit, req.since, req.reverse)
        return _encode(m.Reply(id=cmd_id, history=result))

    async def history(
        self, channel: str, limit: int, since: m.StreamPositionMsg | None, reverse: bool
    ) -> m.HistoryResult:
        sp = StreamPosition(since.offset, since.epoch) if since is not None else None
        if sp is not None:
            top = await self.engine.history.position(channel)
            if sp.epoch and sp.epoch != top.epoch:
                raise CommandError(codes.ERROR_UNRECOVERABLE_POSITION)
        res = await self.engine.history.read(channel, since=sp, limit=limit, reverse=reverse)
        return m.HistoryResult(
            publications=[publication_msg(p) for p in res.publications] or None,
            epoch=res.position.epoch,
            offset=res.position.offset,
        )

    # -- rpc and send ----------------------------------------------------------------------

    async def _rpc(self, s: ClientSession, cmd_id: int, req: m.RPCRequest) -> bytes:
        fn = self.app.rpc_methods.get(req.method)
        if fn is None:
            raise _Reply(codes.ERROR_METHOD_NOT_FOUND)
        data = _json_or_none(req.data)
        result = await self._hook("rpc", fn, RPCContext(_client_ctx(s), req.method), data)
        if result is None:
            return _encode(m.Reply(id=cmd_id, rpc=m.RPCResult()))
        return b'{"id":%d,"rpc":{"data":%s}}' % (cmd_id, _result_json(result))

    async def _send(self, s: ClientSession, req: m.SendRequest) -> None:
        if self.app.message is not None:
            await self._hook(
                "on_message", self.app.message, _client_ctx(s), _json_or_none(req.data)
            )

    # -- broker events -------------------------------------------------------------------------

    def handle_publication(self, channel: str, pub: Publication, epoch: str) -> None:
        subs = self.hub.channels.get(channel)
        if not subs:
            return
        if pub.offset and self._advance(channel, epoch, pub.offset, delivered=True):
            self._missed(channel)
        frame = encode_publication_push(channel, pub)
        syncing = self._syncing.get(channel)
        if syncing:
            for held in syncing.values():
                held.append((pub.offset, frame))
        skipped = self.hub.skipped
        sent = self.hub.broadcast(channel, frame, syncing or ())
        if self.hub.skipped != skipped:
            self.metrics.skipped_sends.inc(self.hub.skipped - skipped)
        latency = time.time() - pub.time_ms / 1000 if pub.time_ms else 0.0
        self.metrics.publication_delivered(sent, max(latency, 0.0))

    def handle_resync(self) -> None:
        """The broker's subscriptions came back after a loss: for each channel with history,
        compare its stream top with the newest publication this node saw there."""
        self.metrics.broker_resynced()
        log.warning("broker resubscribed after a connection loss; checking channel positions")
        self._fire(self._check_positions(list(self._positions)))

    async def _check_positions(self, channels: list[str]) -> None:
        # One channel at a time: thousands of channels must not take thousands of engine
        # connections at once. A channel whose position cannot be read is treated as
        # missed (its subscribers resubscribe and recover), never as fine.
        behind = told = 0
        for channel in channels:
            if channel not in self._positions:
                continue  # its last local subscriber left meanwhile
            try:
                top = await self.engine.history.position(channel)
                if channel not in self._positions:
                    continue  # its last local subscriber left during the read
                lost = self._advance(channel, top.epoch, top.offset, delivered=False)
            except Exception:
                log.exception("cannot read the position of %r after a resync", channel)
                lost = True
            if lost:
                told += self._missed(channel, quiet=True)
                behind += 1
        if behind:
            log.warning(
                "after the resync %d of %d channel(s) had lost publications; "
                "%d subscriber(s) told to resubscribe",
                behind,
                len(channels),
                told,
            )

    def _advance(self, channel: str, epoch: str, offset: int, *, delivered: bool) -> bool:
        """Record ``(epoch, offset)`` as the newest position this node knows in ``channel``
        (a publication it is delivering, or the stream top after a resync); True when
        publications before it never reached the node: another epoch, or a jump past the
        last position seen (past it plus the one being delivered)."""
        last = self._positions.get(channel)
        if last is None:
            self._positions[channel] = (epoch, offset)
            return False
        if last[0] != epoch or offset > last[1]:
            self._positions[channel] = (epoch, offset)
        return last[0] != epoch or offset - delivered > last[1]

    def _missed(self, channel: str, *, quiet: bool = False) -> int:
        """This node lost publications of ``channel``: its positioned subscribers get the
        insufficient-state unsubscribe (2500), and their SDKs resubscribe and recover what
        they missed from history."""
        n = 0
        for s in list(self.hub.subscribers(channel)):
            sub = s.subs.get(channel)
            if sub is not None and sub.positioned:
                n += self._end_subscription(s, channel, codes.UNSUBSCRIBE_INSUFFICIENT)
        if n and not quiet:
            log.warning("publications lost in %r; %d subscriber(s) told to resubscribe", channel, n)
        return n

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self._push_join_leave(channel, encode_join_push(channel, info))

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        self._push_join_leave(channel, encode_leave_push(channel, info))

    def _push_join_leave(self, channel: str, frame: bytes) -> None:
        for s in self.hub.subscribers(channel):
            sub = s.subs.get(channel)
            if sub is not None and sub.join_leave and not s.conn.send(frame):
                self._skipped()

    # -- server-side operations (server API, admin) ----------------------------------------

    def disconnect_user(self, user: str, disconnect: Disconnect, client: str = "") -> int:
        n = 0
        for s in self.hub.user_sessions(user):
            if client and s.client != client:
                continue
            _close(s, disconnect)
            n += 1
        return n

    async def subscribe_user(self, user: str, channel: str, client: str = "") -> int:
        n = 0
        for s in self.hub.user_sessions(user):
            if client and s.client != client:
                continue
            after: list[Callable[[], None]] = []
            res = await self._server_subscribe(s, channel, after=after)
            if res is None:
                continue
            push = m.SubscribePush(
                recoverable=res.recoverable,
                epoch=res.epoch,
                offset=res.offset,
                positioned=res.positioned,
            )
            s.conn.send(_encode(m.Reply(push=m.Push(channel=channel, subscribe=push))))
            for action in after:
                action()
            n += 1
        return n

    def unsubscribe_user(self, user: str, channel: str, client: str = "") -> int:
        n = 0
        for s in self.hub.user_sessions(user):
            if client and s.client != client:
                continue
            if self._end_subscription(s, channel, codes.UNSUBSCRIBE_SERVER):
                n += 1
        return n

    def send_to_user(self, user: str, data: bytes) -> int:
        frame = _encode(m.Reply(push=m.Push(message=m.MessagePush(msgspec.Raw(data)))))
        n = 0
        for s in self.hub.user_sessions(user):
            if s.conn.send(frame):
                n += 1
            else:
                self._skipped()
        return n

    def _skipped(self) -> None:
        """Count one delivery skipped because the connection is closing (fan-out through
        ``hub.broadcast`` counts its own)."""
        self.hub.skipped += 1
        self.metrics.skipped_sends.inc()

    def shutdown_disconnect(self) -> None:
        self.draining = True


def _client_ctx(s: ClientSession) -> ClientContext:
    ctx: ClientContext | None = s.app_ctx
    if ctx is None:
        info = orjson.loads(s.conn_info) if s.conn_info else None
        ctx = s.app_ctx = ClientContext(s.client, s.user, info, s.state)
    return ctx


def _info_msg(info: ClientInfo) -> m.ClientInfoMsg:
    return m.ClientInfoMsg(
        user=info.user,
        client=info.client,
        conn_info=msgspec.Raw(info.conn_info) if info.conn_info else _NO_RAW,
        chan_info=msgspec.Raw(info.chan_info) if info.chan_info else _NO_RAW,
    )


def _close(s: ClientSession, disconnect: Disconnect) -> None:
    conn = s.real
    if isinstance(conn, Connection):
        conn.close(disconnect)


def _run_after_reply(s: ClientSession) -> None:
    actions, s.after_reply = s.after_reply, None
    for action in actions or ():
        action()


def _resume_reading(s: ClientSession) -> None:
    conn = s.real
    if isinstance(conn, Connection):
        conn.resume_reading()


async def _call(fn: Callable[..., Any] | None, *args: Any) -> Any:
    assert fn is not None
    result = fn(*args)
    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
        return await result
    return result
