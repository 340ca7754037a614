"""The admin page in headless Chromium against a real gateway and a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from playwright.async_api import expect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from support import GatewayFactory, http_url, make_config, open_namespace, ws_url
from wshub import codes

pytestmark = pytest.mark.browser

SECRET = "browser-admin-test-secret-long-enough-for-hs256"
PASSWORD = "correct horse battery staple"
TIMEOUT = 10_000  # ms, for Playwright's waits


async def hub_client(url: str, user: str, channel: str) -> ClientConnection:
    """A Centrifugo protocol v2 client connected as ``user`` and subscribed to ``channel``."""
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    ws = await connect(url)
    await ws.send(json.dumps({"id": 1, "connect": {"token": token, "name": "browser-test"}}))
    reply = json.loads(await ws.recv())
    assert "connect" in reply, reply
    await ws.send(json.dumps({"id": 2, "subscribe": {"channel": channel}}))
    reply = json.loads(await ws.recv())
    assert reply.get("id") == 2 and "subscribe" in reply, reply
    return ws


async def next_publication(ws: ClientConnection, channel: str) -> Any:
    async with asyncio.timeout(5):
        while True:
            for line in str(await ws.recv()).splitlines():
                push = json.loads(line).get("push") or {}
                if push.get("channel") == channel and "pub" in push:
                    return push["pub"]["data"]


async def test_admin_page_end_to_end(
    gateway_factory: GatewayFactory, browser: Any, shots: Path
) -> None:
    config = make_config(
        admin_password=PASSWORD, token__hmac_secret=SECRET, namespaces=[open_namespace()]
    )
    gw = await gateway_factory(config)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT)

    # Signed out: the login form; a wrong password is refused.
    await page.goto(http_url(gw, "/admin"))
    await page.fill("#password", "wrong")
    await page.click("button[type=submit]")
    await page.locator("p.error").filter(has_text="Wrong password").wait_for()
    await page.screenshot(path=str(shots / "admin-login.png"))

    # Sign in: a signed, HttpOnly, SameSite=Strict cookie, then the dashboard.
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.locator("#conn-table").wait_for()
    (cookie,) = [c for c in await context.cookies() if c["name"] == "wshub_admin"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"
    assert PASSWORD not in cookie["value"]

    # A client connects: it shows up in the connections and in the channel's subscribers.
    ws = await hub_client(ws_url(gw), "alice", "news")
    try:
        await page.locator('#conn-table tr[data-user="alice"]').wait_for()
        chan_row = page.locator('#chan-table tr[data-channel="news"]')
        await chan_row.wait_for()
        assert (await chan_row.locator("td.num").inner_text()).strip() == "1"
        # The chart has data (two polls give one rate sample).
        await expect(page.locator("#c-rate-in")).not_to_have_text("\u2013")  # a rate, not "-"

        # Publish from the form: the client gets it.
        await page.fill("#pub-channel", "news")
        await page.fill("#pub-data", '{"text": "hello from the admin page"}')
        received = asyncio.ensure_future(next_publication(ws, "news"))
        await page.click("#publish-form button[type=submit]")
        await page.locator("#pub-result.ok").wait_for()
        assert await received == {"text": "hello from the admin page"}

        # Look the user up: the connection's state.
        await page.fill("#user-name", "alice")
        await page.click("#user-form button[type=submit]")
        session = page.locator("#user-result .session")
        await session.wait_for()
        text = await session.inner_text()
        for label in ("Connected since", "Last activity", "Commands / s", "Token expires"):
            assert label in text
        assert "browser-test" in text  # the SDK name sent in connect
        assert await session.locator(".tag").all_inner_texts() == ["news"]
        await page.screenshot(path=str(shots / "admin.png"), full_page=True)

        # Disconnect: the client is closed with the force-disconnect code.
        await session.locator("button.danger").click()
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == codes.DISCONNECT_FORCE_NO_RECONNECT.code
        await page.locator('#conn-table tr[data-user="alice"]').wait_for(state="detached")
        await page.locator("#user-result .empty").wait_for()
    finally:
        await ws.close()
        await context.close()
