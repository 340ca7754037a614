"""Headless Chromium (Debian's ``chromium``, never a downloaded browser) driven by Playwright,
and the npm side of the demo.

* ``web_sdk`` (session): runs ``npm ci --prefix web`` once when ``web/node_modules`` is missing,
  so ``/demo`` can serve the real centrifuge SDK.
* ``browser`` (per test): a Chromium launched for the test's event loop; tests are skipped
  only when no Chromium executable can be found.
* ``shots``: a folder for the screenshots a test takes (kept under pytest's tmp dir).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wshub.api.demo import NPM_COMMAND, SDK_DIST

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def web_sdk() -> Path:
    """The centrifuge SDK's browser build under ``web/node_modules``, installed if missing."""
    if not (WEB / "node_modules").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, (
            f"web/node_modules is missing and npm is not installed ({NPM_COMMAND})"
        )
        proc = subprocess.run(
            [npm, "ci", "--prefix", str(WEB), "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"{NPM_COMMAND} failed:\n{proc.stdout}\n{proc.stderr}"
    sdk = WEB / SDK_DIST
    assert sdk.is_file(), f"{sdk} is missing after {NPM_COMMAND}"
    return sdk


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    exe = chromium_path()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder
