"""ConnectionCaps: counts only upgrades that go ahead; releases exactly once on close."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from wshub.middleware.base import Request, Response, build_chain, reject
from wshub.middleware.caps import ConnectionCaps


def test_global_cap(req: Callable[..., Request], info: Callable[..., Any]) -> None:
    caps = ConnectionCaps(max_connections=2, retry_after=7)
    chain = build_chain([caps])
    r1, r2, r3 = req(ip="1.1.1.1"), req(ip="2.2.2.2"), req(ip="3.3.3.3")
    assert chain(r1) is None and chain(r2) is None
    assert caps.total == 2
    resp = chain(r3)
    assert resp is not None
    assert resp.status == 503
    assert resp.body == {"error": "over_capacity", "message": "too many connections"}
    assert resp.headers == {"Retry-After": "7"}
    assert caps.total == 2
    r1.run_close_callbacks(info())
    assert caps.total == 1
    assert chain(req(ip="3.3.3.3")) is None


def test_per_ip_cap(req: Callable[..., Request], info: Callable[..., Any]) -> None:
    caps = ConnectionCaps(max_per_ip=2)
    chain = build_chain([caps])
    a = [req(ip="1.1.1.1") for _ in range(3)]
    assert [chain(r) is None for r in a] == [True, True, False]
    assert chain(req(ip="2.2.2.2")) is None
    assert caps.count("1.1.1.1") == 2 and caps.count("2.2.2.2") == 1
    assert caps.snapshot() == {"1.1.1.1": 2, "2.2.2.2": 1}
    a[0].run_close_callbacks(info())
    a[1].run_close_callbacks(info())
    assert caps.count("1.1.1.1") == 0 and "1.1.1.1" not in caps.snapshot()
    assert caps.total == 1


def test_release_exactly_once(req: Callable[..., Request], info: Callable[..., Any]) -> None:
    caps = ConnectionCaps(max_connections=10)
    r = req()
    assert build_chain([caps])(r) is None
    callbacks = list(r._close_callbacks)
    assert len(callbacks) == 1
    r.run_close_callbacks(info())
    r.run_close_callbacks(info())
    callbacks[0](info())  # even a direct second call is a no-op
    assert caps.total == 0 and caps.snapshot() == {}


def test_refusal_further_in_is_not_counted(req: Callable[..., Request]) -> None:
    caps = ConnectionCaps(max_connections=1)

    def deny(r: Request, call_next: Any) -> Response | None:
        return reject(403, "invalid_token")

    chain = build_chain([caps, deny])
    for _ in range(5):
        resp = chain(req())
        assert resp is not None and resp.status == 403  # never 503
    assert caps.total == 0


def test_exception_further_in_releases(req: Callable[..., Request]) -> None:
    caps = ConnectionCaps(max_connections=1)

    def boom(r: Request, call_next: Any) -> Response | None:
        raise RuntimeError("x")

    chain = build_chain([caps, boom])
    r = req()
    with pytest.raises(RuntimeError):
        chain(r)
    assert caps.total == 0 and r._close_callbacks == []


def test_disabled_caps_count_but_never_refuse(req: Callable[..., Request]) -> None:
    caps = ConnectionCaps()
    chain = build_chain([caps])
    for _ in range(50):
        assert chain(req()) is None
    assert caps.total == 50
