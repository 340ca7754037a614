"""The coarse timer wheel behind every connection's heartbeat and close deadline."""

from __future__ import annotations

import asyncio
import logging

import pytest

from wshub.transport.timers import TimerWheel


async def test_callbacks_run_no_sooner_than_their_delay_and_at_most_a_slot_late() -> None:
    loop = asyncio.get_running_loop()
    wheel = TimerWheel(loop, resolution=0.05)
    ran: dict[float, float] = {}
    start = loop.time()
    delays = [0.0, 0.01, 0.049, 0.05, 0.051, 0.12, 0.2]
    for d in delays:
        wheel.call_later(d, lambda d=d: ran.__setitem__(d, loop.time() - start))
    for _ in range(100):
        if len(ran) == len(delays):
            break
        await asyncio.sleep(0.05)
    assert sorted(ran) == sorted(delays)
    for d, at in ran.items():
        # uvloop and asyncio may wake a timer up to a millisecond early
        assert at >= d - 0.002, (d, at)
        assert at < d + 0.05 + 0.2, (d, at)  # a slot late, plus a loaded machine's lag


async def test_many_timers_share_one_loop_timer_per_slot() -> None:
    loop = asyncio.get_running_loop()
    wheel = TimerWheel(loop, resolution=0.5)
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1

    for _ in range(1000):
        wheel.call_later(0.1, tick)
    assert len(wheel._handles) <= 2  # the deadlines straddle at most one slot boundary
    assert wheel.pending() == 1000
    for _ in range(100):
        if count == 1000:
            break
        await asyncio.sleep(0.05)
    assert count == 1000
    assert wheel.pending() == 0 and not wheel._handles


async def test_cancel_before_and_after_running() -> None:
    loop = asyncio.get_running_loop()
    wheel = TimerWheel(loop, resolution=0.02)
    ran: list[str] = []
    a = wheel.call_later(0.03, lambda: ran.append("a"))
    b = wheel.call_later(0.03, lambda: ran.append("b"))
    a.cancel()
    a.cancel()
    assert wheel.pending() == 1
    await asyncio.sleep(0.3)
    b.cancel()  # after it ran: harmless
    assert ran == ["b"]


async def test_a_failing_callback_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    wheel = TimerWheel(loop, resolution=0.02)
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("boom")

    wheel.call_later(0.01, lambda: ran.append(1))
    wheel.call_later(0.01, boom)
    wheel.call_later(0.01, lambda: ran.append(2))
    with caplog.at_level(logging.ERROR, logger="wshub.transport"):
        await asyncio.sleep(0.3)
    assert ran == [1, 2]
    assert any("timer callback failed" in r.getMessage() for r in caplog.records)


async def test_close_cancels_everything_pending() -> None:
    loop = asyncio.get_running_loop()
    wheel = TimerWheel(loop, resolution=0.02)
    ran: list[int] = []
    for i in range(10):
        wheel.call_later(0.02 * i, lambda i=i: ran.append(i))
    wheel.close()
    await asyncio.sleep(0.3)
    assert ran == []
    assert wheel.pending() == 0


async def test_a_delay_too_long_to_schedule_never_fires() -> None:
    # ping_interval = inf (valid TOML) must not break opening a connection
    wheel = TimerWheel(asyncio.get_running_loop())
    timer = wheel.call_later(float("inf"), lambda: None)
    assert wheel.pending() == 0
    timer.cancel()
