"""Session state and rate limiting, with time passed in."""

from __future__ import annotations

from wshub.protocol.session import ClientSession, HeldSink, TokenBucket


class _Sink:
    id = "c1"
    closing = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    def send_frame(self, wire: bytes, size: int) -> bool:
        self.sent.append(wire)
        return True


def test_token_bucket_burst_then_rate() -> None:
    b = TokenBucket(rate=10, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.wait_time() > 0
    assert not b.take(0.05)  # half a token
    assert b.take(0.1)  # one token after 100 ms
    assert b.take(10.0) and b.take(10.0) and b.take(10.0) and not b.take(10.0)  # capped at burst


def test_held_sink_collects_until_released() -> None:
    real = _Sink()
    held = HeldSink(real)
    assert held.send(b"a") and held.send(b"b")
    assert held.frames == [(b"\x81\x01a", 1), (b"\x81\x01b", 1)] and real.sent == []
    assert held.id == real.id
    held.release(real)
    assert real.sent == [b"\x81\x01a", b"\x81\x01b"] and held.frames == []


def test_session_info_is_cached_and_carries_chan_info() -> None:
    s = ClientSession(conn=_Sink(), real=None, client="c1", user="u", conn_info=b'{"a":1}')
    assert s.info() is s.info()
    with_chan = s.info(b'{"role":"x"}')
    assert with_chan.chan_info == b'{"role":"x"}' and with_chan.user == "u"
