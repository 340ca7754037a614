"""Apps for the benchmark suite (``benchmarks/run.py`` puts this folder on PYTHONPATH).

* ``bench_app:app`` - the ``echo`` RPC answers inline: the handler never suspends, so the
  worker pool steps it once and replies with no task (as ``wshub.example``).
* ``bench_app:async_app`` - the ``echo`` RPC really awaits (``asyncio.sleep(0)``), so every
  call becomes a task on the bounded worker pool (with its timeout).
"""

from __future__ import annotations

import asyncio
from typing import Any

from wshub.app import App, RPCContext

app = App()
async_app = App()


@app.rpc("echo")
async def echo_inline(_ctx: RPCContext, data: Any) -> Any:
    return data


@async_app.rpc("echo")
async def echo_async(_ctx: RPCContext, data: Any) -> Any:
    await asyncio.sleep(0)
    return data
