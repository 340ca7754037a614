"""Structured JSON logging and redaction.

Every line is one JSON object: ``ts`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``,
``msg``, then every ``extra={...}`` field of the call (by convention ``event`` names what
happened), and ``traceback`` / ``stack`` as strings when present.

No secret may reach a log line. Three layers:

1. Callers redact what they log: :func:`redact_query` for query strings and
   :func:`redact_headers` for header mappings.
2. The formatter replaces the value of any ``extra`` field whose *name* looks secret
   (``token``, ``password``, ``api_key`` ...).
3. Belt and braces, on the finished line: :class:`ScrubFilter` (and the formatter itself)
   replace every JWT-looking string (three base64url segments starting ``eyJ``) and every
   secret registered with :func:`register_secret` (the HMAC secret, static upgrade tokens,
   the API key ...) with ``[REDACTED]``.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import unquote_plus

import orjson

__all__ = [
    "REDACTED",
    "JsonFormatter",
    "ScrubFilter",
    "is_sensitive_name",
    "redact_headers",
    "redact_query",
    "register_secret",
    "request_secrets",
    "scrub",
    "setup_logging",
]

REDACTED = "[REDACTED]"

# --------------------------------------------------------------------------- names

_SENSITIVE_NAMES = frozenset(
    {
        "token",
        "jwt",
        "access_token",
        "auth",
        "authorization",
        "api_key",
        "apikey",
        "key",
        "password",
        "passwd",
        "pwd",
        "secret",
        "signature",
        "sig",
        "session",
        "sessionid",
        "credential",
        "credentials",
        "cookie",
    }
)
_SENSITIVE_PARTS = ("token", "secret", "password", "passwd", "credential", "signature")


def is_sensitive_name(name: str) -> bool:
    """Whether a parameter/field called ``name`` carries a secret value."""
    n = name.strip().lower().replace("-", "_")
    if n in _SENSITIVE_NAMES or n.endswith("_key"):
        return True
    return any(part in n for part in _SENSITIVE_PARTS)


# --------------------------------------------------------------------------- scrubbing

_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_=-]*){2}")
_MIN_SECRET_LEN = 8
_secrets: set[str] = set()
_secrets_re: re.Pattern[str] | None = None
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Scrub ``value`` from every log line from now on.

    Values shorter than 8 characters are not registered (they would mangle ordinary text);
    such secrets are weak anyway.
    """
    global _secrets_re
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _secrets_lock:
        if value in _secrets:
            return
        _secrets.add(value)
        escaped = orjson.dumps(value).decode()[1:-1]  # as it appears inside a JSON line
        _secrets.add(escaped)
        ordered = sorted(_secrets, key=len, reverse=True)
        _secrets_re = re.compile("|".join(re.escape(s) for s in ordered))


def scrub(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """``text`` with JWTs, registered secrets and ``extra_secrets`` replaced."""
    if not text:
        return text
    for s in sorted({s for s in extra_secrets if s}, key=len, reverse=True):
        text = text.replace(s, REDACTED)
    pattern = _secrets_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    if "eyJ" in text:
        text = _JWT_RE.sub(REDACTED, text)
    return text


# --------------------------------------------------------------------------- query/headers


def redact_query(query_string: str) -> str:
    """The query string with the values of token-like parameters replaced by ``[REDACTED]``.

    Names are matched after URL-decoding, case-insensitively (see :func:`is_sensitive_name`).
    Other values are kept as sent, except that JWT-looking strings are scrubbed anywhere.
    """
    if not query_string:
        return query_string
    out: list[str] = []
    for part in query_string.split("&"):
        name, sep, _value = part.partition("=")
        if sep and is_sensitive_name(unquote_plus(name)):
            out.append(f"{name}={REDACTED}")
        else:
            out.append(part)
    return scrub("&".join(out))


_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})
_SECRET_HEADERS = frozenset({"x-api-key", "api-key", "x-auth-token", "x-csrf-token"})
_COOKIE_HEADERS = frozenset({"cookie", "set-cookie"})
_TOKENISH_RE = re.compile(r"[A-Za-z0-9_\-+/=.~]+")


def _looks_like_token(item: str) -> bool:
    if _JWT_RE.search(item):
        return True
    low = item.lower()
    if any(w in low for w in ("token", "bearer", "secret", "apikey", "api-key", "authorization")):
        return True
    if len(item) >= 40:
        return True
    if len(item) >= 16 and _TOKENISH_RE.fullmatch(item):
        has_digit = any(c.isdigit() for c in item)
        has_upper = any(c.isupper() for c in item)
        has_lower = any(c.islower() for c in item)
        return has_digit and has_upper and has_lower
    return False


def _redact_header(name: str, value: str) -> str:
    n = name.lower()
    if n in _AUTH_HEADERS:
        scheme, sep, _cred = value.strip().partition(" ")
        return f"{scheme} {REDACTED}" if sep else REDACTED
    if n in _COOKIE_HEADERS:
        parts = []
        for c in value.split(";"):
            cname, sep, _cv = c.strip().partition("=")
            parts.append(f"{cname}={REDACTED}" if sep else cname)
        return "; ".join(parts)
    if n == "sec-websocket-protocol":
        items = [i.strip() for i in value.split(",")]
        return ", ".join(REDACTED if _looks_like_token(i) else i for i in items)
    if n in _SECRET_HEADERS or is_sensitive_name(n.replace("x-", "", 1)):
        return REDACTED
    return scrub(value)


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A copy of ``headers`` safe to log.

    ``Authorization``/``Proxy-Authorization`` keep their scheme (``Bearer [REDACTED]``);
    ``Cookie`` keeps cookie names; ``X-API-Key`` and headers named like secrets are
    replaced; ``Sec-WebSocket-Protocol`` entries that look like tokens are replaced; every
    other value is scrubbed of JWTs.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: _redact_header(k, v) for k, v in items}


def request_secrets(query_string: str, headers: Mapping[str, str]) -> list[str]:
    """The secret values one upgrade request carries (sensitive query values, credentials,
    cookie values), to scrub from text that might echo them (an exception message)."""
    found: list[str] = []
    for part in query_string.split("&") if query_string else ():
        name, sep, value = part.partition("=")
        if sep and value and is_sensitive_name(unquote_plus(name)):
            found.append(value)
            decoded = unquote_plus(value)
            if decoded != value:
                found.append(decoded)
    for name, value in headers.items():
        n = name.lower()
        if n in _AUTH_HEADERS:
            _scheme, sep, cred = value.strip().partition(" ")
            found.append(cred.strip() if sep else value.strip())
        elif n in _COOKIE_HEADERS:
            for c in value.split(";"):
                _cn, sep, cv = c.strip().partition("=")
                if sep and cv:
                    found.append(cv)
        elif n in _SECRET_HEADERS or is_sensitive_name(n.replace("x-", "", 1)):
            found.append(value.strip())
    return [s for s in found if len(s) >= 4]


# --------------------------------------------------------------------------- formatter

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _default(obj: Any) -> Any:
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return str(obj)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; see the module docstring for the fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _RESERVED or key.startswith("_") or key in doc:
                continue
            doc[key] = REDACTED if is_sensitive_name(key) and value else value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["traceback"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        try:
            line = orjson.dumps(doc, default=_default, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            # e.g. an int beyond 64 bits: fall back to text for every non-string value.
            line = orjson.dumps({k: v if isinstance(v, str) else repr(v) for k, v in doc.items()})
        return scrub(line.decode())


class ScrubFilter(logging.Filter):
    """Scrub JWTs and registered secrets from a record before any formatter sees it.

    Attach to handlers (so propagated records are covered too). It renders the message
    (``msg % args``) into ``msg``, scrubs string ``extra`` fields and the exception text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the raw parts
            message = f"{record.msg!r} {record.args!r}"
        record.msg = scrub(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key in _RESERVED or key.startswith("_"):
                continue
            if isinstance(value, str):
                record.__dict__[key] = scrub(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def setup_logging(level: str | int = "info", *, stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record (root logger) to ``stream`` (stderr) as JSON lines.

    Idempotent: a handler installed by an earlier call is replaced. Returns the handler.
    """
    lvl = _LEVELS.get(level.lower(), logging.INFO) if isinstance(level, str) else level
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_wshub", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ScrubFilter())
    handler._wshub = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(lvl)
    return handler
