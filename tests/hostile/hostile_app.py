"""The app the hostile suite's gateway subprocesses serve (``app = "hostile_app:app"``, with
this folder on PYTHONPATH): the example app's echo route and RPC, plus introspection RPCs a
test can call over the wire to see inside the process."""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

from wshub.app import App, RPCContext
from wshub.example import echo_route, echo_rpc

app = App()
app.route("/echo")(echo_route)
app.rpc("echo")(echo_rpc)


@app.rpc("sleep")
async def sleep_rpc(_ctx: RPCContext, data: Any) -> Any:
    await asyncio.sleep(float(data))
    return data


@app.rpc("stats")
async def stats_rpc(_ctx: RPCContext, _data: Any) -> Any:
    """Tasks, descriptors and live transport objects of this process."""
    from wshub.protocol.session import ClientSession
    from wshub.transport.connection import Connection

    gc.collect()
    objs = gc.get_objects()
    return {
        "tasks": len(asyncio.all_tasks()),
        "fds": len(os.listdir("/proc/self/fd")),
        "connections": sum(1 for o in objs if isinstance(o, Connection)),
        "sessions": sum(1 for o in objs if isinstance(o, ClientSession)),
    }


@app.rpc("boom")
async def boom_rpc(_ctx: RPCContext, data: Any) -> Any:
    """A handler bug whose exception message echoes what the client sent."""
    raise RuntimeError(f"cannot handle {data!r}")


class _LagMonitor:
    """Event-loop lag: how late a 10 ms periodic timer fires, worst case since the last
    read."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, loop.time() - t0 - 0.01)


_lag = _LagMonitor()


@app.rpc("lag")
async def lag_rpc(_ctx: RPCContext, _data: Any) -> Any:
    """Worst event-loop lag (seconds) since the previous call; the first call starts the
    monitor."""
    if _lag.task is None:
        _lag.task = asyncio.create_task(_lag.run())
    worst, _lag.worst = _lag.worst, 0.0
    return worst
