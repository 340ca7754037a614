"""The Redis engine (redis-py asyncio): pub/sub between nodes, history in Streams, presence.

Layout, with ``prefix`` (default ``wshub.``) in front of every name:

* pub/sub channel ``{prefix}{channel}``; one PubSub connection per node, read by one task.
* history: stream ``{prefix}s:{channel}`` with entry ids ``{offset}-0`` and a meta hash
  ``{prefix}m:{channel}`` holding the epoch (``e``) and top offset (``s``). Both keys share
  the ttl; a missing meta means the stream was lost, so a new epoch is drawn.
* presence: hash ``{prefix}p:{channel}`` client -> info and sorted set ``{prefix}z:{channel}``
  client -> expiry (server time, ms). Both keys expire with their last entry.

Ordering: ``RedisHistory.append`` increments the offset, XADDs and PUBLISHes in ONE Lua
script, so offsets and delivery order agree across nodes. ``RedisBroker.publish`` therefore
skips publications with ``offset > 0`` (already broadcast by ``append``): the node calls
``append`` then ``publish`` for every engine, and each publication is delivered once.

Connection loss: redis-py reconnects the pub/sub connection and subscribes again; what was
published in between is gone. The broker then calls the handler's ``handle_resync``, and the
node compares each channel's stream top with what it last saw (lost publications of a channel
with history are recovered by its subscribers; without history they are simply missed).

Pub/sub message: ``p{offset}\\n{epoch}\\n{body}`` for a publication, ``j{info}`` and
``l{info}`` for join and leave; bodies are msgpack.

The Redis client is owned by the caller (it must not use ``decode_responses``); ``close``
methods release only what the engine parts created themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from wshub.brokers.base import (
    BrokerEventHandler,
    ClientInfo,
    Engine,
    HistoryResult,
    PresenceStats,
    Publication,
    StreamPosition,
)

__all__ = ["RedisBroker", "RedisHistory", "RedisPresence", "redis_engine"]

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "wshub."

_InfoTuple = tuple[str, str, bytes | None, bytes | None]
_PubTuple = tuple[bytes, _InfoTuple | None, dict[str, str] | None, int]

_encoder = msgspec.msgpack.Encoder()
_info_decoder = msgspec.msgpack.Decoder(_InfoTuple)
_pub_decoder = msgspec.msgpack.Decoder(_PubTuple)


def _encode_info(info: ClientInfo) -> bytes:
    return _encoder.encode((info.client, info.user, info.conn_info, info.chan_info))


def _decode_info(raw: bytes) -> ClientInfo:
    return ClientInfo(*_info_decoder.decode(raw))


def _encode_pub(pub: Publication) -> bytes:
    info = pub.info
    info_t = None if info is None else (info.client, info.user, info.conn_info, info.chan_info)
    return _encoder.encode((pub.data, info_t, pub.tags, pub.time_ms))


def _decode_pub(raw: bytes, offset: int) -> Publication:
    data, info_t, tags, time_ms = _pub_decoder.decode(raw)
    info = None if info_t is None else ClientInfo(*info_t)
    return Publication(data=data, info=info, offset=offset, tags=tags, time_ms=time_ms)


def _ms(seconds: float) -> int:
    """A positive ttl in whole milliseconds, 0 for "no expiry"."""
    return max(1, round(seconds * 1000)) if seconds > 0 else 0


async def _retrying(command: Callable[[bytes], Awaitable[object]], name: bytes) -> None:
    """SUBSCRIBE or UNSUBSCRIBE, again after a short pause when the pub/sub connection is
    being lost or re-established under it (both are idempotent); the third failure raises.

    redis-py reconnects from whichever call finds the connection down, so a command racing
    the read loop's reconnect can also fail with asyncio's "readuntil() called while another
    coroutine is already waiting" RuntimeError: retried like a connection error."""
    for attempt in range(3):
        try:
            await command(name)
            return
        except (RedisConnectionError, RedisTimeoutError, RuntimeError):
            if attempt == 2:
                raise
            await asyncio.sleep(0.1 * (attempt + 1))


def _check_client(client: Redis) -> None:
    if client.connection_pool.connection_kwargs.get("decode_responses"):
        raise ValueError("the Redis engine needs a client with decode_responses=False")


# --------------------------------------------------------------------------- broker


class RedisBroker:
    """Pub/sub over one PubSub connection per node, read by a single task."""

    def __init__(self, client: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        _check_client(client)
        self._client = client
        self._prefix = prefix
        self._prefix_b = prefix.encode()
        self._handler: BrokerEventHandler | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one SUBSCRIBE/UNSUBSCRIBE writer at a time
        self._acks: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._watching = False  # our reconnect callback is on the pub/sub connection
        self._resync_pending = False
        self.subscribe_timeout = 5.0

    async def start(self, handler: BrokerEventHandler) -> None:
        self._handler = handler
        self._pubsub = self._client.pubsub()

    async def close(self) -> None:
        self._handler = None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed in newer redis-py
        for waiters in self._acks.values():
            for fut in waiters:
                fut.cancel()
        self._acks.clear()

    def _pubsub_or_raise(self) -> PubSub:
        if self._pubsub is None:
            raise RuntimeError("RedisBroker is not started")
        return self._pubsub

    async def subscribe(self, channel: str) -> None:
        """Returns once Redis confirmed the subscription: later publications reach us."""
        pubsub = self._pubsub_or_raise()
        name = self._prefix_b + channel.encode()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._acks.setdefault(name, deque())
        waiters.append(fut)
        try:
            async with self._lock:
                await _retrying(pubsub.subscribe, name)
                if not self._watching and pubsub.connection is not None:
                    pubsub.connection.register_connect_callback(self._on_reconnect)
                    self._watching = True
                if self._reader is None:
                    self._reader = asyncio.create_task(self._read_loop(pubsub))
            async with asyncio.timeout(self.subscribe_timeout):
                await fut
        finally:
            if not fut.done():
                fut.cancel()
                with contextlib.suppress(ValueError):
                    waiters.remove(fut)
            if not waiters:
                self._acks.pop(name, None)

    async def unsubscribe(self, channel: str) -> None:
        pubsub = self._pubsub_or_raise()
        async with self._lock:
            await _retrying(pubsub.unsubscribe, self._prefix_b + channel.encode())

    async def publish(self, channel: str, pub: Publication, epoch: str = "") -> None:
        if pub.offset > 0:
            return  # RedisHistory.append already published it, in offset order
        msg = b"p0\n" + epoch.encode() + b"\n" + _encode_pub(pub)
        await self._client.publish(self._prefix + channel, msg)

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self._client.publish(self._prefix + channel, b"j" + _encode_info(info))

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self._client.publish(self._prefix + channel, b"l" + _encode_info(info))

    async def _on_reconnect(self, connection: object) -> None:
        # redis-py calls this after it has reconnected the pub/sub connection and re-sent
        # SUBSCRIBE for every channel (its own callback runs first). Publications made while
        # it was down are lost; the handler is told once the first confirmation is read,
        # when the subscriptions are live again (_dispatch).
        pubsub = self._pubsub
        if pubsub is not None and pubsub.channels:
            self._resync_pending = True
        elif self._handler is not None:
            self._handler.handle_resync()

    async def _read_loop(self, pubsub: PubSub) -> None:
        while True:
            try:
                msg = await pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # Redis restarted, a network cut: expected, and redis-py reconnects on the
                # next read (then _on_reconnect). One line, not a traceback per retry.
                logger.warning("redis pub/sub connection lost (%s); reconnecting", exc)
                await asyncio.sleep(0.5)
                continue
            except Exception:
                logger.exception("redis pub/sub read failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if msg is not None:
                self._dispatch(msg)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        name: bytes = msg["channel"]
        if kind == "subscribe":
            if self._resync_pending:
                self._resync_pending = False
                if self._handler is not None:
                    self._handler.handle_resync()
                return
            waiters = self._acks.get(name)
            while waiters:
                fut = waiters.popleft()
                if not fut.done():
                    fut.set_result(None)
                    break
            return
        if kind != "message" or not name.startswith(self._prefix_b):
            return
        handler = self._handler
        if handler is None:
            return
        channel = name[len(self._prefix_b) :].decode()
        data: bytes = msg["data"]
        try:
            tag = data[:1]
            if tag == b"p":
                nl1 = data.index(b"\n", 1)
                nl2 = data.index(b"\n", nl1 + 1)
                pub = _decode_pub(data[nl2 + 1 :], int(data[1:nl1]))
                handler.handle_publication(channel, pub, data[nl1 + 1 : nl2].decode())
            elif tag == b"j":
                handler.handle_join(channel, _decode_info(data[1:]))
            elif tag == b"l":
                handler.handle_leave(channel, _decode_info(data[1:]))
            else:
                logger.warning("unknown pub/sub message in %r", channel)
        except Exception:
            logger.exception("failed to handle pub/sub message in %r", channel)


# --------------------------------------------------------------------------- history

# KEYS: stream, meta. ARGV: body, size, ttl ms (0: none), new epoch, pub/sub channel ("": none)
_APPEND = """
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', epoch)
end
local offset = redis.call('hincrby', KEYS[2], 's', 1)
local size = tonumber(ARGV[2])
if size > 0 then
  redis.call('xadd', KEYS[1], 'MAXLEN', size, offset .. '-0', 'd', ARGV[1])
else
  redis.call('del', KEYS[1])
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('pexpire', KEYS[2], ttl)
  if size > 0 then redis.call('pexpire', KEYS[1], ttl) end
else
  redis.call('persist', KEYS[2])
  if size > 0 then redis.call('persist', KEYS[1]) end
end
if ARGV[5] ~= '' then
  redis.call('publish', ARGV[5], 'p' .. offset .. '\\n' .. epoch .. '\\n' .. ARGV[1])
end
return {offset, epoch}
"""

# KEYS: stream, meta. ARGV: new epoch, meta ttl ms, mode (n|f|r), start, end, count ("": all)
_READ = """
local epoch = redis.call('hget', KEYS[2], 'e')
local top = redis.call('hget', KEYS[2], 's')
if not epoch then
  epoch = ARGV[1]
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', epoch)
  top = false
end
if not top then
  local mt = tonumber(ARGV[2])
  if mt > 0 then redis.call('pexpire', KEYS[2], mt) else redis.call('persist', KEYS[2]) end
  return {0, epoch, {}}
end
local entries = {}
local cmd = nil
if ARGV[3] == 'f' then cmd = 'xrange' elseif ARGV[3] == 'r' then cmd = 'xrevrange' end
if cmd then
  if ARGV[6] == '' then
    entries = redis.call(cmd, KEYS[1], ARGV[4], ARGV[5])
  else
    entries = redis.call(cmd, KEYS[1], ARGV[4], ARGV[5], 'COUNT', ARGV[6])
  end
end
return {tonumber(top), epoch, entries}
"""


def new_epoch() -> str:
    return secrets.token_hex(4)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisHistory:
    """History in Redis Streams; ``append`` also broadcasts on pub/sub (see module doc).

    ``meta_ttl``: like the memory engine, a read of a channel without a stream creates its
    epoch, kept ``meta_ttl`` seconds after the last read until the first append.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        meta_ttl: float = 300.0,
        publish: bool = True,
    ) -> None:
        _check_client(client)
        self._client = client
        self._prefix = prefix
        self._meta_ttl_ms = _ms(meta_ttl)
        self._publish = publish
        self._append = client.register_script(_APPEND)
        self._read = client.register_script(_READ)

    def _keys(self, channel: str) -> list[str]:
        return [f"{self._prefix}s:{channel}", f"{self._prefix}m:{channel}"]

    async def append(
        self, channel: str, pub: Publication, *, size: int, ttl: float
    ) -> StreamPosition:
        pubsub_channel = self._prefix + channel if self._publish else ""
        args: list[EncodableT] = [
            _encode_pub(pub),
            max(size, 0),
            _ms(ttl),
            new_epoch(),
            pubsub_channel,
        ]
        offset, epoch = await self._append(keys=self._keys(channel), args=args)
        pub.offset = int(offset)
        return StreamPosition(pub.offset, _text(epoch))

    async def read(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 0,
        reverse: bool = False,
    ) -> HistoryResult:
        mode, start, end = "n", "-", "+"
        if limit != 0:
            if not reverse:
                mode, start, end = "f", "-" if since is None else f"{since.offset + 1}-0", "+"
            elif since is None:
                mode, start, end = "r", "+", "-"
            elif since.offset > 1:
                mode, start, end = "r", f"{since.offset - 1}-0", "-"
        count = "" if limit < 0 else str(limit)
        args: list[EncodableT] = [new_epoch(), self._meta_ttl_ms, mode, start, end, count]
        top, epoch, entries = await self._read(keys=self._keys(channel), args=args)
        pubs = [
            _decode_pub(fields[1], int(entry_id.split(b"-", 1)[0])) for entry_id, fields in entries
        ]
        return HistoryResult(pubs, StreamPosition(int(top), _text(epoch)))

    async def position(self, channel: str) -> StreamPosition:
        return (await self.read(channel, limit=0)).position

    async def remove(self, channel: str) -> None:
        await self._client.delete(*self._keys(channel))

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------------- presence

# Shared prologue: server time in ms, then drop expired entries (KEYS: hash, zset).
_PRESENCE_PROLOGUE = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('zrangebyscore', KEYS[2], '-inf', now)
if #expired > 0 then
  redis.call('zremrangebyscore', KEYS[2], '-inf', now)
  for i = 1, #expired, 1000 do
    redis.call('hdel', KEYS[1], unpack(expired, i, math.min(i + 999, #expired)))
  end
end
"""

# Both keys live until the last entry expires.
_PRESENCE_EXPIRE = """
local last = redis.call('zrange', KEYS[2], -1, -1, 'WITHSCORES')
if #last > 0 then
  if last[2] == 'inf' then
    redis.call('persist', KEYS[1])
    redis.call('persist', KEYS[2])
  else
    local at = math.floor(tonumber(last[2])) + 1
    redis.call('pexpireat', KEYS[1], at)
    redis.call('pexpireat', KEYS[2], at)
  end
end
"""

# ARGV: client, info, ttl ms (0: none)
_PRESENCE_ADD = (
    _PRESENCE_PROLOGUE
    + """
local ttl = tonumber(ARGV[3])
local score = '+inf'
if ttl > 0 then score = now + ttl end
redis.call('zadd', KEYS[2], score, ARGV[1])
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
"""
    + _PRESENCE_EXPIRE
)

# ARGV: client
_PRESENCE_REMOVE = (
    _PRESENCE_PROLOGUE
    + """
redis.call('zrem', KEYS[2], ARGV[1])
redis.call('hdel', KEYS[1], ARGV[1])
"""
    + _PRESENCE_EXPIRE
)

_PRESENCE_GET = (
    _PRESENCE_PROLOGUE
    + """
return redis.call('hvals', KEYS[1])
"""
)


class RedisPresence:
    """Presence in a hash (client -> info) plus a sorted set of expiry times."""

    def __init__(self, client: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        _check_client(client)
        self._client = client
        self._prefix = prefix
        self._add = client.register_script(_PRESENCE_ADD)
        self._remove = client.register_script(_PRESENCE_REMOVE)
        self._get = client.register_script(_PRESENCE_GET)

    def _keys(self, channel: str) -> list[str]:
        return [f"{self._prefix}p:{channel}", f"{self._prefix}z:{channel}"]

    async def add(self, channel: str, info: ClientInfo, *, ttl: float) -> None:
        await self._add(keys=self._keys(channel), args=[info.client, _encode_info(info), _ms(ttl)])

    async def remove(self, channel: str, client: str) -> None:
        await self._remove(keys=self._keys(channel), args=[client])

    async def _infos(self, channel: str) -> list[ClientInfo]:
        raw: list[bytes] = await self._get(keys=self._keys(channel), args=[])
        return [_decode_info(v) for v in raw]

    async def get(self, channel: str) -> dict[str, ClientInfo]:
        return {info.client: info for info in await self._infos(channel)}

    async def stats(self, channel: str) -> PresenceStats:
        infos = await self._infos(channel)
        return PresenceStats(len(infos), len({i.user for i in infos}))

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------------- engine


def redis_engine(client: Redis, *, prefix: str = DEFAULT_PREFIX, meta_ttl: float = 300.0) -> Engine:
    """Broker, history and presence over one Redis (client owned by the caller)."""
    return Engine(
        broker=RedisBroker(client, prefix=prefix),
        history=RedisHistory(client, prefix=prefix, meta_ttl=meta_ttl),
        presence=RedisPresence(client, prefix=prefix),
        name="redis",
    )
