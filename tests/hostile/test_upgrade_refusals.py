"""Refusals before the upgrade, on the hub endpoint and on a raw route: the exact status
(401/403/429/503, with Retry-After where it applies), a JSON body, never a 101, never a 500,
never a traceback."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from hostile_helpers import HUB, HttpResponse, MiniWS, upgrade_request

from support import GatewayFactory, make_config
from wshub.app import App
from wshub.transport.raw import RawConnection

SECRET = "hostile-refusals-secret-long-enough-for-hs256"
ALLOWED = "https://app.example.com"
PATHS = [HUB, "/echo"]


def _app() -> App:
    app = App()

    @app.route("/echo")
    async def echo(ws: RawConnection) -> None:
        async for msg in ws:
            ws.send(msg)

    return app


def token(**claims: Any) -> str:
    return jwt.encode({"sub": "alice", **claims}, SECRET, algorithm="HS256")


def assert_refusal(resp: HttpResponse, status: int, error: str) -> None:
    assert resp.status == status, (resp.status, resp.body)
    text = resp.body.decode(errors="replace")
    assert "Traceback" not in text and "Error(" not in text and 'File "' not in text
    doc = json.loads(resp.body)
    assert doc["error"] == error
    assert resp.headers["content-type"] == "application/json"
    assert "upgrade" not in resp.headers and "sec-websocket-accept" not in resp.headers


def no_internal_errors(gw: Any) -> None:
    text = gw.metrics.rejections.collect()[0].samples
    assert not [s for s in text if s.labels.get("status") in ("500", "101")]


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> Any:
    cfg = make_config(
        auth={"jwt": True},
        token={"hmac_secret": SECRET},
        origin={"allowed": [ALLOWED], "missing": "refuse"},
    )
    return await gateway_factory(cfg, _app(), http=False)


GOOD = {"Origin": ALLOWED}

CREDENTIAL_CASES = {
    "missing": ("", {}, 401, "missing_token"),
    "garbage-query": ("?token=garbage", {}, 403, "invalid_token"),
    "garbage-bearer": ("", {"Authorization": "Bearer garbage"}, 403, "invalid_token"),
    "wrong-signature": ("?token={bad_sig}", {}, 403, "invalid_token"),
    "expired": ("?token={expired}", {}, 401, "token_expired"),
    "not-yet-valid": ("?token={future}", {}, 403, "invalid_token"),
    "alg-none": ("?token={alg_none}", {}, 403, "invalid_token"),
    "basic-scheme": ("", {"Authorization": "Basic YWxpY2U6c2VjcmV0"}, 401, "missing_token"),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("query", "headers", "status", "error"),
    CREDENTIAL_CASES.values(),
    ids=CREDENTIAL_CASES.keys(),
)
async def test_missing_or_bad_credentials(
    gw: Any, path: str, query: str, headers: dict[str, str], status: int, error: str
) -> None:
    tokens = {
        "bad_sig": jwt.encode({"sub": "alice"}, "another-secret-long-enough-for-hs256", "HS256"),
        "expired": token(exp=int(time.time()) - 3600),
        "future": token(nbf=int(time.time()) + 3600),
        "alg_none": jwt.encode({"sub": "alice"}, None, algorithm="none"),
    }
    resp = await upgrade_request(gw.ws_port, path + query.format(**tokens), {**GOOD, **headers})
    assert_refusal(resp, status, error)
    if status == 401:
        assert resp.headers["www-authenticate"].startswith("Bearer")
    no_internal_errors(gw)


ORIGIN_CASES = {
    "other-site": {"Origin": "https://evil.test"},
    "look-alike-suffix": {"Origin": "https://app.example.com.evil.test"},
    "look-alike-prefix": {"Origin": "https://evilapp.example.com"},
    "userinfo-trick": {"Origin": "https://app.example.com@evil.test"},
    "path-trick": {"Origin": "https://evil.test/https://app.example.com"},
    "other-scheme": {"Origin": "http://app.example.com"},
    "other-port": {"Origin": "https://app.example.com:8443"},
    "two-origins": {"Origin": "https://app.example.com https://evil.test"},
    "null": {"Origin": "null"},
    "absent": {},
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("headers", ORIGIN_CASES.values(), ids=ORIGIN_CASES.keys())
async def test_forbidden_origin_is_403(gw: Any, path: str, headers: dict[str, str]) -> None:
    resp = await upgrade_request(gw.ws_port, f"{path}?token={token()}", headers)
    assert_refusal(resp, 403, "origin_not_allowed")
    no_internal_errors(gw)


@pytest.mark.parametrize("path", PATHS)
async def test_allowed_origin_with_good_credentials_upgrades(gw: Any, path: str) -> None:
    c = await MiniWS.connect(gw.ws_port, f"{path}?token={token()}", GOOD)
    c.close()


@pytest.mark.parametrize("path", PATHS)
async def test_rate_limited_is_429_with_retry_after(
    gateway_factory: GatewayFactory, path: str
) -> None:
    gw = await gateway_factory(
        make_config(limits={"connect_rate": 0.5, "connect_burst": 2}), _app(), http=False
    )
    held = [await MiniWS.connect(gw.ws_port, path) for _ in range(2)]
    resp = await upgrade_request(gw.ws_port, path)
    assert_refusal(resp, 429, "rate_limited")
    assert 1 <= int(resp.headers["retry-after"]) <= 2
    no_internal_errors(gw)
    for c in held:
        c.close()


@pytest.mark.parametrize("path", PATHS)
async def test_over_capacity_is_503_with_retry_after(
    gateway_factory: GatewayFactory, path: str
) -> None:
    gw = await gateway_factory(make_config(limits={"max_connections": 2}), _app(), http=False)
    held = [await MiniWS.connect(gw.ws_port, p) for p in PATHS]
    resp = await upgrade_request(gw.ws_port, path)
    assert_refusal(resp, 503, "over_capacity")
    assert int(resp.headers["retry-after"]) >= 1
    no_internal_errors(gw)
    for c in held:
        c.close()
