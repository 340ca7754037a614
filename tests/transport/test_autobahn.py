"""RFC 6455 conformance: the Autobahn TestSuite cases, run by kosoku against an echo route.

The server runs in a subprocess (its own uvloop and GIL, so the fuzzing client's Python case
code does not compete with it) with a 16 MiB message limit for the 9.* big-message cases.
Every case outside the compression groups (12.*, 13.*) must end OK, NON-STRICT or
INFORMATIONAL, with an OK or INFORMATIONAL closing handshake. wshub does not negotiate
permessage-deflate, so the 12.*/13.* cases must all be UNIMPLEMENTED (the offer declined).

Runtime: about 5 s for the 301 cases on 2 cores (4 cases in parallel; the sum of the cases'
own sleeps dominates, the 9.* performance cases take about 4 s of CPU).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

kosoku = pytest.importorskip("kosoku")
kosoku_report = pytest.importorskip("kosoku._report")

SRC = Path(__file__).resolve().parents[2] / "src"
CONCURRENCY = 4

SERVER = """
import asyncio, sys
import uvloop
from wshub.config import Config, WebSocketConfig
from wshub.middleware.base import build_chain
from wshub.transport.raw import RawRoute
from wshub.transport.server import Route, Server

async def echo(ws):
    async for msg in ws:
        ws.send(msg)

async def main():
    ws = WebSocketConfig(
        max_message_size=16 * 1024 * 1024,
        send_queue_bytes=64 * 1024 * 1024,
        ping_interval=0,
    )
    server = Server(Config(host="127.0.0.1", port=0, websocket=ws), build_chain([]))
    server.add_route(Route("/echo", RawRoute(echo), name="echo"))
    await server.start()
    print(server.port, flush=True)
    # Run until the test closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

uvloop.run(main())
"""

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}

# Deviations that come from picows itself and cannot be worked around from a WSListener.
# Each is tolerated only with its exact known signature (remote close code, reason text),
# and still passes if picows fixes it.
#
# None at present. 7.1.2 ("Send two close frames") used to be one: picows parses one frame
# ahead and answers a second Close with 1002 before our listener sees the first; the
# server's protocol class (transport/server.py, _Protocol) now feeds a read that starts with
# a Close frame to picows in 1-byte steps, and this suite checks it.
PICOWS_KNOWN: dict[str, tuple[int, str]] = {}


@pytest.fixture(scope="module")
def echo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("autobahn") / "server.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    with log.open("w") as stderr:  # picows logs every protocol error it answers
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"echo server did not start: {log.read_text()[-2000:]}"
        yield f"ws://127.0.0.1:{int(line)}/echo"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_cases(url: str, include: list[str] | None, exclude: list[str] | None) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return list(
                await kosoku.run_fuzzingclient(url, include, exclude, concurrency=CONCURRENCY)
            )
        except kosoku.FailureError as failure:  # raised when a case did not pass
            return failure.results

    return asyncio.run(go())


def _key(case_id: str) -> list[int]:
    return [int(p) for p in case_id.split(".")]


def table(results: list[Any]) -> str:
    rows = [("case", "behavior", "close", "remote close", "description")]
    for r in sorted(results, key=lambda r: _key(r.case_id)):
        remote = f"{r.remote_close_code} {r.remote_close_reason or ''}".strip()
        desc = " ".join(r.description.split())[:70]
        rows.append((r.case_id, r.behavior.value, r.behavior_close.value, remote, desc))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    )


def _known_picows(r: Any) -> bool:
    known = PICOWS_KNOWN.get(r.case_id)
    if known is None:
        return False
    code, reason = known
    return r.remote_close_code == code and reason in (r.remote_close_reason or "")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_autobahn_conformance(echo_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    results = run_cases(echo_url, None, ["12.*", "13.*"])
    elapsed = time.monotonic() - started
    assert len(results) > 290, f"kosoku ran only {len(results)} cases"
    assert not any(r.case_id.startswith(("12.", "13.")) for r in results)

    bad = [
        r
        for r in results
        if r.behavior.value not in PASSING or r.behavior_close.value not in PASSING_CLOSE
    ]
    known = [r for r in bad if _known_picows(r)]
    bad = [r for r in bad if not _known_picows(r)]
    if bad:
        kosoku_report.write_reports(bad, str(tmp_path))
    assert not bad, (
        f"{len(bad)} of {len(results)} Autobahn cases failed ({elapsed:.1f}s; "
        f"reports in {tmp_path}):\n{table(bad)}"
    )
    if known:
        warnings.warn("known picows deviation (see PICOWS_KNOWN):\n" + table(known), stacklevel=1)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.behavior.value] = counts.get(r.behavior.value, 0) + 1
    print(f"\nAutobahn: {len(results)} cases in {elapsed:.1f}s: {counts}")


def test_autobahn_compression_is_never_negotiated(echo_url: str) -> None:
    results = run_cases(echo_url, ["12.*", "13.*"], None)
    assert len(results) > 200
    accepted = [r for r in results if r.behavior.value != "UNIMPLEMENTED"]
    assert not accepted, "permessage-deflate was negotiated:\n" + table(accepted)
    for r in results:
        assert "sec-websocket-extensions" not in r.http_response.lower()
