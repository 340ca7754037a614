"""The engine contract: every engine (broker + history + presence) must pass this suite.

Engines are supplied by the ``harness`` fixture (see conftest.py). The section at the end
holds a few memory-engine specifics (internal bounds, background task lifecycle).
"""

from __future__ import annotations

import asyncio
import functools
import random

import pytest

from support import kill_pubsub
from wshub.brokers.base import ClientInfo, PresenceStats, Publication, StreamPosition
from wshub.brokers.memory import MemoryBroker, MemoryHistory, MemoryPresence, memory_engine

from .conftest import EngineHarness, FakeClock, RecordingHandler, redis_harness

BIG = 1000  # a history size that never trims in these tests


def pub(
    data: bytes,
    *,
    info: ClientInfo | None = None,
    tags: dict[str, str] | None = None,
    time_ms: int = 0,
) -> Publication:
    return Publication(data=data, info=info, tags=tags, time_ms=time_ms)


async def append_n(
    h: EngineHarness, channel: str, n: int, *, size: int = BIG, ttl: float | None = None
) -> list[StreamPosition]:
    ttl = h.ttl * 100 if ttl is None else ttl
    return [
        await h.engine.history.append(channel, pub(b'{"n":%d}' % i), size=size, ttl=ttl)
        for i in range(1, n + 1)
    ]


async def publish_like_node(
    h: EngineHarness, channel: str, p: Publication, *, size: int = BIG
) -> StreamPosition:
    """What the node does for a channel with history: append, then publish with the epoch."""
    pos = await h.engine.history.append(channel, p, size=size, ttl=h.ttl * 100)
    await h.engine.broker.publish(channel, p, pos.epoch)
    return pos


def offsets(pubs: list[Publication]) -> list[int]:
    return [p.offset for p in pubs]


# --------------------------------------------------------------------------- history


async def test_offsets_start_at_one_and_increase(harness: EngineHarness) -> None:
    h = harness
    history = h.engine.history
    p = pub(b'"x"')
    first = await history.append("ch", p, size=BIG, ttl=h.ttl * 100)
    assert first.offset == 1
    assert p.offset == 1, "append sets the offset on the publication"
    rest = await append_n(h, "ch", 4)
    assert [pos.offset for pos in rest] == [2, 3, 4, 5]
    assert {pos.epoch for pos in [first, *rest]} == {first.epoch}
    assert first.epoch != ""
    assert await history.position("ch") == StreamPosition(5, first.epoch)

    res = await history.read("ch", limit=-1)
    assert offsets(res.publications) == [1, 2, 3, 4, 5]
    assert [x.data for x in res.publications] == [b'"x"'] + [b'{"n":%d}' % i for i in range(1, 5)]
    assert res.position == StreamPosition(5, first.epoch)


async def test_channels_have_independent_streams(harness: EngineHarness) -> None:
    a = await append_n(harness, "a", 3)
    b = await append_n(harness, "b", 2)
    assert [p.offset for p in a] == [1, 2, 3]
    assert [p.offset for p in b] == [1, 2]
    res = await harness.engine.history.read("b", limit=-1)
    assert offsets(res.publications) == [1, 2]
    assert res.position.offset == 2


async def test_publication_fields_round_trip(harness: EngineHarness) -> None:
    info = ClientInfo("client-1", "user-1", b'{"name":"a"}', b'{"role":"b"}')
    original = pub(b'{"text":"h\\u00e9llo","bin":"\\u0000"}', info=info, tags={"k": "v", "é": ""})
    original.time_ms = 1_700_000_000_123
    await harness.engine.history.append("ch", original, size=BIG, ttl=harness.ttl * 100)
    bare = pub(b"[]")
    await harness.engine.history.append("ch", bare, size=BIG, ttl=harness.ttl * 100)

    got = (await harness.engine.history.read("ch", limit=-1)).publications
    assert got[0] == Publication(
        data=original.data, info=info, offset=1, tags={"k": "v", "é": ""}, time_ms=original.time_ms
    )
    assert got[1] == Publication(data=b"[]", offset=2)
    assert got[1].info is None and got[1].tags is None


async def test_stored_publication_is_independent_of_caller_object(harness: EngineHarness) -> None:
    p = pub(b"1", tags={"a": "1"})
    await harness.engine.history.append("ch", p, size=BIG, ttl=harness.ttl * 100)
    p.data = b"changed"
    assert p.tags is not None
    p.tags["a"] = "changed"
    got = (await harness.engine.history.read("ch", limit=-1)).publications[0]
    assert got.data == b"1"
    assert got.tags == {"a": "1"}


async def test_empty_channel_position_and_epoch_kept_by_first_append(
    harness: EngineHarness,
) -> None:
    history = harness.engine.history
    pos = await history.position("never")
    assert pos.offset == 0
    assert pos.epoch != ""
    res = await history.read("never", limit=-1)
    assert res.publications == []
    assert res.position == pos
    # a client that subscribed before the first publication keeps a valid epoch
    first = await history.append("never", pub(b"1"), size=BIG, ttl=harness.ttl * 100)
    assert first == StreamPosition(1, pos.epoch)


async def test_epoch_is_stable_while_stream_lives(harness: EngineHarness) -> None:
    history = harness.engine.history
    positions = await append_n(harness, "ch", 3)
    epoch = positions[0].epoch
    for _ in range(3):
        assert (await history.read("ch", limit=-1)).position.epoch == epoch
        assert (await history.position("ch")).epoch == epoch
    positions += await append_n(harness, "ch", 3)
    assert {p.epoch for p in positions} == {epoch}


async def test_size_bound_keeps_newest(harness: EngineHarness) -> None:
    history = harness.engine.history
    await append_n(harness, "ch", 10, size=3)
    res = await history.read("ch", limit=-1)
    assert offsets(res.publications) == [8, 9, 10]
    assert [p.data for p in res.publications] == [b'{"n":8}', b'{"n":9}', b'{"n":10}']
    assert res.position.offset == 10


async def test_size_change_applies_on_next_append(harness: EngineHarness) -> None:
    history = harness.engine.history
    await append_n(harness, "ch", 4, size=3)  # keeps 2..4
    await history.append("ch", pub(b"5"), size=5, ttl=harness.ttl * 100)
    assert offsets((await history.read("ch", limit=-1)).publications) == [2, 3, 4, 5]
    await history.append("ch", pub(b"6"), size=2, ttl=harness.ttl * 100)
    assert offsets((await history.read("ch", limit=-1)).publications) == [5, 6]


async def test_ttl_expiry_counts_from_last_append_and_changes_epoch(
    harness: EngineHarness,
) -> None:
    h = harness
    history = h.engine.history
    t = h.ttl
    first = await history.append("ch", pub(b"1"), size=BIG, ttl=t)
    await h.advance(0.6 * t)
    await history.append("ch", pub(b"2"), size=BIG, ttl=t)
    await h.advance(0.6 * t)  # 1.2 ttl after the first append, 0.6 after the last
    res = await history.read("ch", limit=-1)
    assert offsets(res.publications) == [1, 2]
    assert res.position == StreamPosition(2, first.epoch)
    await h.advance(0.6 * t)  # 1.2 ttl after the last append: the stream is gone
    res = await history.read("ch", limit=-1, since=StreamPosition(1, first.epoch))
    assert res.publications == []
    assert res.position.offset == 0
    assert res.position.epoch != first.epoch, "clients must see that history was lost"
    again = await history.append("ch", pub(b"3"), size=BIG, ttl=t)
    assert again == StreamPosition(1, res.position.epoch)


async def test_reads_do_not_extend_ttl(harness: EngineHarness) -> None:
    h = harness
    t = h.ttl
    first = await h.engine.history.append("ch", pub(b"1"), size=BIG, ttl=t)
    for _ in range(3):
        await h.advance(0.4 * t)
        await h.engine.history.read("ch", limit=-1)
        await h.engine.history.position("ch")
    pos = await h.engine.history.position("ch")
    assert pos.offset == 0
    assert pos.epoch != first.epoch


# (size, appended, since offset or None, limit, reverse, expected offsets)
ReadCase = tuple[int, int, int | None, int, bool, list[int]]
READ_CASES: list[ReadCase] = [
    (10, 10, None, -1, False, list(range(1, 11))),
    (10, 10, None, 3, False, [1, 2, 3]),
    (10, 10, None, 0, False, []),
    (10, 10, None, 0, True, []),
    (10, 10, None, -1, True, list(range(10, 0, -1))),
    (10, 10, None, 3, True, [10, 9, 8]),
    (10, 10, None, 50, True, list(range(10, 0, -1))),
    (10, 10, 0, -1, False, list(range(1, 11))),
    (10, 10, 4, -1, False, [5, 6, 7, 8, 9, 10]),
    (10, 10, 4, 2, False, [5, 6]),
    (10, 10, 4, 0, False, []),
    (10, 10, 9, 5, False, [10]),
    (10, 10, 10, -1, False, []),
    (10, 10, 15, -1, False, []),
    (10, 10, 4, -1, True, [3, 2, 1]),
    (10, 10, 4, 2, True, [3, 2]),
    (10, 10, 4, 0, True, []),
    (10, 10, 1, -1, True, []),
    (10, 10, 11, 2, True, [10, 9]),
    # trimmed stream: offsets 6..10 kept
    (5, 10, None, -1, False, [6, 7, 8, 9, 10]),
    (5, 10, None, 2, True, [10, 9]),
    (5, 10, 2, -1, False, [6, 7, 8, 9, 10]),  # since too old: what is kept
    (5, 10, 2, 2, False, [6, 7]),
    (5, 10, 7, -1, False, [8, 9, 10]),
    (5, 10, 8, -1, True, [7, 6]),
    (5, 10, 3, -1, True, []),
    (5, 10, 6, -1, True, []),
]


def _case_id(case: ReadCase) -> str:
    size, appended, since, limit, reverse, _ = case
    return f"size{size}-n{appended}-since{since}-limit{limit}-{'rev' if reverse else 'fwd'}"


@pytest.mark.parametrize("case", READ_CASES, ids=_case_id)
async def test_read_since_limit_reverse(harness: EngineHarness, case: ReadCase) -> None:
    size, appended, since, limit, reverse, expected = case
    positions = await append_n(harness, "ch", appended, size=size)
    epoch = positions[-1].epoch
    res = await harness.engine.history.read(
        "ch",
        since=None if since is None else StreamPosition(since, epoch),
        limit=limit,
        reverse=reverse,
    )
    assert offsets(res.publications) == expected
    assert [p.data for p in res.publications] == [b'{"n":%d}' % o for o in expected]
    assert res.position == StreamPosition(appended, epoch)


async def test_read_with_other_epoch_still_returns_publications(harness: EngineHarness) -> None:
    positions = await append_n(harness, "ch", 5)
    res = await harness.engine.history.read("ch", since=StreamPosition(3, "bogus"), limit=-1)
    assert offsets(res.publications) == [4, 5]
    assert res.position == StreamPosition(5, positions[0].epoch)


async def test_remove_drops_stream(harness: EngineHarness) -> None:
    history = harness.engine.history
    positions = await append_n(harness, "ch", 3)
    await append_n(harness, "other", 2)
    await history.remove("ch")
    await history.remove("missing")  # no error
    res = await history.read("ch", limit=-1)
    assert res.publications == []
    assert res.position.offset == 0
    assert res.position.epoch != positions[0].epoch
    assert (await history.append("ch", pub(b"x"), size=BIG, ttl=harness.ttl)).offset == 1
    assert offsets((await history.read("other", limit=-1)).publications) == [1, 2]


async def test_concurrent_appends_keep_per_channel_order(harness: EngineHarness) -> None:
    h = harness
    channels = [f"ch{i}" for i in range(20)]
    producers, per_producer = 5, 8
    for ch in channels:
        await h.engine.broker.subscribe(ch)

    async def produce(pid: int) -> None:
        rng = random.Random(pid)
        todo = [ch for ch in channels for _ in range(per_producer)]
        rng.shuffle(todo)
        seq: dict[str, int] = {}
        for ch in todo:
            seq[ch] = seq.get(ch, 0) + 1
            await publish_like_node(h, ch, pub(b'{"p":%d,"s":%d}' % (pid, seq[ch])))
            if rng.random() < 0.5:
                await asyncio.sleep(0)

    await asyncio.gather(*(produce(i) for i in range(producers)))
    total = producers * per_producer
    await h.handler.wait_until(lambda: len(h.handler.publications) == total * len(channels))

    for ch in channels:
        res = await h.engine.history.read(ch, limit=-1)
        assert offsets(res.publications) == list(range(1, total + 1))
        delivered = h.handler.pubs_in(ch)
        assert [p.offset for p, _ in delivered] == list(range(1, total + 1))
        assert [p.data for p, _ in delivered] == [p.data for p in res.publications]
        assert {e for _, e in delivered} == {res.position.epoch}
        # each producer's own publications appear in the order it made them
        for pid in range(producers):
            mine = [p.data for p in res.publications if p.data.startswith(b'{"p":%d,' % pid)]
            assert mine == [b'{"p":%d,"s":%d}' % (pid, s) for s in range(1, per_producer + 1)]


# --------------------------------------------------------------------------- broker


async def test_publish_delivers_in_order(harness: EngineHarness) -> None:
    h = harness
    for ch in ("a", "b", "c"):
        await h.engine.broker.subscribe(ch)
    n = 300
    for i in range(n):
        ch = "abc"[i % 3]
        await h.engine.broker.publish(ch, pub(b"%d" % i))  # no history: offset 0
    await h.handler.wait_until(lambda: len(h.handler.publications) == n)
    for k, ch in enumerate("abc"):
        got = h.handler.pubs_in(ch)
        assert [p.data for p, _ in got] == [b"%d" % i for i in range(k, n, 3)]
        assert all(p.offset == 0 for p, _ in got)


async def test_publish_with_history_delivers_offsets_and_epoch(harness: EngineHarness) -> None:
    h = harness
    await h.engine.broker.subscribe("ch")
    info = ClientInfo("c1", "u1", b'{"a":1}', None)
    positions = []
    for i in range(200):
        p = pub(b"%d" % i, info=info if i % 2 else None, tags={"i": str(i)}, time_ms=i)
        positions.append(await publish_like_node(h, "ch", p, size=50))
    await h.handler.wait_until(lambda: len(h.handler.publications) == 200)
    got = h.handler.pubs_in("ch")
    assert [p.offset for p, _ in got] == list(range(1, 201))
    assert {e for _, e in got} == {positions[0].epoch}
    for i, (p, _) in enumerate(got):
        assert p.data == b"%d" % i
        assert p.info == (info if i % 2 else None)
        assert p.tags == {"i": str(i)}
        assert p.time_ms == i


async def test_join_and_leave_reach_handler(harness: EngineHarness) -> None:
    h = harness
    await h.engine.broker.subscribe("ch")
    a = ClientInfo("c1", "u1", b'{"conn":1}', b'{"chan":1}')
    b = ClientInfo("c2", "", None, None)
    await h.engine.broker.publish_join("ch", a)
    await h.engine.broker.publish_join("ch", b)
    await h.engine.broker.publish_leave("ch", a)
    await h.handler.wait_until(lambda: len(h.handler.events) == 3)
    assert h.handler.joins == [("ch", a), ("ch", b)]
    assert h.handler.leaves == [("ch", a)]
    assert h.handler.events == [("join", "ch"), ("join", "ch"), ("leave", "ch")]


async def test_subscribe_unsubscribe_are_idempotent(harness: EngineHarness) -> None:
    broker = harness.engine.broker
    await broker.subscribe("ch")
    await broker.subscribe("ch")
    await broker.unsubscribe("ch")
    await broker.unsubscribe("ch")
    await broker.unsubscribe("never")
    await broker.subscribe("ch")
    await broker.publish("ch", pub(b"1"))
    await harness.handler.wait_until(lambda: len(harness.handler.publications) == 1)


# --------------------------------------------------------------------------- presence


async def test_presence_add_get_remove_stats(harness: EngineHarness) -> None:
    presence = harness.engine.presence
    ttl = harness.ttl * 100
    c1 = ClientInfo("c1", "u1", b'{"x":1}', b'{"y":2}')
    c2 = ClientInfo("c2", "u1")
    c3 = ClientInfo("c3", "u2")
    for info in (c1, c2, c3):
        await presence.add("ch", info, ttl=ttl)
    await presence.add("other", ClientInfo("c9", "u9"), ttl=ttl)

    assert await presence.get("ch") == {"c1": c1, "c2": c2, "c3": c3}
    assert await presence.stats("ch") == PresenceStats(3, 2)
    await presence.remove("ch", "c2")
    await presence.remove("ch", "unknown")
    await presence.remove("nochannel", "c1")
    assert await presence.get("ch") == {"c1": c1, "c3": c3}
    assert await presence.stats("ch") == PresenceStats(2, 2)
    await presence.remove("ch", "c1")
    await presence.remove("ch", "c3")
    assert await presence.get("ch") == {}
    assert await presence.stats("ch") == PresenceStats(0, 0)
    assert await presence.get("other") == {"c9": ClientInfo("c9", "u9")}


async def test_presence_readd_replaces_info(harness: EngineHarness) -> None:
    presence = harness.engine.presence
    await presence.add("ch", ClientInfo("c1", "u1", b"1"), ttl=harness.ttl * 100)
    await presence.add("ch", ClientInfo("c1", "u1", b"2"), ttl=harness.ttl * 100)
    assert await presence.get("ch") == {"c1": ClientInfo("c1", "u1", b"2")}
    assert await presence.stats("ch") == PresenceStats(1, 1)


async def test_presence_entries_expire_individually(harness: EngineHarness) -> None:
    h = harness
    presence = h.engine.presence
    t = h.ttl
    a, b = ClientInfo("a", "ua"), ClientInfo("b", "ub")
    await presence.add("ch", a, ttl=t)
    await presence.add("ch", b, ttl=t)
    await h.advance(0.6 * t)
    await presence.add("ch", a, ttl=t)  # refresh a only
    await h.advance(0.6 * t)
    assert await presence.get("ch") == {"a": a}
    assert await presence.stats("ch") == PresenceStats(1, 1)
    await h.advance(0.6 * t)
    assert await presence.get("ch") == {}
    assert await presence.stats("ch") == PresenceStats(0, 0)


# --------------------------------------------------------------------------- cleanup


async def test_expired_channels_are_cleaned_without_reads(harness: EngineHarness) -> None:
    h = harness
    t = h.ttl
    for i in range(30):
        await h.engine.history.append(f"h{i}", pub(b"1"), size=10, ttl=t)
        await h.engine.presence.add(f"p{i}", ClientInfo(f"c{i}", "u"), ttl=t)
    assert await h.stored_channels() >= 60
    await h.advance(1.5 * t)
    # no read, append or presence call touches the engine from here on
    for _ in range(30):
        await h.settle()
        if await h.stored_channels() == 0:
            break
    assert await h.stored_channels() == 0


async def test_many_short_lived_channels_stay_bounded(harness: EngineHarness) -> None:
    h = harness
    if h.clock is None:
        pytest.skip("needs a fake clock to churn through many ttl periods quickly")
    t = h.ttl
    for i in range(3000):
        await h.engine.history.append(f"h{i}", pub(b"1"), size=10, ttl=t)
        await h.engine.presence.add(f"p{i}", ClientInfo("c", "u"), ttl=t)
        await h.advance(t / 100)  # about 100 channels of each kind alive at any time
    assert await h.stored_channels() <= 2 * 102


# --------------------------------------------------------------------------- memory specifics


async def test_memory_heaps_stay_bounded_under_refresh_and_churn() -> None:
    clock = FakeClock()
    history = MemoryHistory(clock, cleanup_interval=0)
    presence = MemoryPresence(clock, cleanup_interval=0)
    for i in range(20_000):
        await history.append("hot", pub(b"%d" % i), size=5, ttl=10.0)  # refresh, no push
        await presence.add("ch", ClientInfo("c1", "u"), ttl=10.0)  # refresh
        await presence.add("ch", ClientInfo("tmp", "u"), ttl=10.0)  # add ...
        await presence.remove("ch", "tmp")  # ... and remove: stale heap entries
        clock.advance(0.001)
    assert len(history._expiry) <= 2
    assert len(presence._expiry) <= 2 * 2 + 1024
    assert (await presence.stats("ch")) == PresenceStats(1, 1)
    assert offsets((await history.read("hot", limit=-1)).publications) == list(
        range(19_996, 20_001)
    )


async def test_memory_shorter_ttl_on_refresh_is_honoured() -> None:
    clock = FakeClock()
    history = MemoryHistory(clock, cleanup_interval=0)
    presence = MemoryPresence(clock, cleanup_interval=0)
    await history.append("ch", pub(b"1"), size=5, ttl=100.0)
    await history.append("ch", pub(b"2"), size=5, ttl=1.0)
    await presence.add("ch", ClientInfo("c", "u"), ttl=100.0)
    await presence.add("ch", ClientInfo("c", "u"), ttl=1.0)
    clock.advance(2.0)
    assert history.purge_expired() == 1
    assert presence.purge_expired() == 1
    assert history.num_streams == 0
    assert presence.num_channels == 0


async def test_memory_read_created_stream_expires_after_meta_ttl() -> None:
    clock = FakeClock()
    history = MemoryHistory(clock, cleanup_interval=0, meta_ttl=5.0)
    epoch = (await history.position("ch")).epoch
    clock.advance(4.0)
    assert (await history.position("ch")).epoch == epoch  # reads refresh it
    clock.advance(4.0)
    assert history.purge_expired() == 0
    clock.advance(2.0)
    assert history.purge_expired() == 1
    assert history.num_streams == 0


async def test_memory_sweeper_task_lifecycle() -> None:
    clock = FakeClock()
    engine = memory_engine(clock, cleanup_interval=0.01)
    history, presence = engine.history, engine.presence
    assert isinstance(history, MemoryHistory)
    assert isinstance(presence, MemoryPresence)
    assert not history._sweeper.running  # nothing to expire, no task
    await history.append("ch", pub(b"1"), size=5, ttl=1.0)
    await presence.add("ch", ClientInfo("c", "u"), ttl=1.0)
    assert history._sweeper.running and presence._sweeper.running
    clock.advance(2.0)
    await asyncio.sleep(0.1)
    assert history.num_streams == 0 and presence.num_channels == 0
    assert not history._sweeper.running, "the task ends once nothing can expire"
    await history.append("ch", pub(b"1"), size=5, ttl=1.0)
    assert history._sweeper.running
    await history.close()
    await presence.close()
    assert not history._sweeper.running and not presence._sweeper.running
    assert history.num_streams == 0


async def test_memory_broker_drops_before_start_and_isolates_handler_errors() -> None:
    broker = MemoryBroker()
    await broker.publish("ch", pub(b"1"))  # not started: dropped, no error

    class Failing(RecordingHandler):
        def handle_publication(self, channel: str, p: Publication, epoch: str) -> None:
            super().handle_publication(channel, p, epoch)
            raise RuntimeError("boom")

    handler = Failing()
    await broker.start(handler)
    await broker.subscribe("ch")
    assert broker.is_subscribed("ch")
    await broker.publish("ch", pub(b"2"), "e")  # the publisher does not see the failure
    assert [(c, p.data, e) for c, p, e in handler.publications] == [("ch", b"2", "e")]
    await broker.unsubscribe("ch")
    assert not broker.is_subscribed("ch")
    await broker.close()
    await broker.publish("ch", pub(b"3"))
    assert len(handler.publications) == 1


# --------------------------------------------------------------------------- redis specifics


def has_events(handler: RecordingHandler, n: int) -> bool:
    return len(handler.events) == n


@pytest.mark.redis
async def test_redis_two_nodes_see_one_order() -> None:
    async with redis_harness() as a, redis_harness(prefix=a.prefix) as b:
        for node in (a, b):
            await node.engine.broker.subscribe("ch")

        async def produce(node: EngineHarness, tag: bytes) -> None:
            for i in range(50):
                await publish_like_node(node, "ch", pub(tag + b"%d" % i))

        await asyncio.gather(produce(a, b"a"), produce(b, b"b"))
        await a.engine.broker.publish_join("ch", ClientInfo("c1", "u1"))
        for handler in (a.handler, b.handler):
            await handler.wait_until(functools.partial(has_events, handler, 101))
        seen_a = [(p.offset, p.data) for p, _ in a.handler.pubs_in("ch")]
        seen_b = [(p.offset, p.data) for p, _ in b.handler.pubs_in("ch")]
        assert [o for o, _ in seen_a] == list(range(1, 101))
        assert seen_a == seen_b
        assert b.handler.joins == [("ch", ClientInfo("c1", "u1"))]


@pytest.mark.redis
async def test_redis_lost_meta_starts_a_new_stream() -> None:
    async with redis_harness() as h:
        assert h.redis is not None
        old = await append_n(h, "ch", 3)
        await h.redis.delete(f"{h.prefix}m:ch")  # e.g. evicted under memory pressure
        pos = await h.engine.history.append("ch", pub(b"new"), size=BIG, ttl=h.ttl * 10)
        assert pos.offset == 1
        assert pos.epoch != old[0].epoch
        res = await h.engine.history.read("ch", limit=-1)
        assert [(p.offset, p.data) for p in res.publications] == [(1, b"new")]


@pytest.mark.redis
async def test_redis_pubsub_reconnects_resubscribes_and_reports_it() -> None:
    async with redis_harness() as h:
        assert h.redis is not None
        broker = h.engine.broker
        await broker.subscribe("ch")
        await broker.subscribe("other")
        ours = [await kill_pubsub(h.redis, h.prefix)]
        await h.handler.wait_until(lambda: h.handler.resyncs == 1)
        # subscribed again to both channels, on a new connection
        await broker.publish("ch", pub(b"after"))
        await broker.publish("other", pub(b"other"))
        await h.handler.wait_until(lambda: len(h.handler.publications) == 2)
        assert [(c, p.data) for c, p, _ in h.handler.publications] == [
            ("ch", b"after"),
            ("other", b"other"),
        ]
        assert h.handler.resyncs == 1
        pubsubs = await h.redis.client_list(_type="pubsub")
        assert [c["id"] for c in pubsubs if c.get("name") == h.prefix] != ours
