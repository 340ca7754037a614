"""Close codes and disconnect reasons are data with the protocol's reconnect semantics."""

from __future__ import annotations

from wshub import codes


def test_reconnect_ranges() -> None:
    assert codes.DISCONNECT_SHUTDOWN.reconnect
    assert codes.DISCONNECT_SLOW.reconnect
    assert codes.DISCONNECT_NO_PONG.reconnect
    assert not codes.DISCONNECT_INVALID_TOKEN.reconnect
    assert not codes.DISCONNECT_BAD_REQUEST.reconnect
    assert codes.Disconnect(4100, "custom").reconnect
    assert not codes.Disconnect(4600, "custom").reconnect
    assert codes.Disconnect(5000, "x").reconnect


def test_codes_are_unique_and_reasons_fit_a_close_frame() -> None:
    disconnects = [v for v in vars(codes).values() if isinstance(v, codes.Disconnect)]
    for d in disconnects:
        assert len(d.reason.encode()) <= 123
    protocol = [d.code for d in disconnects if d.code >= 3000]
    assert len(protocol) == len(set(protocol))
    errs = [e.code for e in codes.CLIENT_ERRORS]
    assert errs == list(range(100, 113))
