"""resolve_client_ip: X-Forwarded-For walked right to left over trusted hops only."""

from __future__ import annotations

import pytest

from wshub.errors import ConfigError
from wshub.middleware.clientip import get_header, resolve_client_ip

TRUSTED = ["10.0.0.0/8", "192.168.1.1", "fd00::/8"]


def xff(v: str) -> dict[str, str]:
    return {"X-Forwarded-For": v}


def test_no_trusted_proxies_means_peer() -> None:
    assert resolve_client_ip("203.0.113.9", xff("1.2.3.4"), []) == "203.0.113.9"


def test_untrusted_peer_cannot_spoof() -> None:
    assert resolve_client_ip("203.0.113.9", xff("1.2.3.4"), TRUSTED) == "203.0.113.9"


def test_trusted_peer() -> None:
    assert resolve_client_ip("10.1.2.3", xff("1.2.3.4"), TRUSTED) == "1.2.3.4"
    assert resolve_client_ip("10.1.2.3", {}, TRUSTED) == "10.1.2.3"


def test_walks_right_to_left_skipping_trusted_hops() -> None:
    h = xff("6.6.6.6, 1.2.3.4, 192.168.1.1, 10.9.9.9")  # 6.6.6.6 was forged by the client
    assert resolve_client_ip("10.0.0.1", h, TRUSTED) == "1.2.3.4"


def test_all_hops_trusted_gives_leftmost() -> None:
    assert resolve_client_ip("10.0.0.1", xff("10.0.0.5, 10.0.0.6"), TRUSTED) == "10.0.0.5"


def test_garbage_stops_the_walk() -> None:
    assert resolve_client_ip("10.0.0.1", xff("1.2.3.4, nonsense, 10.0.0.6"), TRUSTED) == "10.0.0.6"
    assert resolve_client_ip("10.0.0.1", xff("unknown"), TRUSTED) == "10.0.0.1"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("1.2.3.4:5678", "1.2.3.4"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ('"1.2.3.4"', "1.2.3.4"),
        ("::ffff:1.2.3.4", "1.2.3.4"),
    ],
)
def test_entry_forms(entry: str, expected: str) -> None:
    assert resolve_client_ip("10.0.0.1", xff(entry), TRUSTED) == expected


def test_ipv6_and_mapped_peer() -> None:
    assert resolve_client_ip("fd00::1", xff("2001:db8::7"), TRUSTED) == "2001:db8::7"
    assert resolve_client_ip("::ffff:10.0.0.1", xff("1.2.3.4"), TRUSTED) == "1.2.3.4"


def test_header_lookup_case_insensitive() -> None:
    assert resolve_client_ip("10.0.0.1", {"x-forwarded-for": "1.2.3.4"}, TRUSTED) == "1.2.3.4"
    assert get_header({"X-FORWARDED-FOR": "a"}, "X-Forwarded-For") == "a"
    assert get_header({}, "Origin") is None


def test_bad_trusted_entry() -> None:
    with pytest.raises(ConfigError) as e:
        resolve_client_ip("10.0.0.1", {}, ["not-an-ip"])
    assert e.value.key == "limits.trusted_proxies"
