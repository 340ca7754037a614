"""Process tuning by ``wshub serve``: the garbage collector's threshold and freeze."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from wshub.config import RuntimeConfig
from wshub.runtime import tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_gc_raises_the_young_threshold_and_freezes(restore_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    tune_gc(RuntimeConfig(gc_threshold=12345, gc_freeze=True))
    assert gc.get_threshold() == (12345, 10, 10)
    # everything alive now (this interpreter, pytest, wshub's modules) is out of view
    assert gc.get_freeze_count() > 10_000


def test_tune_gc_zero_and_false_leave_python_alone(restore_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    before = gc.get_freeze_count()
    tune_gc(RuntimeConfig(gc_threshold=0, gc_freeze=False))
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == before


def test_defaults_tune_the_collector() -> None:
    cfg = RuntimeConfig()
    assert cfg.gc_freeze is True
    assert cfg.gc_threshold == 20000


def _gc_line(env: dict[str, str]) -> dict[str, Any]:
    """Start ``wshub serve`` on free ports, return its gc_tuned log line, stop it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wshub", "serve", "--port", "0", "--http-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            if line.startswith("{") and '"gc_tuned"' in line:
                return dict(json.loads(line))
            if line.startswith("wshub: WebSocket") or time.monotonic() > deadline:
                break
        pytest.fail("no gc_tuned line before the banner")
    finally:
        proc.terminate()
        proc.wait(10)


def _python_default_threshold() -> int:
    out = subprocess.run(
        [sys.executable, "-c", "import gc; print(gc.get_threshold()[0])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return int(out.stdout)


def test_serve_tunes_its_process_and_can_leave_it_alone() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSHUB_")}
    tuned = _gc_line(env)
    assert tuned["threshold"][0] == 20000
    assert tuned["frozen"] > 10_000

    env["WSHUB_RUNTIME__GC_THRESHOLD"] = "0"
    env["WSHUB_RUNTIME__GC_FREEZE"] = "false"
    untouched = _gc_line(env)
    assert untouched["threshold"][0] == _python_default_threshold()
    # CPython may start with a few objects in the permanent generation; a freeze after
    # start-up moves tens of thousands there
    assert untouched["frozen"] < tuned["frozen"] // 10
