"""Fixtures of the hostile suite: ``wshub serve`` subprocesses on free loopback ports.

``spawn_gateway(config, nofile=None, env=None)`` starts one with a temporary TOML config
(``hostile_app:app`` unless ``config["app"]`` says otherwise), waits for its banner and
returns a :class:`hostile_helpers.GatewayProcess`; at the end of the test every gateway
still running gets SIGTERM (then SIGKILL if it does not exit).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_helpers import GatewayProcess, SpawnGateway, start_gateway


@pytest.fixture
def spawn_gateway(tmp_path: Path) -> Iterator[SpawnGateway]:
    started: list[GatewayProcess] = []
    counter = itertools.count()

    def spawn(
        config: dict[str, Any],
        *,
        nofile: int | None = None,
        env: dict[str, str] | None = None,
    ) -> GatewayProcess:
        gw = start_gateway(tmp_path / f"gw{next(counter)}", config, nofile=nofile, env=env)
        started.append(gw)
        return gw

    yield spawn
    for gw in started:
        if gw.exit_code is None:
            with contextlib.suppress(Exception):
                gw.stop(timeout=15)
