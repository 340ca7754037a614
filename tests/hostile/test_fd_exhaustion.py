"""Running out of file descriptors: a ``wshub serve`` with RLIMIT_NOFILE 256. Below the fd
limit the connection cap answers 503 (with Retry-After); at the fd limit itself the
connections it cannot take are closed at once. Either way the process survives, does not
spin while refused clients keep trying, does not flood its log, and returns to its
baseline once the clients leave."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from hostile_helpers import (
    OPEN_NAMESPACE,
    GatewayProcess,
    MiniWS,
    Refused,
    SpawnGateway,
    upgrade_request,
    wait_for,
)

pytestmark = pytest.mark.slow

NOFILE = 256
CAP = 200
HAMMERS, PAUSE, SECONDS = 20, 0.1, 3.0


async def hammer(port: int, outcomes: Counter[str]) -> None:
    """Refused clients that keep trying (no backoff) for SECONDS."""
    deadline = time.monotonic() + SECONDS

    async def one() -> None:
        while time.monotonic() < deadline:
            try:
                resp = await upgrade_request(port, "/echo", timeout=3)
                outcomes[str(resp.status)] += 1
                if resp.status == 503:
                    assert int(resp.headers["retry-after"]) >= 1
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                outcomes[type(exc).__name__] += 1
            await asyncio.sleep(PAUSE)

    await asyncio.gather(*(one() for _ in range(HAMMERS)))


async def echo_ok(c: MiniWS, text: str) -> None:
    c.send_text(text)
    assert await c.recv(3) == text.encode()


def cpu_share(gw: GatewayProcess, cpu0: float, t0: float) -> float:
    return (gw.cpu_seconds() - cpu0) / (time.monotonic() - t0)


async def test_connection_cap_below_the_fd_limit(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway(
        {
            "limits": {"max_connections": CAP},
            "client": {"allow_anonymous": True},
            "namespaces": [OPEN_NAMESPACE],
        },
        nofile=NOFILE,
    )
    base_fds = gw.fd_count()
    held = [await MiniWS.connect(gw.ws_port, "/echo") for _ in range(CAP)]
    with pytest.raises(Refused) as refused:
        await MiniWS.connect(gw.ws_port, "/echo")
    assert refused.value.response.status == 503
    gw.mark_log()
    outcomes: Counter[str] = Counter()
    cpu0, t0 = gw.cpu_seconds(), time.monotonic()
    await hammer(gw.ws_port, outcomes)
    share = cpu_share(gw, cpu0, t0)
    attempts = sum(outcomes.values())
    lines = gw.new_log_lines()
    print(
        f"\ncap {CAP} at RLIMIT_NOFILE {NOFILE}: {dict(outcomes)} in {SECONDS:.0f} s, "
        f"CPU {share:.1%}, {len(lines)} log lines"
    )
    assert outcomes == {"503": attempts}
    assert share < 0.25  # no spinning: the cost of ~200 refusals a second
    # Bounded log: a burst, then a few lines a second, each saying how many it stands for.
    assert len(lines) <= 20 + 5 * SECONDS + 5
    assert all('"upgrade_rejected"' in line for line in lines)
    assert any('"suppressed"' in line for line in lines)
    await echo_ok(held[0], "still served")
    for c in held:
        c.close()
    assert await wait_for(lambda: gw.metric("wshub_connections") == 0, 5)
    assert await wait_for(lambda: gw.fd_count() <= base_fds, 5)
    c = await MiniWS.connect(gw.ws_port, "/echo")  # admitted again
    await echo_ok(c, "back")
    c.close()


async def test_hitting_the_fd_limit_itself(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway(
        {"client": {"allow_anonymous": True}, "namespaces": [OPEN_NAMESPACE]}, nofile=NOFILE
    )
    base_fds = gw.fd_count()
    held: list[MiniWS] = []
    dropped = 0
    for _ in range(NOFILE + 40):
        try:
            c = await MiniWS.connect(gw.ws_port, "/echo", timeout=3)
            await echo_ok(c, "x")
            held.append(c)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            dropped += 1
    assert gw.alive()
    assert gw.fd_count() == NOFILE and dropped >= 40
    gw.mark_log()
    outcomes: Counter[str] = Counter()
    cpu0, t0 = gw.cpu_seconds(), time.monotonic()
    await hammer(gw.ws_port, outcomes)
    share = cpu_share(gw, cpu0, t0)
    lines = gw.new_log_lines()
    print(
        f"\nat the fd limit: {len(held)} served, {dropped} dropped; while others keep "
        f"trying: {dict(outcomes)}, CPU {share:.1%}, {len(lines)} log lines"
    )
    assert "101" not in outcomes
    assert share < 0.25
    assert len(lines) <= 20 + 5 * SECONDS + 5
    await echo_ok(held[0], "still served")  # the connections it has are fine
    for c in held:
        c.close()
    assert await wait_for(lambda: gw.metric("wshub_connections") == 0, 5)
    assert await wait_for(lambda: gw.fd_count() <= base_fds, 5)
    c = await MiniWS.connect(gw.ws_port, "/echo")
    await echo_ok(c, "recovered")
    c.close()
    assert gw.alive()
