"""AccessLog: open/close/rejected lines, with no credential in any formatted line."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from wshub.logs import JsonFormatter, ScrubFilter
from wshub.middleware.accesslog import AccessLog
from wshub.middleware.base import Request, Response, build_chain, reject

STATIC = "static-secret-token-abcdef"
BEARER = "bearer-secret-credential-123"
JWT = jwt.encode(
    {"sub": "u", "exp": int(time.time()) + 60},
    "some-signing-key-0123456789abcdef0123",
    algorithm="HS256",
)


class Capture:
    def __init__(self) -> None:
        self.buf = io.StringIO()

    @property
    def lines(self) -> list[str]:
        return self.buf.getvalue().splitlines()

    @property
    def docs(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.lines]


@pytest.fixture
def cap() -> Iterator[Capture]:
    c = Capture()
    handler = logging.StreamHandler(c.buf)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ScrubFilter())
    log = logging.getLogger("wshub.access")
    old = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield c
    log.removeHandler(handler)
    log.setLevel(old)


def set_user(r: Request, call_next: Any) -> Response | None:
    r.state["user"] = "alice"
    return call_next(r)


def secret_request(req: Callable[..., Request]) -> Request:
    return req(
        query=f"token={STATIC}&cf=1&t={JWT}&access_token={JWT}",
        headers={
            "Authorization": f"Bearer {BEARER}",
            "Cookie": f"sid={STATIC}",
            "Origin": "https://example.com",
            "User-Agent": f"ua/1.0 {JWT}",
            "Sec-WebSocket-Protocol": f"centrifuge-json, {JWT}",
        },
        ip="10.0.0.1",
        client_ip="198.51.100.4",
        conn_id="conn-9",
    )


def assert_clean(c: Capture) -> None:
    text = c.buf.getvalue()
    assert text
    for secret in (STATIC, BEARER, JWT, JWT.split(".")[1], JWT.split(".")[2]):
        assert secret not in text


def test_open_and_close(
    cap: Capture, req: Callable[..., Request], info: Callable[..., Any]
) -> None:
    r = secret_request(req)
    assert build_chain([AccessLog(log_headers=True), set_user])(r) is None
    r.run_close_callbacks(info("conn-9", code=3000, reason="bye", duration=12.34567))
    opened, closed = cap.docs
    assert opened["logger"] == "wshub.access"
    assert opened["event"] == opened["msg"] == "connection_open"
    assert opened["id"] == "conn-9"
    assert opened["ip"] == "198.51.100.4" and opened["peer"] == "10.0.0.1"
    assert opened["path"] == "/connection/websocket"
    assert opened["user"] == "alice"
    assert opened["origin"] == "https://example.com"
    assert opened["query"].startswith("token=[REDACTED]&cf=1&")
    assert opened["headers"]["Authorization"] == "Bearer [REDACTED]"
    assert closed["event"] == "connection_close"
    assert {k: closed[k] for k in ("id", "ip", "user", "code", "reason", "duration")} == {
        "id": "conn-9",
        "ip": "198.51.100.4",
        "user": "alice",
        "code": 3000,
        "reason": "bye",
        "duration": 12.346,
    }
    assert (closed["messages_in"], closed["messages_out"]) == (3, 4)
    assert (closed["bytes_in"], closed["bytes_out"]) == (30, 40)
    assert_clean(cap)


def test_rejected(cap: Capture, req: Callable[..., Request]) -> None:
    def deny(r: Request, call_next: Any) -> Response | None:
        return reject(403, "invalid_token", "invalid token")

    r = secret_request(req)
    resp = build_chain([AccessLog(log_headers=True), deny])(r)
    assert resp is not None and resp.status == 403
    (doc,) = cap.docs
    assert doc["event"] == "upgrade_rejected"
    assert doc["level"] == "info"
    assert (doc["status"], doc["error"]) == (403, "invalid_token")
    assert doc["ip"] == "198.51.100.4"
    assert r._close_callbacks == []  # nothing to close
    assert_clean(cap)


def test_exception_logged_as_500_and_reraised(cap: Capture, req: Callable[..., Request]) -> None:
    def boom(r: Request, call_next: Any) -> Response | None:
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        build_chain([AccessLog(), boom])(secret_request(req))
    (doc,) = cap.docs
    assert (doc["level"], doc["status"], doc["error"]) == ("warning", 500, "internal_error")
    assert_clean(cap)


def test_caplog_records_carry_fields(
    caplog: pytest.LogCaptureFixture, req: Callable[..., Request]
) -> None:
    caplog.set_level(logging.INFO, logger="wshub.access")
    build_chain([AccessLog()])(req(query=f"token={STATIC}"))
    (rec,) = [r for r in caplog.records if r.name == "wshub.access"]
    assert rec.__dict__["event"] == "connection_open"
    assert STATIC not in rec.__dict__["query"]


def test_disabled_logger_costs_nothing(req: Callable[..., Request]) -> None:
    log = logging.getLogger("wshub.access.test-disabled")
    log.setLevel(logging.ERROR)
    assert build_chain([AccessLog(log)])(req()) is None
