"""Fan-out writes: a bounded batch of connections per loop iteration, and a publication that
arrives while a fan-out is still being written rides in the same write."""

from __future__ import annotations

import asyncio
import contextlib
import json

import websockets

from support import GatewayFactory, make_config, open_namespace, ws_url
from wshub.transport.server import FLUSH_BATCH


async def test_fanout_is_written_in_batches_and_a_late_publication_joins_it(
    gateway_factory: GatewayFactory,
) -> None:
    cfg = make_config(client={"allow_anonymous": True}, namespaces=[open_namespace()])
    gw = await gateway_factory(cfg, http=False)
    n = 2 * FLUSH_BATCH + 10
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(n):
            ws = await stack.enter_async_context(websockets.connect(ws_url(gw)))
            await ws.send(json.dumps({"id": 1, "connect": {}}))
            await ws.recv()
            await ws.send(json.dumps({"id": 2, "subscribe": {"channel": "room"}}))
            await ws.recv()
            clients.append(ws)
        conns = list(gw.server.connections.values())
        assert len(conns) == n

        def pending() -> list[int]:
            # frames each server-side connection holds for its next write
            return [len(c._out) for c in conns if c._out is not None]

        await gw.node.publish("room", b'{"n":1}')
        assert pending() == [1] * n  # queued for every subscriber, nothing written yet
        await asyncio.sleep(0)  # one loop iteration: one batch
        assert pending() == [1] * (n - FLUSH_BATCH)

        # The next publication joins the frames still queued (one write carries both) and
        # starts a new queue for the connections already written.
        await gw.node.publish("room", b'{"n":2}')
        assert sorted(pending()) == [1] * FLUSH_BATCH + [2] * (n - FLUSH_BATCH)

        for _ in range(20):
            if not pending():
                break
            await asyncio.sleep(0)
        assert not pending()

        for ws in clients:
            got = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
            assert [m["push"]["pub"]["data"]["n"] for m in got] == [1, 2]
