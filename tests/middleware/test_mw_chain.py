"""default_chain: order, what each config turns on, and the composed behaviour."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from wshub.config import (
    AuthConfig,
    Config,
    LimitsConfig,
    LogConfig,
    OriginConfig,
    TokenConfig,
)
from wshub.errors import ConfigError
from wshub.logs import JsonFormatter
from wshub.middleware import (
    AccessLog,
    ConnectionCaps,
    JWTAuth,
    OriginCheck,
    RateLimit,
    Recover,
    TokenAuth,
    build_chain,
    default_chain,
)
from wshub.middleware.base import Request, Response

SECRET = "chain-test-hmac-secret-0123456789abcdef"
STATIC = "chain-static-token-0001"


def full_config(**auth: Any) -> Config:
    return Config(
        origin=OriginConfig(allowed=["https://app.test"]),
        limits=LimitsConfig(connect_rate=1, connect_burst=3, max_connections=2),
        auth=AuthConfig(**auth),
        token=TokenConfig(hmac_secret=SECRET),
    )


def token(**kw: Any) -> str:
    return jwt.encode({"sub": "bob", "exp": int(time.time()) + 60, **kw}, SECRET, "HS256")


def browser(req: Callable[..., Request], q: str = "", ip: str = "1.1.1.1") -> Request:
    return req(query=q, headers={"Origin": "https://app.test"}, ip=ip)


def caps_of(chain: list[Any]) -> ConnectionCaps:
    (c,) = [m for m in chain if isinstance(m, ConnectionCaps)]
    return c


def test_minimal_chain() -> None:
    chain = default_chain(Config())
    assert [type(m) for m in chain] == [Recover, AccessLog]
    assert [type(m) for m in default_chain(Config(log=LogConfig(access=False)))] == [Recover]


def test_full_order() -> None:
    def extra(r: Request, call_next: Any) -> Response | None:
        return call_next(r)

    chain = default_chain(full_config(jwt=True), extra=[extra])
    assert [type(m) for m in chain[:-1]] == [
        Recover,
        AccessLog,
        OriginCheck,
        RateLimit,
        ConnectionCaps,
        JWTAuth,
    ]
    assert chain[-1] is extra


def test_jwt_without_keys_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as e:
        default_chain(Config(auth=AuthConfig(jwt=True)))
    assert e.value.key == "auth.jwt"


def test_token_validator_turns_token_auth_on(req: Callable[..., Request]) -> None:
    chain = default_chain(Config(), token_validator=lambda t: {"sub": t} if t == "ok" else None)
    assert isinstance(chain[-1], TokenAuth)
    r = req(query="token=ok")
    assert build_chain(chain)(r) is None and r.state["user"] == "ok"


def test_composed_flow(req: Callable[..., Request], info: Callable[..., Any]) -> None:
    seen: list[str] = []

    def app(r: Request, call_next: Any) -> Response | None:
        seen.append(r.state["user"])
        return call_next(r)

    chain_list = default_chain(full_config(jwt=True), extra=[app])
    caps = caps_of(chain_list)
    chain = build_chain(chain_list)

    # cross-site page: refused before spending rate or capacity
    evil = req(query=f"token={token()}", headers={"Origin": "https://evil.test"})
    resp = chain(evil)
    assert resp is not None and (resp.status, resp.body["error"]) == (403, "origin_not_allowed")
    rl = next(m for m in chain_list if isinstance(m, RateLimit))
    assert len(rl) == 0

    # bad tokens are refused by auth and never counted by caps
    for q in ("", "token=garbage", f"token={token(exp=int(time.time()) - 60)}"):
        resp = chain(browser(req, q, ip="2.2.2.2"))
        assert resp is not None and resp.status in (401, 403)
    assert caps.total == 0
    # ... but they did spend the rate limit (brute-force brake)
    resp = chain(browser(req, f"token={token()}", ip="2.2.2.2"))
    assert resp is not None and resp.status == 429 and "Retry-After" in resp.headers

    # good tokens pass, are counted, and reach the app middleware with the user set
    r1 = browser(req, f"token={token()}", ip="3.3.3.3")
    r2 = browser(req, f"token={token()}", ip="4.4.4.4")
    assert chain(r1) is None and chain(r2) is None
    assert seen == ["bob", "bob"] and caps.total == 2
    resp = chain(browser(req, f"token={token()}", ip="5.5.5.5"))
    assert resp is not None and resp.status == 503
    r1.run_close_callbacks(info())
    assert caps.total == 1
    assert chain(browser(req, f"token={token()}", ip="5.5.5.5")) is None


def test_exception_in_extra_is_500_and_not_counted(req: Callable[..., Request]) -> None:
    def broken(r: Request, call_next: Any) -> Response | None:
        raise RuntimeError("secret detail")

    chain_list = default_chain(full_config(tokens=[STATIC]), extra=[broken])
    resp = build_chain(chain_list)(browser(req, f"token={STATIC}"))
    assert resp is not None and resp.status == 500
    assert b"secret detail" not in resp.body_bytes()
    assert caps_of(chain_list).total == 0


def test_static_and_jwt_either_works(req: Callable[..., Request]) -> None:
    chain = build_chain(
        default_chain(
            Config(
                auth=AuthConfig(tokens=[STATIC], jwt=True), token=TokenConfig(hmac_secret=SECRET)
            )
        )
    )
    r = req(query=f"token={STATIC}")
    assert chain(r) is None and r.state == {"user": "", "claims": {}}
    r = req(headers={"Authorization": f"Bearer {token()}"})
    assert chain(r) is None and r.state["user"] == "bob"
    resp = chain(req(query="token=nope"))
    assert resp is not None and (resp.status, resp.body["error"]) == (403, "invalid_token")
    resp = chain(req(query=f"token={token(exp=int(time.time()) - 60)}"))
    assert resp is not None and (resp.status, resp.body["error"]) == (401, "token_expired")
    resp = chain(req())
    assert resp is not None and (resp.status, resp.body["error"]) == (401, "missing_token")


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("wshub.access")
    old = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield buf
    log.removeHandler(handler)
    log.setLevel(old)


def test_access_log_of_the_whole_chain_has_no_token(
    access_lines: io.StringIO, req: Callable[..., Request], info: Callable[..., Any]
) -> None:
    chain = build_chain(default_chain(full_config(jwt=True)))
    good, bad = token(), token(exp=int(time.time()) - 60)
    r = req(query=f"token={good}", headers={"Origin": "https://app.test"})
    assert chain(r) is None
    r.run_close_callbacks(info())
    chain(req(headers={"Origin": "https://app.test", "Authorization": f"Bearer {bad}"}))
    chain(req(query=f"token={good}", headers={"Origin": "https://evil.test"}))
    text = access_lines.getvalue()
    events = [json.loads(x)["event"] for x in text.splitlines()]
    assert events == ["connection_open", "connection_close", "upgrade_rejected", "upgrade_rejected"]
    for secret in (good, bad, good.split(".")[2], bad.split(".")[2]):
        assert secret not in text
