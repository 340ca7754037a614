"""The HTTP side of /admin and /demo without a browser: switches, sign-in, sessions, CSRF,
the demo's token endpoint and configuration, and the page shown when the SDK is missing."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import jwt
import pytest

from support import GatewayFactory, http_url, make_config, open_namespace
from wshub.api import admin, demo
from wshub.gateway import Gateway, _banner

PASSWORD = "admin-password-for-tests"


def client(gw: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=http_url(gw), follow_redirects=False)


async def sign_in(c: httpx.AsyncClient) -> str:
    r = await c.post("/admin/login", json={"password": PASSWORD})
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


async def test_off_by_default(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory()
    async with client(gw) as c:
        for path in ("/admin", "/admin/api/stats", "/demo", "/demo/token?user=a"):
            assert (await c.get(path)).status_code == 404, path
        assert (await c.post("/admin/login", data={"password": ""})).status_code == 404
    assert "/demo" not in _banner(gw) and "/admin" not in _banner(gw)


async def test_admin_sign_in_sessions_and_csrf(
    gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await gateway_factory(make_config(admin_password=PASSWORD, namespaces=[open_namespace()]))
    assert f":{gw.http_port}/admin" in _banner(gw)
    caplog.set_level(logging.DEBUG)
    async with client(gw) as c:
        # Signed out: the login page; the JSON endpoints say 401.
        r = await c.get("/admin")
        assert r.status_code == 200 and 'name="password"' in r.text
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert (await c.get("/admin/api/stats")).status_code == 401
        assert (await c.post("/admin/login", data={"password": "nope"})).status_code == 401
        assert (await c.post("/admin/login", json={"password": "nope"})).status_code == 401

        # The form sets the session cookie and redirects to the page.
        r = await c.post("/admin/login", data={"password": PASSWORD})
        assert r.status_code == 303 and r.headers["location"] == "/admin"
        set_cookie = r.headers["set-cookie"].lower()
        for flag in ("httponly", "samesite=strict", "path=/admin"):
            assert flag in set_cookie
        r = await c.get("/admin")
        assert 'id="rate-chart"' in r.text
        stats = (await c.get("/admin/api/stats")).json()
        assert stats["counts"]["connections"] == 0 and "messages_in" in stats["totals"]

        # A POST on the cookie needs X-Requested-With, from this origin.
        body = {"channel": "news", "data": {"n": 1}}
        assert (await c.post("/admin/api/publish", json=body)).status_code == 403
        evil = {"X-Requested-With": "x", "Origin": "http://evil.example"}
        assert (await c.post("/admin/api/publish", json=body, headers=evil)).status_code == 403
        xrw = {"X-Requested-With": "wshub-admin"}
        r = await c.post("/admin/api/publish", json=body, headers=xrw)
        assert r.status_code == 200, r.text
        r = await c.post("/admin/api/publish", json={"channel": "no:ns", "data": 1}, headers=xrw)
        assert r.status_code == 400 and r.json()["error"] == "publish_failed"
        r = await c.post("/admin/api/disconnect", json={"user": "ghost"}, headers=xrw)
        assert r.json() == {"disconnected": 0, "code": 3503}

        # Signing out revokes the session.
        assert (await c.post("/admin/logout", headers=xrw)).status_code == 200
        c.cookies.clear()
    async with client(gw) as c:
        token = await sign_in(c)
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await c.get("/admin/api/stats", headers=bearer)).status_code == 200
        # A bearer token is no ambient credential: no CSRF header needed.
        r = await c.get("/admin/api/user", params={"user": "nobody"}, headers=bearer)
        assert r.json() == {"user": "nobody", "connections": []}
        assert (await c.post("/admin/logout", headers=bearer)).status_code == 200
        assert (await c.get("/admin/api/stats", headers=bearer)).status_code == 401
        tampered = {"Authorization": f"Bearer {token[:-2]}xx"}
        assert (await c.get("/admin/api/stats", headers=tampered)).status_code == 401

    # The password never reaches a log record.
    for rec in caplog.records:
        assert PASSWORD not in rec.getMessage()
        assert PASSWORD not in str(rec.__dict__)


def test_admin_auth_signing() -> None:
    auth = admin.AdminAuth("pw-pw-pw-pw", ttl=60)
    value, expires = auth.issue(now=1000.0)
    assert expires == 1060.0
    assert auth.verify(value, now=1059.0)
    assert not auth.verify(value, now=1061.0)
    assert not admin.AdminAuth("pw-pw-pw-pw").verify(value, now=1000.0)  # another key
    assert auth.check_password("pw-pw-pw-pw") and not auth.check_password("pw-pw-pw-p")


async def test_demo_token_and_config(gateway_factory: GatewayFactory) -> None:
    base = make_config(demo=True)
    gw = await gateway_factory(base)
    # A secret was generated into the gateway's config (not the caller's), with a chat
    # namespace; the node verifies with it.
    assert base.token.hmac_secret == "" and base.namespaces == []
    secret = gw.config.token.hmac_secret
    assert len(secret) >= 32 and gw.node.config.token.hmac_secret == secret
    assert [ns.name for ns in gw.config.namespaces] == [demo.CHAT_NAMESPACE]
    assert "/demo" in _banner(gw)
    async with client(gw) as c:
        r = await c.get("/demo/token", params={"user": "alice"})
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        claims = jwt.decode(r.json()["token"], secret, algorithms=["HS256"])
        assert claims["sub"] == "alice" and claims["exp"] > claims["iat"]
        assert gw.node.tokens.verify(r.json()["token"])["sub"] == "alice"
        for bad in ("", "x" * 33, "<script>", "a\nb"):
            assert (await c.get("/demo/token", params={"user": bad})).status_code == 400


def test_demo_keeps_configured_namespace_and_secret() -> None:
    chat = open_namespace("chat", presence=False)
    cfg = make_config(demo=True, token__hmac_secret="configured-secret-123456", namespaces=[chat])
    out = demo.prepare_config(cfg)
    assert out.token.hmac_secret == "configured-secret-123456"
    assert out.namespaces == [chat]
    assert demo.prepare_config(make_config()) == make_config()


async def test_demo_serves_the_sdk(gateway_factory: GatewayFactory, web_sdk: Path) -> None:
    gw = await gateway_factory(make_config(demo=True))
    async with client(gw) as c:
        r = await c.get("/demo")
        assert r.status_code == 200
        assert f'data-ws-port="{gw.ws_port}"' in r.text and "/demo/centrifuge.js" in r.text
        r = await c.get("/demo/centrifuge.js")
        assert r.status_code == 200 and "javascript" in r.headers["content-type"]
        assert r.content == await asyncio.to_thread(web_sdk.read_bytes)
        assert (await c.get("/demo/static/demo.js")).status_code == 200
        assert (await c.get("/demo/static/../demo.py")).status_code == 404


async def test_demo_without_node_modules_says_what_to_run(
    gateway_factory: GatewayFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "web").mkdir()
    monkeypatch.setattr(demo, "find_web_dir", lambda: tmp_path / "web")
    gw = await gateway_factory(make_config(demo=True))
    async with client(gw) as c:
        r = await c.get("/demo")
        assert r.status_code == 503
        assert "npm ci --prefix web" in r.text and "{{" not in r.text
        assert (await c.get("/demo/centrifuge.js")).status_code == 404
