"""RateLimit: token bucket per client IP with a fake clock; bounded memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from wshub.middleware.base import Request, build_chain
from wshub.middleware.ratelimit import RateLimit


def statuses(rl: RateLimit, req: Callable[..., Request], n: int, ip: str = "1.1.1.1") -> list[Any]:
    chain = build_chain([rl])
    out = []
    for _ in range(n):
        resp = chain(req(ip=ip))
        out.append(None if resp is None else resp.status)
    return out


def test_burst_then_429(clock: Any, req: Callable[..., Request]) -> None:
    rl = RateLimit(rate=1, burst=3, clock=clock)
    assert statuses(rl, req, 3) == [None, None, None]
    resp = build_chain([rl])(req(ip="1.1.1.1"))
    assert resp is not None
    assert resp.status == 429
    assert resp.body == {"error": "rate_limited", "message": "too many connection attempts"}
    assert resp.headers == {"Retry-After": "1"}


def test_refill(clock: Any, req: Callable[..., Request]) -> None:
    rl = RateLimit(rate=2, burst=2, clock=clock)
    assert statuses(rl, req, 3) == [None, None, 429]
    clock.advance(0.5)  # one token back
    assert statuses(rl, req, 2) == [None, 429]
    clock.advance(10)  # capped at burst
    assert statuses(rl, req, 3) == [None, None, 429]


def test_retry_after_from_bucket(clock: Any, req: Callable[..., Request]) -> None:
    rl = RateLimit(rate=0.1, burst=1, clock=clock)  # one token per 10 s
    chain = build_chain([rl])
    assert chain(req()) is None
    resp = chain(req())
    assert resp is not None and resp.headers["Retry-After"] == "10"
    clock.advance(2.5)
    resp = chain(req())
    assert resp is not None and resp.headers["Retry-After"] == "8"  # ceil(7.5)
    clock.advance(7.5)
    assert chain(req()) is None


def test_retry_after_at_least_one(clock: Any, req: Callable[..., Request]) -> None:
    rl = RateLimit(rate=1000, burst=1, clock=clock)
    chain = build_chain([rl])
    chain(req())
    resp = chain(req())
    assert resp is not None and resp.headers["Retry-After"] == "1"


def test_per_ip_and_uses_client_ip(clock: Any, req: Callable[..., Request]) -> None:
    rl = RateLimit(rate=1, burst=1, clock=clock)
    chain = build_chain([rl])
    assert chain(req(ip="10.0.0.1", client_ip="1.1.1.1")) is None
    assert chain(req(ip="10.0.0.1", client_ip="2.2.2.2")) is None  # same proxy, other client
    resp = chain(req(ip="10.0.0.2", client_ip="1.1.1.1"))  # other proxy, same client
    assert resp is not None and resp.status == 429


def test_memory_bounded(clock: Any) -> None:
    rl = RateLimit(rate=1, burst=5, clock=clock, max_ips=100)
    for i in range(1000):
        rl.take(f"10.0.{i // 256}.{i % 256}")
    assert len(rl) == 100


def test_refilled_buckets_are_evicted(clock: Any) -> None:
    rl = RateLimit(rate=1, burst=2, clock=clock)
    for i in range(10):
        rl.take(f"10.0.0.{i}")
    assert len(rl) == 10
    clock.advance(5)  # all full again
    for _ in range(5):
        rl.take("192.0.2.1")
    assert len(rl) == 1


def test_hot_ip_survives_eviction_of_idle_ones(clock: Any) -> None:
    rl = RateLimit(rate=1, burst=2, clock=clock, max_ips=3)
    assert rl.take("hot") == 0 and rl.take("hot") == 0
    for ip in ("a", "b"):
        rl.take(ip)
    rl.take("hot")  # refused, but becomes most recent
    rl.take("c")  # evicts the LRU ("a"), not "hot"
    assert rl.take("hot") > 0


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateLimit(rate=0, burst=1)
