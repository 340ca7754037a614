"""JWTAuth: 401 missing_token, 403 invalid_token, 401 token_expired; state on success."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wshub.config import TokenConfig
from wshub.middleware.base import Request, Response, build_chain
from wshub.middleware.jwt import JWTAuth
from wshub.tokens import TokenVerifier

SECRET = "jwt-middleware-test-secret-0123456789abcdef"


def tok(key: Any = SECRET, alg: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    c: dict[str, Any] = {"sub": "u1", "exp": now + 60, **claims}
    return jwt.encode({k: v for k, v in c.items() if v is not None}, key, algorithm=alg)


def run(mw: JWTAuth, r: Request) -> Response | None:
    return build_chain([mw])(r)


@pytest.fixture
def mw() -> JWTAuth:
    return JWTAuth(TokenVerifier(TokenConfig(hmac_secret=SECRET, leeway=5)))


def test_success_sets_state(mw: JWTAuth, req: Callable[..., Request]) -> None:
    r = req(query=f"token={tok(chan=['a'])}")
    assert run(mw, r) is None
    assert r.state["user"] == "u1"
    assert r.state["claims"]["chan"] == ["a"]


def test_bearer_header(mw: JWTAuth, req: Callable[..., Request]) -> None:
    r = req(headers={"Authorization": f"Bearer {tok(sub=None)}"})
    assert run(mw, r) is None
    assert r.state["user"] == ""


def test_missing(mw: JWTAuth, req: Callable[..., Request]) -> None:
    resp = run(mw, req())
    assert resp is not None
    assert (resp.status, resp.body["error"]) == (401, "missing_token")
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_invalid_signature(mw: JWTAuth, req: Callable[..., Request]) -> None:
    r = req(query=f"token={tok(key=SECRET + 'x')}")
    resp = run(mw, r)
    assert resp is not None
    assert resp.status == 403
    assert resp.body == {"error": "invalid_token", "message": "invalid token"}
    assert r.state == {}


def test_expired(mw: JWTAuth, req: Callable[..., Request]) -> None:
    resp = run(mw, req(query=f"token={tok(exp=int(time.time()) - 60)}"))
    assert resp is not None
    assert resp.status == 401
    assert resp.body == {"error": "token_expired", "message": "token expired"}
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


def test_expired_within_leeway_passes(mw: JWTAuth, req: Callable[..., Request]) -> None:
    assert run(mw, req(query=f"token={tok(exp=int(time.time()) - 2)}")) is None


def test_claim_failures_are_403(req: Callable[..., Request]) -> None:
    v = TokenVerifier(TokenConfig(hmac_secret=SECRET, issuer="iss", audience="aud"))
    m = JWTAuth(v)
    ok = tok(iss="iss", aud="aud")
    assert run(m, req(query=f"token={ok}")) is None
    for bad in (
        tok(iss="other", aud="aud"),
        tok(iss="iss", aud="other"),
        tok(iss="iss", aud="aud", nbf=int(time.time()) + 600),
        "not-a-jwt",
    ):
        resp = run(m, req(query=f"token={bad}"))
        assert resp is not None and (resp.status, resp.body["error"]) == (403, "invalid_token")


def test_rs256_and_es256(req: Callable[..., Request]) -> None:
    rk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ek = ec.generate_private_key(ec.SECP256R1())

    def pem(k: Any) -> str:
        return (
            k.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    m = JWTAuth(TokenVerifier(TokenConfig(rsa_public_key=pem(rk), ecdsa_public_key=pem(ek))))
    assert run(m, req(query=f"token={tok(key=rk, alg='RS256')}")) is None
    assert run(m, req(query=f"token={tok(key=ek, alg='ES256')}")) is None
    # HS256 not accepted at all here
    resp = run(m, req(query=f"token={tok()}"))
    assert resp is not None and resp.status == 403
    # alg none
    none = jwt.encode({"sub": "x"}, None, algorithm="none")
    resp = run(m, req(query=f"token={none}"))
    assert resp is not None and resp.status == 403
