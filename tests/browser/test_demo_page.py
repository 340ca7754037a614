"""The /demo chat in headless Chromium: two pages on the real centrifuge SDK, presence,
join/leave, history, and recovery after one page goes offline."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from support import GatewayFactory, http_url, make_config
from wshub.api.demo import CHAT_NAMESPACE
from wshub.gateway import Gateway
from wshub.protocol.session import ClientSession

pytestmark = pytest.mark.browser
log = logging.getLogger(__name__)

TIMEOUT = 10_000  # ms, for Playwright's waits
ROOM = "lobby"
CHANNEL = f"{CHAT_NAMESPACE}:{ROOM}"


async def join(context: Any, gw: Gateway, user: str) -> Any:
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT)
    await page.goto(http_url(gw, "/demo"))
    await page.fill("#join-user", user)
    await page.fill("#join-room", ROOM)
    await page.click("#join-form button[type=submit]")
    await page.locator("#conn-state", has_text="connected").wait_for()
    await page.locator("#sub-state", has_text="subscribed").wait_for()
    return page


async def say(page: Any, text: str) -> None:
    await page.fill("#compose-text", text)
    await page.click("#compose button[type=submit]")
    await expect(page.locator("#compose-text")).to_have_value("")


def messages(page: Any, text: str) -> Any:
    return page.locator("#messages li.msg", has=page.locator(".text", has_text=text))


async def wait_presence(page: Any, users: list[str]) -> None:
    """The page's presence list shows exactly ``users`` (sorted by name)."""
    await expect(page.locator("#presence li")).to_have_text(users)


def connected_users(gw: Gateway) -> set[str]:
    return {
        c.ctx.user
        for c in gw.server.connections.values()
        if isinstance(c.ctx, ClientSession) and c.ctx.connected
    }


async def test_demo_chat_two_users_with_recovery(
    gateway_factory: GatewayFactory, browser: Any, web_sdk: Path, shots: Path
) -> None:
    gw = await gateway_factory(make_config(demo=True))
    # The demo brings its own token secret and chat namespace.
    assert gw.config.token.hmac_secret
    opts = gw.node.channels.options(CHANNEL)
    assert opts is not None and opts.presence and opts.join_leave and opts.history_size > 0

    ctx_a = await browser.new_context(viewport={"width": 1100, "height": 760})
    ctx_b = await browser.new_context(viewport={"width": 1100, "height": 760})
    try:
        # Alice joins and talks before Bob is there: Bob gets it from history.
        alice = await join(ctx_a, gw, "alice")
        await say(alice, "anyone here?")
        bob = await join(ctx_b, gw, "bob")
        await messages(bob, "anyone here?").and_(bob.locator(".history")).wait_for()

        # Presence and join on both sides.
        await alice.locator("#messages li.sys", has_text="bob joined").wait_for()
        await wait_presence(alice, ["alice", "bob"])
        await wait_presence(bob, ["alice", "bob"])

        # Messages both ways.
        await say(alice, "hello bob")
        await messages(bob, "hello bob").wait_for()
        await say(bob, "hi alice")
        await messages(alice, "hi alice").wait_for()
        assert await messages(alice, "hi alice").get_attribute("data-author") == "bob"

        # Bob goes offline. The SDK hears the browser's offline event and closes its socket;
        # if the server did not see the socket go, it is closed from the server side.
        await ctx_b.set_offline(True)
        await bob.locator("#conn-state", has_text="connecting").wait_for()
        dropped = False
        for _ in range(50):
            if "bob" not in connected_users(gw):
                dropped = True
                break
            await asyncio.sleep(0.1)
        if not dropped:
            log.warning("offline emulation left the WebSocket open: aborting it server-side")
            for conn in list(gw.server.connections.values()):
                if isinstance(conn.ctx, ClientSession) and conn.ctx.user == "bob":
                    conn.abort()
        await alice.locator("#messages li.sys", has_text="bob left").wait_for()
        await wait_presence(alice, ["alice"])

        # Published while Bob is away.
        missed = ["while you were out 1", "while you were out 2", "while you were out 3"]
        for text in missed:
            await say(alice, text)
        await asyncio.sleep(0.3)
        for text in missed:
            assert await messages(bob, text).count() == 0

        # Back online: the SDK reconnects, resubscribes and the server recovers the gap.
        await ctx_b.set_offline(False)
        await bob.locator("#sub-state", has_text="subscribed (recovered)").wait_for()
        await bob.locator("#messages li.sys", has_text="missed messages recovered").wait_for()
        for text in missed:
            await messages(bob, text).wait_for()
        await asyncio.sleep(0.5)  # anything delivered twice would be here by now
        for text in missed:
            assert await messages(bob, text).count() == 1, text
        subscribed = await bob.evaluate("window.wshubDemo.status.subscribed")
        assert subscribed[-1] == {"wasRecovering": True, "recovered": True}
        assert [await messages(bob, t).count() for t in ("hello bob", "hi alice")] == [1, 1]
        order = await bob.locator("#messages li.msg .text").all_inner_texts()
        assert order[-3:] == missed

        # Still a conversation after the recovery.
        await alice.locator("#messages li.sys", has_text="bob joined").nth(1).wait_for()
        await wait_presence(alice, ["alice", "bob"])
        await say(bob, "back!")
        await messages(alice, "back!").wait_for()

        await alice.screenshot(path=str(shots / "demo-alice.png"))
        await bob.screenshot(path=str(shots / "demo-bob.png"))
    finally:
        await ctx_a.close()
        await ctx_b.close()
