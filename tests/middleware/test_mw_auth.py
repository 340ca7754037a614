"""TokenAuth: static tokens and validator; 401 missing_token / 403 invalid_token."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from wshub.middleware.auth import TokenAuth, extract_token
from wshub.middleware.base import Request, Response, build_chain

STATIC = "static-token-0123456789"


def run(mw: Any, request: Request) -> tuple[Response | None, list[Request]]:
    seen: list[Request] = []

    def tail(r: Request, call_next: Any) -> Response | None:
        seen.append(r)
        return call_next(r)

    return build_chain([mw, tail])(request), seen


def test_missing_token_401(req: Callable[..., Request]) -> None:
    resp, seen = run(TokenAuth([STATIC]), req())
    assert resp is not None and not seen
    assert resp.status == 401
    assert orjson.loads(resp.body_bytes()) == {
        "error": "missing_token",
        "message": "authentication required",
    }
    assert resp.headers == {"WWW-Authenticate": "Bearer"}


def test_empty_query_value_and_other_scheme_count_as_missing(req: Callable[..., Request]) -> None:
    r = req(query="token=", headers={"Authorization": "Basic dXNlcjpwdw=="})
    resp, _ = run(TokenAuth([STATIC]), r)
    assert resp is not None and resp.status == 401


def test_invalid_token_403(req: Callable[..., Request]) -> None:
    r = req(query="token=wrong")
    resp, seen = run(TokenAuth([STATIC]), r)
    assert resp is not None and not seen
    assert resp.status == 403
    assert resp.body == {"error": "invalid_token", "message": "invalid token"}
    assert resp.headers == {}
    assert "user" not in r.state and "claims" not in r.state


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        (f"token={STATIC}", {}),
        ("", {"Authorization": f"Bearer {STATIC}"}),
        ("", {"authorization": f"bearer  {STATIC} "}),
        ("token=", {"Authorization": f"Bearer {STATIC}"}),
    ],
)
def test_static_token_passes(
    req: Callable[..., Request], query: str, headers: dict[str, str]
) -> None:
    r = req(query=query, headers=headers)
    resp, seen = run(TokenAuth(["other-token", STATIC]), r)
    assert resp is None and seen == [r]
    assert r.state == {"user": "", "claims": {}}


def test_custom_query_param_and_raw_header(req: Callable[..., Request]) -> None:
    mw = TokenAuth([STATIC], query_param="access", header="X-Token")
    assert run(mw, req(query=f"access={STATIC}"))[0] is None
    assert run(mw, req(headers={"x-token": STATIC}))[0] is None
    resp, _ = run(mw, req(query=f"token={STATIC}"))
    assert resp is not None and resp.status == 401


def test_query_param_wins_over_header(req: Callable[..., Request]) -> None:
    r = req(query="token=from-query", headers={"Authorization": "Bearer from-header"})
    assert extract_token(r, "token", "Authorization") == "from-query"


def test_compare_digest_used_against_every_token(
    req: Callable[..., Request], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    run(TokenAuth(["first-token-aaaa", STATIC, "third-token-cccc"]), req(query=f"token={STATIC}"))
    assert len(calls) == 3  # no early exit on the match


def test_validator_claims(req: Callable[..., Request]) -> None:
    def validator(token: str) -> dict[str, Any] | None:
        return {"sub": "alice", "role": "admin"} if token == "good" else None

    r = req(query="token=good")
    resp, _ = run(TokenAuth(validator=validator), r)
    assert resp is None
    assert r.state == {"user": "alice", "claims": {"sub": "alice", "role": "admin"}}

    r2 = req(query="token=bad")
    resp2, _ = run(TokenAuth(validator=validator), r2)
    assert resp2 is not None and resp2.status == 403 and resp2.body["error"] == "invalid_token"
    assert r2.state == {}


def test_validator_without_sub_and_non_str_sub(req: Callable[..., Request]) -> None:
    r = req(query="token=x")
    run(TokenAuth(validator=lambda t: {"scope": "a"}), r)
    assert r.state["user"] == ""
    r2 = req(query="token=x")
    run(TokenAuth(validator=lambda t: {"sub": 7}), r2)
    assert r2.state["user"] == "7"


def test_static_checked_before_validator(req: Callable[..., Request]) -> None:
    called: list[str] = []

    def validator(token: str) -> dict[str, Any] | None:
        called.append(token)
        return None

    mw = TokenAuth([STATIC], validator=validator)
    assert run(mw, req(query=f"token={STATIC}"))[0] is None
    assert called == []
    resp, _ = run(mw, req(query="token=nope"))
    assert resp is not None and resp.status == 403 and called == ["nope"]


def test_needs_tokens_or_validator() -> None:
    with pytest.raises(ValueError):
        TokenAuth([])
