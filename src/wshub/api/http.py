"""The HTTP server: Starlette on uvicorn, in the gateway's process and event loop, on its
own port (``http_port``). The WebSocket port stays free of HTTP routing so the upgrade path
is as short as it can be."""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from wshub.gateway import Gateway

log = logging.getLogger("wshub.http")


def build_app(gw: Gateway) -> Starlette:
    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(_request: Request) -> Response:
        if gw.node.draining:
            return JSONResponse({"ready": False, "reason": "draining"}, status_code=503)
        return JSONResponse({"ready": True})

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/health", health),
        Route("/ready", ready),
        Route("/metrics", metrics),
    ]
    return Starlette(routes=routes)


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
