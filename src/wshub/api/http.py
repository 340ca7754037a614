"""The HTTP server: Starlette on uvicorn, in the gateway's process and event loop, on its
own port (``http_port``). The WebSocket port stays free of HTTP routing so the upgrade path
is as short as it can be.

* ``GET /health``: 200 while the process serves.
* ``GET /ready``: 200, or 503 while draining or while the broker does not answer a ping.
* ``GET /metrics``: Prometheus text format.
* ``POST /api/<method>``: the Centrifugo-compatible server API (``wshub.api.server_api``);
  its OpenAPI 3.1 description is at ``GET /api/openapi.json``.
* CORS for all of it from the ``[cors]`` section (off while ``cors.allowed_origins`` is
  empty).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wshub.api import admin, demo, server_api
from wshub.brokers.base import Engine
from wshub.config import CorsConfig

if TYPE_CHECKING:
    from wshub.gateway import Gateway

log = logging.getLogger("wshub.http")

_PING_TIMEOUT = 1.0  # seconds /ready waits for the broker


def build_app(gw: Gateway) -> Starlette:
    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(_request: Request) -> Response:
        if gw.node.draining:
            return JSONResponse({"ready": False, "reason": "draining"}, status_code=503)
        if not await broker_reachable(gw.engine):
            return JSONResponse({"ready": False, "reason": "broker_unreachable"}, status_code=503)
        return JSONResponse({"ready": True})

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/health", health),
        Route("/ready", ready),
        Route("/metrics", metrics),
        *server_api.routes(gw),
        *admin.routes(gw),
        *demo.routes(gw),
    ]
    return Starlette(routes=routes, middleware=cors_middleware(gw.config.cors))


def cors_middleware(cfg: CorsConfig) -> list[Middleware]:
    """Starlette's CORSMiddleware from the ``[cors]`` section; none when no origin is set."""
    if not cfg.allowed_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=cfg.allowed_origins,
            allow_methods=cfg.allowed_methods,
            allow_headers=cfg.allowed_headers,
            allow_credentials=cfg.allow_credentials,
            max_age=cfg.max_age,
        )
    ]


async def broker_reachable(engine: Engine) -> bool:
    """Whether the engine's broker answers a cheap ping (an engine without one, like the
    in-memory engine, is always reachable)."""
    ping = getattr(engine.broker, "ping", None)
    if ping is None:
        # The Redis broker keeps its client private; its PING is the cheap check.
        ping = getattr(getattr(engine.broker, "_client", None), "ping", None)
    if ping is None:
        return True
    try:
        async with asyncio.timeout(_PING_TIMEOUT):
            await ping()
    except Exception:
        return False
    return True


class HttpServer:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.app = build_app(gw)
        cfg = gw.config
        self._uv = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=cfg.host,
                port=cfg.http_port,
                log_config=None,
                log_level="warning",
                access_log=False,
                lifespan="off",
                proxy_headers=False,
            )
        )
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    async def start(self, *, sock: Any = None) -> None:
        if sock is None:
            sock = self._uv.config.bind_socket()
        self._sock = sock
        # uvicorn's serve() would install its own signal handlers; the gateway owns those,
        # so run uvicorn's start-up steps directly on the gateway's loop.
        cfg = self._uv.config
        if not cfg.loaded:
            cfg.load()
        self._uv.lifespan = cfg.lifespan_class(cfg)
        await self._uv.startup(sockets=[sock])

    async def stop(self) -> None:
        await self._uv.shutdown(sockets=[self._sock] if self._sock is not None else None)
