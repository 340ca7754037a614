"""Helpers for driving pre-upgrade middleware with Request objects (no sockets)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from wshub.middleware.base import CloseInfo, Request


def make_request(
    *,
    path: str = "/connection/websocket",
    query: str = "",
    headers: Mapping[str, str] | None = None,
    ip: str = "203.0.113.7",
    client_ip: str | None = None,
    conn_id: str = "c1",
) -> Request:
    return Request(
        method="GET",
        path=path,
        query_string=query,
        headers=dict(headers or {}),
        peer_ip=ip,
        client_ip=client_ip,
        conn_id=conn_id,
    )


def close_info(conn_id: str = "c1", **kw: Any) -> CloseInfo:
    base: dict[str, Any] = {
        "code": 1000,
        "reason": "",
        "duration": 1.5,
        "messages_in": 3,
        "messages_out": 4,
        "bytes_in": 30,
        "bytes_out": 40,
    }
    base.update(kw)
    return CloseInfo(conn_id=conn_id, **base)


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def req() -> Callable[..., Request]:
    return make_request


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def info() -> Callable[..., CloseInfo]:
    return close_info
