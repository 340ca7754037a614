"""The browser demo at ``/demo`` (``demo = true`` / ``wshub serve --demo``): a chat page on the
real ``centrifuge`` JS SDK.

The SDK is never copied into the repository: ``web/package.json`` depends on it from npm
(``npm ci --prefix web``) and the gateway serves its browser build from
``web/node_modules/centrifuge/dist/centrifuge.js`` at ``/demo/centrifuge.js``. Without it,
``/demo`` is a page that says which command to run.

When the demo is on, :func:`prepare_config` (called by the Gateway before it builds the node)
adds what the page needs to the configuration:

* a ``chat`` namespace (presence, join/leave, history, recovery, client subscribe, publish,
  presence and history), unless the configuration defines one;
* an HMAC secret, generated per process, when ``token.hmac_secret`` is empty: the node
  verifies the connection tokens that ``/demo/token?user=NAME`` signs with it.

``/demo/token`` signs a token for any name it is given: the demo is a development tool.
With a configured ``token.hmac_secret`` those tokens are valid for the whole gateway, so the
gateway logs a warning at start-up.
"""

from __future__ import annotations

import html as html_lib
import logging
import re
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

import jwt
import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from wshub.config import Config, NamespaceConfig

if TYPE_CHECKING:
    from wshub.gateway import Gateway

log = logging.getLogger("wshub.demo")

CHAT_NAMESPACE = "chat"
TOKEN_TTL = 3600
"""Seconds a demo connection token is valid (the SDK asks for a new one before it ends)."""
NPM_COMMAND = "npm ci --prefix web"
SDK_DIST = Path("node_modules", "centrifuge", "dist", "centrifuge.js")
"""The SDK's browser build (an IIFE that defines ``globalThis.Centrifuge``; JSON protocol)."""

STATIC_DIR = Path(__file__).parent / "static"
_STATIC = {"demo.js": "text/javascript", "wshub.css": "text/css", "demo.css": "text/css"}
_USER_RE = re.compile(r"[\w.\- ]{1,32}")
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def chat_namespace() -> NamespaceConfig:
    """The namespace of the demo's rooms (``chat:<room>``)."""
    return NamespaceConfig(
        name=CHAT_NAMESPACE,
        presence=True,
        join_leave=True,
        history_size=100,
        history_ttl=600.0,
        force_recovery=True,
        allow_subscribe_for_client=True,
        allow_publish_for_client=True,
        allow_presence_for_client=True,
        allow_history_for_client=True,
    )


def prepare_config(config: Config) -> Config:
    """The configuration with what the demo needs (see the module docstring); ``config``
    itself is not changed. A config with the demo off is returned as it is."""
    if not config.demo:
        return config
    token = config.token
    if token.hmac_secret:
        log.warning(
            "demo on: /demo/token signs connection tokens for any user name with the "
            "configured token.hmac_secret; use the demo for development only",
            extra={"event": "demo_configured_secret"},
        )
    else:
        token = msgspec.structs.replace(token, hmac_secret=secrets.token_urlsafe(32))
    namespaces = config.namespaces
    if not any(ns.name == CHAT_NAMESPACE for ns in namespaces):
        namespaces = [*namespaces, chat_namespace()]
    return msgspec.structs.replace(config, token=token, namespaces=namespaces)


def find_web_dir() -> Path:
    """``web/`` of the checkout: under the working directory, else beside ``src/``."""
    candidates = (Path.cwd() / "web", Path(__file__).resolve().parents[3] / "web")
    for web in candidates:
        if (web / "package.json").is_file():
            return web
    return candidates[0]


def sdk_path(web_dir: Path | None = None) -> Path:
    return (web_dir if web_dir is not None else find_web_dir()) / SDK_DIST


def sign_token(secret: str, user: str, *, ttl: int = TOKEN_TTL) -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + ttl, "info": {"name": user}}
    return jwt.encode(claims, secret, algorithm="HS256")


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": _CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def routes(gw: Gateway) -> list[BaseRoute]:
    """The demo's HTTP routes; none (so 404) when the demo is off."""
    if not gw.config.demo:
        return []
    from wshub.gateway import HUB_PATH  # noqa: PLC0415 - the gateway imports this module

    web_dir = find_web_dir()
    sdk = sdk_path(web_dir)

    async def page(_request: Request) -> Response:
        if not sdk.is_file():
            html = (STATIC_DIR / "demo-missing.html").read_text("utf-8")
            html = html.replace("{{command}}", NPM_COMMAND)
            html = html.replace("{{path}}", html_lib.escape(str(sdk)))
            return HTMLResponse(html, status_code=503, headers=_headers())
        html = (STATIC_DIR / "demo.html").read_text("utf-8")
        html = html.replace("{{ws_port}}", str(gw.ws_port)).replace("{{ws_path}}", HUB_PATH)
        return HTMLResponse(html, headers=_headers())

    async def sdk_file(request: Request) -> Response:
        path = sdk.with_name(sdk.name + ".map") if request.url.path.endswith(".map") else sdk
        if not path.is_file():
            return JSONResponse(
                {"error": "not_installed", "message": f"run `{NPM_COMMAND}`"}, status_code=404
            )
        media = "application/json" if path.suffix == ".map" else "text/javascript"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        media = _STATIC.get(name)
        if media is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        return FileResponse(STATIC_DIR / name, media_type=media, headers=_headers())

    async def token(request: Request) -> Response:
        user = request.query_params.get("user", "").strip()
        if not _USER_RE.fullmatch(user):
            return JSONResponse(
                {
                    "error": "bad_user",
                    "message": "user: 1 to 32 letters, digits, spaces, '.', '-' or '_'",
                },
                status_code=400,
                headers=_headers(),
            )
        secret = gw.node.config.token.hmac_secret
        return JSONResponse(
            {"token": sign_token(secret, user), "user": user, "expires_in": TOKEN_TTL},
            headers=_headers(),
        )

    return [
        Route("/demo", page),
        Route("/demo/", page),
        Route("/demo/centrifuge.js", sdk_file),
        Route("/demo/centrifuge.js.map", sdk_file),
        Route("/demo/static/{name}", static),
        Route("/demo/token", token),
    ]
