"""JSON log lines and redaction: no secret ever reaches a formatted line."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from wshub.logs import (
    REDACTED,
    JsonFormatter,
    ScrubFilter,
    is_sensitive_name,
    redact_headers,
    redact_query,
    register_secret,
    request_secrets,
    scrub,
    setup_logging,
)

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiI0MiIsImV4cCI6MTk5OTk5OTk5OX0"
    ".Qm9ndXNTaWduYXR1cmVWYWx1ZUZvclRlc3Rpbmc"
)


def record(msg: str = "hello", *args: Any, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"boom {JWT}")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.getLogger("wshub.test").makeRecord(
        "wshub.test", logging.INFO, __file__, 1, msg, args, exc_info, extra=extra or None
    )
    return rec


def fmt(rec: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    return line, json.loads(line)


# ----------------------------------------------------------------------------- formatter


def test_line_fields() -> None:
    _, doc = fmt(record("user %s joined", "alice", event="join", n=3, tags={"a", "b"}))
    assert doc["level"] == "info"
    assert doc["logger"] == "wshub.test"
    assert doc["msg"] == "user alice joined"
    assert doc["event"] == "join"
    assert doc["n"] == 3
    assert sorted(doc["tags"]) == ["a", "b"]
    assert doc["ts"].endswith("Z") and "T" in doc["ts"]
    assert "traceback" not in doc


def test_exc_info_becomes_traceback_string() -> None:
    line, doc = fmt(record("failed", exc=True))
    assert "Traceback" in doc["traceback"]
    assert "ValueError" in doc["traceback"]
    assert JWT not in line and REDACTED in doc["traceback"]


def test_jwt_scrubbed_from_message_and_extras() -> None:
    line, doc = fmt(record("got %s", JWT, url=f"/ws?t={JWT}&x=1", nested={"a": [JWT]}))
    assert "eyJ" not in line
    assert doc["msg"] == f"got {REDACTED}"
    assert doc["url"] == f"/ws?t={REDACTED}&x=1"


def test_sensitive_extra_names_redacted() -> None:
    _, doc = fmt(record("x", token="plain-static-value", password="hunter2", api_key="k" * 10))
    assert doc["token"] == doc["password"] == doc["api_key"] == REDACTED


def test_registered_secret_scrubbed() -> None:
    register_secret("static-upgrade-token-XYZ")
    register_secret("short")  # too short to register: would mangle ordinary text
    line, _ = fmt(record("token was static-upgrade-token-XYZ, short"))
    assert "static-upgrade-token-XYZ" not in line
    assert "short" in line


def test_registered_secret_with_json_escapes_scrubbed() -> None:
    secret = 'we"ird\\secret-value'
    register_secret(secret)
    _line, doc = fmt(record("x", detail=f"has {secret} inside"))
    assert doc["detail"] == f"has {REDACTED} inside"


def test_unserialisable_values_fall_back() -> None:
    _, doc = fmt(record("x", obj=object(), big=2**80))
    assert isinstance(doc["obj"], str)
    assert doc["big"] == str(2**80)


# ----------------------------------------------------------------------------- query


@pytest.mark.parametrize(
    "name",
    [
        "token", "Token", "jwt", "access_token", "auth", "api_key", "apikey", "api-key",
        "key", "password", "secret", "signature", "sig", "refresh_token", "client_secret",
        "user_password", "%74oken", "subscription_token", "X-Amz-Signature",
    ],
)  # fmt: skip
def test_redact_query_sensitive(name: str) -> None:
    out = redact_query(f"a=1&{name}=supersecretvalue&b=2")
    assert "supersecretvalue" not in out
    assert out == f"a=1&{name}={REDACTED}&b=2"


def test_redact_query_keeps_other_values() -> None:
    qs = "cf_protocol_version=v2&format=json&encoding=binary&empty=&flag"
    assert redact_query(qs) == qs
    assert redact_query("") == ""


def test_redact_query_repeated_and_padded() -> None:
    out = redact_query("token=abc%3D%3D&token=def==&x=1")
    assert out == f"token={REDACTED}&token={REDACTED}&x=1"


def test_redact_query_scrubs_jwt_under_any_name() -> None:
    assert redact_query(f"t={JWT}") == f"t={REDACTED}"


def test_is_sensitive_name_negatives() -> None:
    for n in ("user", "channel", "format", "monkey_business", "cf_protocol_version"):
        assert not is_sensitive_name(n)


# ----------------------------------------------------------------------------- headers


def test_redact_headers() -> None:
    h = {
        "Authorization": "Bearer abcdef123456",
        "proxy-authorization": "Basic dXNlcjpwYXNz",
        "Cookie": "session=abc123; theme=dark",
        "X-API-Key": "key-123456",
        "X-Auth-Token": "tok-123456",
        "User-Agent": f"agent {JWT}",
        "Origin": "https://example.com",
        "Sec-WebSocket-Protocol": "centrifuge-json",
    }
    out = redact_headers(h)
    assert out["Authorization"] == f"Bearer {REDACTED}"
    assert out["proxy-authorization"] == f"Basic {REDACTED}"
    assert out["Cookie"] == f"session={REDACTED}; theme={REDACTED}"
    assert out["X-API-Key"] == REDACTED
    assert out["X-Auth-Token"] == REDACTED
    assert out["User-Agent"] == f"agent {REDACTED}"
    assert out["Origin"] == "https://example.com"
    assert out["Sec-WebSocket-Protocol"] == "centrifuge-json"
    blob = json.dumps(out)
    for secret in ("abcdef123456", "dXNlcjpwYXNz", "abc123", "key-123456", "tok-123456", JWT):
        assert secret not in blob


def test_redact_headers_authorization_without_scheme() -> None:
    assert redact_headers({"Authorization": "rawtoken"})["Authorization"] == REDACTED


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("centrifuge-protobuf", "centrifuge-protobuf"),
        ("graphql-transport-ws, mqtt", "graphql-transport-ws, mqtt"),
        (f"access_token, {JWT}", f"{REDACTED}, {REDACTED}"),
        ("chat, aZ3kQ9mP2xL7vB4nR8tY", f"chat, {REDACTED}"),
        (
            "base64url.bearer.authorization.k8s.io.dG9rZW4",
            REDACTED,
        ),
    ],
)
def test_redact_subprotocol_tokens(value: str, expected: str) -> None:
    assert redact_headers({"Sec-WebSocket-Protocol": value})["Sec-WebSocket-Protocol"] == expected


def test_request_secrets() -> None:
    found = request_secrets(
        "token=abc%2Bdef&x=1",
        {"Authorization": "Bearer bearer-cred", "Cookie": "sid=cookieval", "X-Api-Key": "apik"},
    )
    assert set(found) >= {"abc%2Bdef", "abc+def", "bearer-cred", "cookieval", "apik"}
    assert scrub("echo abc+def and bearer-cred", found) == f"echo {REDACTED} and {REDACTED}"


# ----------------------------------------------------------------------------- filter/setup


def test_scrub_filter_renders_and_scrubs() -> None:
    rec = record("value %s", JWT, path=f"/x?{JWT}")
    assert ScrubFilter().filter(rec)
    assert rec.getMessage() == f"value {REDACTED}"
    assert rec.__dict__["path"] == f"/x?{REDACTED}"


def test_scrub_filter_scrubs_exception_text_for_plain_formatters() -> None:
    rec = record("failed", exc=True)
    ScrubFilter().filter(rec)
    text = logging.Formatter().format(rec)
    assert JWT not in text and "ValueError" in text


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_restored")
def test_setup_logging_writes_json_and_is_idempotent() -> None:
    buf = io.StringIO()
    setup_logging("debug", stream=io.StringIO())
    handler = setup_logging("warning", stream=buf)
    root = logging.getLogger()
    assert sum(1 for h in root.handlers if getattr(h, "_wshub", False)) == 1
    assert root.level == logging.WARNING
    assert handler in root.handlers
    log = logging.getLogger("wshub.some.module")
    log.info("not shown")
    log.warning("bad token %s", JWT, extra={"event": "x", "conn": "c1"})
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["level"] == "warning"
    assert doc["logger"] == "wshub.some.module"
    assert doc["event"] == "x" and doc["conn"] == "c1"
    assert JWT not in lines[0]
