"""The admin page at ``/admin``, on when ``admin_password`` is set (else every path is 404).

Sign-in: the form at ``/admin`` posts the password to ``/admin/login``, which sets a signed
session cookie (HttpOnly, SameSite=Strict, Path=/admin). For scripts, a JSON
``POST /admin/login`` with ``{"password": ...}`` returns the same signed value as a token
to send as ``Authorization: Bearer <token>``. Sessions are signed with a key made at start-up
(HMAC-SHA256, standard library), so they end when the process does; signing out revokes the
session. The password is compared in constant time and never logged.

JSON endpoints (all need a session):

* ``GET  /admin/api/stats``: counts, cumulative traffic totals (the page turns them into
  rates), the node's connections and its channels with their subscriber counts;
* ``GET  /admin/api/user?user=NAME``: that user's connections and the state of each;
* ``POST /admin/api/publish`` ``{"channel", "data"}``: publish into a channel;
* ``POST /admin/api/disconnect`` ``{"user", "client"?, "reconnect"?}``: disconnect a user's
  connections (force disconnect 3503; 3011 with ``"reconnect": true``).

CSRF: a POST authenticated by the cookie must carry an ``X-Requested-With`` header (a
cross-site form cannot set one) and, when it has an ``Origin``, come from this origin.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from wshub import codes
from wshub.errors import CommandError
from wshub.protocol.session import ClientSession

if TYPE_CHECKING:
    from wshub.gateway import Gateway

log = logging.getLogger("wshub.admin")

COOKIE = "wshub_admin"
COOKIE_PATH = "/admin"
SESSION_TTL = 12 * 3600
CSRF_HEADER = "X-Requested-With"
MAX_BODY = 65536
LIST_LIMIT = 500
"""At most this many connections and channels in one stats reply (the totals are exact)."""
FAILED_LOGIN_DELAY = 0.5

STATIC_DIR = Path(__file__).parent / "static"
_STATIC = {"admin.js": "text/javascript", "admin.css": "text/css", "wshub.css": "text/css"}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class AdminAuth:
    """The admin password and the signed sessions made from it."""

    def __init__(self, password: str, *, ttl: float = SESSION_TTL) -> None:
        self._digest = hashlib.sha256(password.encode()).digest()
        self._key = secrets.token_bytes(32)
        self._ttl = ttl
        self._revoked: dict[str, float] = {}

    def check_password(self, candidate: str) -> bool:
        # Digests of equal length: the comparison time tells nothing, not even the length.
        given = hashlib.sha256(candidate.encode()).digest()
        return hmac.compare_digest(given, self._digest)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, now: float | None = None) -> tuple[str, float]:
        """A new session value and its expiry (epoch seconds)."""
        expires = int((now if now is not None else time.time()) + self._ttl)
        payload = f"v1.{expires}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{self._sign(payload)}", float(expires)

    def verify(self, value: str, now: float | None = None) -> bool:
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != "v1" or len(value) > 200:
            return False
        payload = ".".join(parts[:3])
        if not hmac.compare_digest(self._sign(payload), parts[3]):
            return False
        try:
            expires = int(parts[1])
        except ValueError:
            return False
        t = now if now is not None else time.time()
        return expires > t and parts[2] not in self._revoked

    def revoke(self, value: str) -> None:
        if not self.verify(value):
            return
        now = time.time()
        self._revoked = {n: e for n, e in self._revoked.items() if e > now}
        parts = value.split(".")
        self._revoked[parts[2]] = float(parts[1])


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": _CSP,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=_headers()
    )


def _error(status: int, error: str, message: str) -> Response:
    return _json({"error": error, "message": message}, status)


def _session_value(request: Request) -> tuple[str, bool]:
    """The presented session and whether it came as a bearer token (not the cookie)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), True
    return request.cookies.get(COOKIE, ""), False


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def _wall(monotonic_t: float) -> float | None:
    """A time.monotonic() reading as epoch seconds (None for 0: never)."""
    if not monotonic_t:
        return None
    return time.time() - (time.monotonic() - monotonic_t)


def _session_state(gw: Gateway, s: ClientSession) -> dict[str, Any]:
    now = time.time()
    conn = gw.server.connections.get(s.client)
    age = max(now - s.connected_at, 1e-3) if s.connected_at else 0.0
    return {
        "client": s.client,
        "user": s.user,
        "name": s.name,
        "version": s.version,
        "client_ip": conn.request.client_ip if conn is not None else "",
        "connected_at": s.connected_at or None,
        "last_activity": _wall(s.last_command_at),
        "commands": s.commands,
        "commands_per_second": round(s.commands / age, 3) if age else 0.0,
        "expires_at": s.expires_at,
        "subscriptions": sorted(s.subs),
        "messages_in": conn.messages_in if conn is not None else 0,
        "messages_out": conn.messages_out if conn is not None else 0,
        "bytes_in": conn.bytes_in if conn is not None else 0,
        "bytes_out": conn.bytes_out if conn is not None else 0,
    }


def stats(gw: Gateway) -> dict[str, Any]:
    """What ``/admin/api/stats`` returns."""
    node, hub, server = gw.node, gw.node.hub, gw.server
    totals = server.live_totals()
    conns: list[dict[str, Any]] = []
    for conn in list(server.connections.values())[:LIST_LIMIT]:
        s = conn.ctx if isinstance(conn.ctx, ClientSession) else None
        route = conn.route
        conns.append(
            {
                "id": conn.id,
                "route": (route.name or route.path) if route is not None else "",
                "client_ip": conn.request.client_ip,
                "opened_at": conn.opened_at,
                "user": s.user if s is not None else None,
                "connected": s.connected if s is not None else None,
                "subscriptions": len(s.subs) if s is not None else 0,
                "messages_in": conn.messages_in,
                "messages_out": conn.messages_out,
                "bytes_in": conn.bytes_in,
                "bytes_out": conn.bytes_out,
            }
        )
    channels = sorted(((ch, len(subs)) for ch, subs in hub.channels.items()), key=_by_count)
    return {
        "time": time.time(),
        "node": {
            "version": _version(),
            "uptime": time.time() - node.started_at,
            "engine": gw.config.engine,
            "draining": node.draining,
        },
        "counts": {
            "connections": len(server.connections),
            "clients": len(hub.clients),
            "users": len(hub.users),
            "channels": len(hub.channels),
            "subscriptions": hub.num_subscriptions,
        },
        "totals": {
            "messages_in": totals.messages_in,
            "messages_out": totals.messages_out,
            "bytes_in": totals.bytes_in,
            "bytes_out": totals.bytes_out,
            "publications": gw.metrics.publications,
            "deliveries": gw.metrics.deliveries,
        },
        "connections": conns,
        "channels": [{"channel": ch, "subscribers": n} for ch, n in channels[:LIST_LIMIT]],
    }


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _version() -> str:
    from wshub.node import VERSION  # noqa: PLC0415

    return VERSION


async def _body_json(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ValueError("body too large")
    return orjson.loads(body)


def routes(gw: Gateway) -> list[BaseRoute]:
    """The admin routes; none (so 404) when ``admin_password`` is empty."""
    if not gw.config.admin_password:
        return []
    auth = AdminAuth(gw.config.admin_password)

    def authed(request: Request) -> tuple[bool, bool]:
        value, bearer = _session_value(request)
        return (bool(value) and auth.verify(value)), bearer

    def guard(request: Request, *, write: bool) -> Response | None:
        ok, bearer = authed(request)
        if not ok:
            return _error(401, "unauthorized", "sign in at /admin first")
        # A bearer token is no ambient credential: only the cookie needs the CSRF check.
        csrf_ok = bool(request.headers.get(CSRF_HEADER)) and _same_origin(request)
        if write and not bearer and not csrf_ok:
            return _error(403, "csrf", f"a cookie-authenticated POST needs {CSRF_HEADER}")
        return None

    def login_page(error: str = "", status: int = 200) -> Response:
        html = (STATIC_DIR / "admin-login.html").read_text("utf-8")
        note = f'<p class="error" role="alert">{error}</p>' if error else ""
        return HTMLResponse(html.replace("<!--error-->", note), status, headers=_headers())

    async def page(request: Request) -> Response:
        if not authed(request)[0]:
            return login_page()
        return FileResponse(STATIC_DIR / "admin.html", media_type="text/html", headers=_headers())

    async def login(request: Request) -> Response:
        is_json = request.headers.get("content-type", "").startswith("application/json")
        password = ""
        try:
            if is_json:
                data = await _body_json(request)
                if isinstance(data, dict) and isinstance(data.get("password"), str):
                    password = data["password"]
            else:
                body = await request.body()
                if len(body) <= MAX_BODY:
                    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
                    password = (form.get("password") or [""])[0]
        except ValueError:
            return _error(400, "bad_request", "expected JSON or a form")
        if not password or not auth.check_password(password):
            log.warning(
                "admin sign-in failed",
                extra={"event": "admin_login_failed", "client_ip": _peer(request)},
            )
            await asyncio.sleep(FAILED_LOGIN_DELAY)
            if is_json:
                return _error(401, "unauthorized", "wrong password")
            return login_page("Wrong password.", 401)
        value, expires = auth.issue()
        log.info("admin signed in", extra={"event": "admin_login", "client_ip": _peer(request)})
        if is_json:
            return _json({"token": value, "expires_at": expires})
        resp = Response(status_code=303, headers={**_headers(), "Location": "/admin"})
        resp.set_cookie(
            COOKIE,
            value,
            max_age=SESSION_TTL,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return resp

    async def logout(request: Request) -> Response:
        denied = guard(request, write=True)
        if denied is not None:
            return denied
        auth.revoke(_session_value(request)[0])
        resp = _json({"ok": True})
        resp.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
        return resp

    async def api_stats(request: Request) -> Response:
        denied = guard(request, write=False)
        return denied if denied is not None else _json(stats(gw))

    async def api_user(request: Request) -> Response:
        denied = guard(request, write=False)
        if denied is not None:
            return denied
        user = request.query_params.get("user")
        if user is None:
            return _error(400, "bad_request", "user is required")
        sessions = sorted(gw.node.hub.user_sessions(user), key=lambda s: s.connected_at)
        return _json({"user": user, "connections": [_session_state(gw, s) for s in sessions]})

    async def write_request(request: Request) -> dict[str, Any] | Response:
        """The JSON object body of an authorised POST, or the response refusing it."""
        denied = guard(request, write=True)
        if denied is not None:
            return denied
        try:
            body = await _body_json(request)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(400, "bad_request", "the body must be a JSON object")
        return body

    async def api_publish(request: Request) -> Response:
        body = await write_request(request)
        if isinstance(body, Response):
            return body
        channel = body.get("channel")
        if not isinstance(channel, str) or "data" not in body:
            return _error(400, "bad_request", 'expected {"channel": string, "data": any JSON}')
        if not gw.node.channels.valid(channel):
            return _error(400, "bad_request", "invalid channel name")
        try:
            pos = await gw.node.publish(channel, orjson.dumps(body["data"]))
        except CommandError as e:
            return _error(400, "publish_failed", f"{e.error.code}: {e.error.message}")
        log.info("admin publish", extra={"event": "admin_publish", "channel": channel})
        return _json({"offset": pos.offset, "epoch": pos.epoch})

    async def api_disconnect(request: Request) -> Response:
        body = await write_request(request)
        if isinstance(body, Response):
            return body
        user = body.get("user")
        client = body.get("client", "")
        if not isinstance(user, str) or not isinstance(client, str):
            return _error(400, "bad_request", 'expected {"user": string, "client"?: string}')
        reconnect = bool(body.get("reconnect", False))
        disconnect = (
            codes.DISCONNECT_FORCE_RECONNECT if reconnect else codes.DISCONNECT_FORCE_NO_RECONNECT
        )
        n = gw.node.disconnect_user(user, disconnect, client)
        log.info(
            "admin disconnect",
            extra={"event": "admin_disconnect", "user": user, "client": client, "count": n},
        )
        return _json({"disconnected": n, "code": disconnect.code})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        media = _STATIC.get(name)
        if media is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        return FileResponse(STATIC_DIR / name, media_type=media, headers=_headers())

    return [
        Route("/admin", page),
        Route("/admin/", page),
        Route("/admin/login", login, methods=["POST"]),
        Route("/admin/logout", logout, methods=["POST"]),
        Route("/admin/static/{name}", static),
        Route("/admin/api/stats", api_stats),
        Route("/admin/api/user", api_user),
        Route("/admin/api/publish", api_publish, methods=["POST"]),
        Route("/admin/api/disconnect", api_disconnect, methods=["POST"]),
    ]


def _peer(request: Request) -> str:
    return request.client.host if request.client is not None else ""
