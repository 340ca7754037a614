"""OriginCheck: exact/normalised matching, wildcards, null, missing, look-alikes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from wshub.errors import ConfigError
from wshub.middleware.base import Request, build_chain
from wshub.middleware.origin import OriginCheck, normalize_origin

ALLOWED = [
    "https://example.com",
    "http://localhost:8080",
    "https://*.apps.test",
    "https://*.alt.test:8443",
    "http://[::1]:3000",
]


@pytest.fixture
def check() -> OriginCheck:
    return OriginCheck(ALLOWED)


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com",
        "https://example.com:443",
        "HTTPS://EXAMPLE.COM",
        "https://example.com/",
        "https://example.com.",
        "http://localhost:8080",
        "https://a.apps.test",
        "https://a.b.apps.test",
        "https://a.apps.test:443",
        "https://x.alt.test:8443",
        "http://[::1]:3000",
    ],
)
def test_allowed(check: OriginCheck, origin: str) -> None:
    assert check.allows(origin)


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com.evil.test",  # look-alike suffix
        "https://evil-example.com",
        "https://notexample.com",
        "https://sub.example.com",  # exact entry does not cover subdomains
        "http://example.com",  # scheme
        "https://example.com:8443",  # port
        "http://localhost",  # default port 80 != 8080
        "http://localhost:8081",
        "https://apps.test",  # wildcard does not match the bare domain
        "https://evil-apps.test",
        "https://a.apps.test.evil.test",
        "https://xapps.test",
        "http://a.apps.test",
        "https://a.apps.test:8443",
        "https://x.alt.test",  # wildcard with explicit port
        "https://example.com/path",
        "https://user@example.com",
        "https://example.com?x=1",
        "https://example.com, https://evil.test",
        "example.com",
        "",
        "null",
        "NULL",
        "https://*.apps.test",
        "https://example.com:notaport",
        "javascript://example.com",
    ],
)
def test_refused(check: OriginCheck, origin: str) -> None:
    assert not check.allows(origin)


def test_entry_with_default_port_matches_origin_without(req: Callable[..., Request]) -> None:
    assert OriginCheck(["https://example.com:443"]).allows("https://example.com")
    assert OriginCheck(["http://example.com:80"]).allows("http://example.com")
    assert not OriginCheck(["http://example.com:80"]).allows("https://example.com")


def test_star_allows_everything_but_null() -> None:
    c = OriginCheck(["*"])
    assert c.allows("https://anything.test:1234")
    assert not c.allows("null")
    assert OriginCheck(["*", "null"]).allows("null")


def test_null_listed() -> None:
    c = OriginCheck(["null", "https://example.com"])
    assert c.allows("null")
    assert not c.allows("https://evil.test")


def test_missing_policy(req: Callable[..., Request]) -> None:
    assert build_chain([OriginCheck(ALLOWED, missing="allow")])(req()) is None
    resp = build_chain([OriginCheck(ALLOWED, missing="refuse")])(req())
    assert resp is not None and resp.status == 403 and resp.body["error"] == "origin_not_allowed"


def test_middleware_response(req: Callable[..., Request]) -> None:
    chain = build_chain([OriginCheck(ALLOWED)])
    resp = chain(req(headers={"Origin": "https://example.com.evil.test"}))
    assert resp is not None
    assert resp.status == 403
    assert resp.body == {"error": "origin_not_allowed", "message": "origin not allowed"}
    assert chain(req(headers={"origin": "https://example.com"})) is None


@pytest.mark.parametrize(
    "entry", ["example.com", "https://", "https://*.", "https://*.*.x.test", "https://a.test/p"]
)
def test_bad_entries_are_config_errors(entry: str) -> None:
    with pytest.raises(ConfigError) as e:
        OriginCheck([entry])
    assert e.value.key == "origin.allowed"


def test_normalize_origin() -> None:
    assert normalize_origin("WSS://Host.Test") == ("wss", "host.test", 443)
    assert normalize_origin("ftp://host.test") is None  # no default port known
    assert normalize_origin("ftp://host.test:21") == ("ftp", "host.test", 21)
