"""The example app: an ``/echo`` raw route and an ``echo`` RPC method.

``wshub serve --app wshub.example:app``. The benchmark uses the ``echo`` RPC.
"""

from __future__ import annotations

from typing import Any

from wshub.app import App, RPCContext
from wshub.transport.raw import RawConnection

app = App()


@app.route("/echo")
async def echo_route(ws: RawConnection) -> None:
    """Send every message back as it came (text as text, binary as binary)."""
    async for message in ws:
        ws.send(message)


@app.rpc("echo")
async def echo_rpc(_ctx: RPCContext, data: Any) -> Any:
    """Reply with the request's data."""
    return data
