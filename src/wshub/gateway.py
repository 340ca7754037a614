"""Assembly and lifecycle: config + app -> engine, node, WebSocket server, HTTP server.

Shutdown is ordered: stop accepting, tell every client (close 1001 on raw routes, the
shutdown disconnect 3001 on the hub), wait up to ``drain_time`` for them to go, then stop
the HTTP side, the worker pool and the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from wshub.app import App
from wshub.brokers.base import Engine
from wshub.codes import CLOSE_GOING_AWAY, DISCONNECT_NO_PONG, DISCONNECT_SHUTDOWN, DISCONNECT_SLOW
from wshub.config import Config
from wshub.errors import ConfigError
from wshub.logs import register_secret
from wshub.metrics import Metrics
from wshub.middleware.base import build_chain
from wshub.middleware.chain import default_chain
from wshub.node import Node
from wshub.runtime import tune_gc
from wshub.transport.raw import RawRoute
from wshub.transport.server import Route, Server

log = logging.getLogger("wshub")

HUB_PATH = "/connection/websocket"


def load_app(spec: str) -> App:
    """Import ``module:attribute`` and return the App it names."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        app = getattr(module, attr or "app")
    except (ImportError, AttributeError) as exc:
        raise ConfigError("app", f"cannot load {spec!r}: {exc}") from None
    if not isinstance(app, App):
        raise ConfigError("app", f"{spec!r} is not a wshub.App")
    return app


def build_engine(config: Config) -> tuple[Engine, Callable[[], Awaitable[None]] | None]:
    """The configured engine and, when the gateway owns a connection pool for it, the
    coroutine function that closes that pool (after the engine itself is closed)."""
    if config.engine == "redis":
        from redis.asyncio import BlockingConnectionPool, Redis  # noqa: PLC0415 - optional

        from wshub.brokers.redis import redis_engine  # noqa: PLC0415

        # A blocking pool: a burst of engine calls (a thousand clients resubscribing at
        # once) waits for connections instead of failing once the pool is exhausted.
        pool = BlockingConnectionPool.from_url(
            config.redis_url,
            max_connections=config.redis_pool_size,
            timeout=config.redis_pool_timeout,
        )
        client = Redis.from_pool(pool)
        return redis_engine(client), client.aclose
    from wshub.brokers.memory import memory_engine  # noqa: PLC0415

    return memory_engine(), None


class Gateway:
    """Everything one process serves. Use ``async with Gateway(config, app) as gw``."""

    def __init__(
        self, config: Config, app: App | None = None, *, engine: Engine | None = None
    ) -> None:
        if config.demo:
            from wshub.api.demo import prepare_config  # noqa: PLC0415 - only with the demo

            config = prepare_config(config)  # the chat namespace and a token secret
        self.config = config
        self.app = app if app is not None else App()
        self.metrics = Metrics()
        self._close_engine_client: Callable[[], Awaitable[None]] | None = None
        if engine is None:
            engine, self._close_engine_client = build_engine(config)
        self.engine = engine
        self.node = Node(config, self.engine, self.app, self.metrics)
        chain = build_chain(
            default_chain(
                config, token_validator=self.app.token_validator, extra=self.app.middleware
            )
        )
        self.server = Server(config, chain, self.metrics)
        self.metrics.bind_traffic(self.server.live_totals)
        self.server.add_route(
            Route(
                HUB_PATH,
                self.node.make_handler,
                name="hub",
                slow=DISCONNECT_SLOW,
                no_pong=DISCONNECT_NO_PONG,
            )
        )
        for path, fn in self.app.raw_routes.items():
            protos = self.app.route_subprotocols.get(path, ())
            self.server.add_route(Route(path, RawRoute(fn), name=path, subprotocols=protos))
        self.http: Any = None
        self._stopping = asyncio.Event()

    @property
    def ws_port(self) -> int:
        return self.server.port

    @property
    def http_port(self) -> int:
        return int(self.http.port) if self.http is not None else 0

    async def start(self, *, ws_sock: Any = None, http_sock: Any = None) -> None:
        register_secret(self.config.api_key)
        register_secret(self.config.admin_password)
        await self.node.start()
        await self.server.start(sock=ws_sock)
        if self.config.http_port or http_sock is not None:
            from wshub.api.http import HttpServer  # noqa: PLC0415 - keeps start-up light

            self.http = HttpServer(self)
            await self.http.start(sock=http_sock)
        log.info(
            "wshub started",
            extra={"event": "started", "ws_port": self.ws_port, "http_port": self.http_port},
        )

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    async def shutdown(self) -> None:
        drain = self.config.websocket.drain_time
        self.node.shutdown_disconnect()
        await self.server.stop_accepting()
        hub_conns = [
            c
            for c in self.server.connections.values()
            if c.route is not None and c.route.name == "hub"
        ]
        for c in hub_conns:
            c.close(DISCONNECT_SHUTDOWN, abort_after=drain)
        await self.server.drain(CLOSE_GOING_AWAY, drain)
        if self.http is not None:
            await self.http.stop()
        await self.node.close()
        if self._close_engine_client is not None:
            await self._close_engine_client()
        log.info("wshub stopped", extra={"event": "stopped"})

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()


async def serve(config: Config, app: App | None = None, *, tune_process: bool = False) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully. Returns the exit status.

    ``tune_process``: apply ``config.runtime`` (the garbage collector) once started; only
    ``wshub serve``, which owns its process, asks for it."""
    gw = Gateway(config, app)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, gw.request_stop)
    await gw.start()
    if tune_process:
        tune_gc(config.runtime)
    print(_banner(gw), flush=True)
    await gw.wait_stopped()
    await gw.shutdown()
    return 0


def _banner(gw: Gateway) -> str:
    host = gw.config.host
    lines = [f"wshub: WebSocket on ws://{host}:{gw.ws_port}{HUB_PATH}"]
    if gw.http is not None:
        lines.append(
            f"wshub: HTTP on http://{host}:{gw.http_port} (/api, /metrics, /health, /ready)"
        )
        if gw.config.demo:
            lines.append(f"wshub: demo at http://{host}:{gw.http_port}/demo")
        if gw.config.admin_password:
            lines.append(f"wshub: admin at http://{host}:{gw.http_port}/admin")
    return "\n".join(lines)


def run(config: Config) -> int:
    """Entry point of ``wshub serve``."""
    from wshub.logs import setup_logging  # noqa: PLC0415

    setup_logging(config.log.level)
    app = load_app(config.app) if config.app else None
    try:
        import uvloop  # noqa: PLC0415

        return uvloop.run(serve(config, app, tune_process=True))
    except ImportError:
        return asyncio.run(serve(config, app, tune_process=True))
