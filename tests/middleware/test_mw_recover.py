"""Recover: any exception -> 500 internal_error, no exception text out, traceback logged."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from wshub.middleware.base import Request, Response, build_chain, reject
from wshub.middleware.recover import Recover

SECRET = "leaky-static-token-987654"


def boom(r: Request, call_next: Any) -> Response | None:
    raise ValueError(f"database password=hunter2 for token {SECRET}")


def test_exception_to_500(caplog: pytest.LogCaptureFixture, req: Callable[..., Request]) -> None:
    caplog.set_level(logging.ERROR, logger="wshub.recover")
    r = req(query=f"token={SECRET}", conn_id="c7")
    resp = build_chain([Recover(), boom])(r)
    assert resp is not None
    assert resp.status == 500
    assert resp.body == {"error": "internal_error", "message": "internal server error"}
    assert resp.headers == {}
    raw = resp.body_bytes()
    for leak in (b"hunter2", b"ValueError", b"Traceback", SECRET.encode()):
        assert leak not in raw
    (rec,) = [x for x in caplog.records if x.name == "wshub.recover"]
    assert rec.levelno == logging.ERROR
    tb = rec.__dict__["traceback"]
    assert "Traceback" in tb and "ValueError" in tb
    assert SECRET not in tb  # the request's own token is scrubbed from the traceback
    assert rec.__dict__["id"] == "c7"
    assert SECRET not in rec.__dict__["query"]


def test_passes_through(req: Callable[..., Request]) -> None:
    assert build_chain([Recover()])(req()) is None
    denied = reject(403, "x")
    assert build_chain([Recover(), lambda r, n: denied])(req()) is denied


def test_base_exceptions_are_not_swallowed(req: Callable[..., Request]) -> None:
    def interrupt(r: Request, call_next: Any) -> Response | None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_chain([Recover(), interrupt])(req())
