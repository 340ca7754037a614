"""Origin allow-list: the defence against cross-site WebSocket hijacking (CSWSH).

Browsers attach ``Origin`` to every WebSocket upgrade and let any page open a socket to any
host, with the user's cookies. Checking ``Origin`` against an allow-list is what stops a
foreign page from riding a logged-in user's session.

Matching, after normalising both sides (scheme and host lower-cased, a trailing dot on the
host dropped, the default port made explicit: 80 for http/ws, 443 for https/wss):

* ``https://app.example.com`` (or ``...:443``) matches exactly that scheme, host and port;
  ``http://`` vs ``https://`` and ``:8443`` vs ``:443`` are different origins.
* ``https://*.example.com[:port]`` matches any subdomain, at any depth, of example.com on
  that scheme and port; not ``example.com`` itself, not ``example.com.evil.test``, not
  ``evil-example.com``.
* ``*`` allows every origin (except ``null``, see below).
* ``null``, the opaque origin of sandboxed iframes, ``file:`` pages and some redirects,
  is refused unless ``null`` is itself an entry: an attacker can produce it at will.
* A value that is not a bare ``scheme://host[:port]`` (a path, credentials, several
  values) is refused.
* No ``Origin`` header (non-browser clients) follows ``missing``: ``allow`` or ``refuse``.

Refusal: 403 ``origin_not_allowed``. An empty allow-list disables the check (the chain
builder does not add this middleware then; constructing it directly with no entries
refuses every Origin-bearing request).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal
from urllib.parse import urlsplit

from wshub.errors import ConfigError
from wshub.middleware.base import Next, Request, Response, reject
from wshub.middleware.clientip import get_header

__all__ = ["OriginCheck", "normalize_origin"]

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}

_Origin = tuple[str, str, int]


def normalize_origin(value: str) -> _Origin | None:
    """``(scheme, host, port)`` of a serialised origin, or None if it is not one."""
    value = value.strip()
    if not value or any(c in value for c in " ,\t\\"):
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if (
        not scheme
        or not host
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "*" in host
    ):
        return None
    if port is None:
        port = _DEFAULT_PORTS.get(scheme)
        if port is None:
            return None
    return scheme, host, port


class OriginCheck:
    """Origin allow-list middleware (see the module docstring)."""

    def __init__(
        self, allowed: Iterable[str], *, missing: Literal["allow", "refuse"] = "allow"
    ) -> None:
        self._any = False
        self._null = False
        self._exact: set[_Origin] = set()
        self._wild: list[tuple[str, str, int]] = []  # scheme, ".suffix", port
        self._missing_allowed = missing == "allow"
        for raw in allowed:
            entry = raw.strip()
            if entry == "*":
                self._any = True
            elif entry.lower() == "null":
                self._null = True
            elif "://*." in entry:
                scheme, _, rest = entry.partition("://*.")
                parsed = normalize_origin(f"{scheme}://{rest}")
                if parsed is None or "*" in rest:
                    raise ConfigError("origin.allowed", f"not a valid wildcard origin: {raw!r}")
                s, h, p = parsed
                self._wild.append((s, "." + h, p))
            else:
                parsed = normalize_origin(entry)
                if parsed is None:
                    raise ConfigError(
                        "origin.allowed", f"not an origin (scheme://host[:port]): {raw!r}"
                    )
                self._exact.add(parsed)

    def allows(self, origin: str | None) -> bool:
        """Whether an upgrade with this Origin header value (None: absent) may proceed."""
        if origin is None:
            return self._missing_allowed
        if origin.strip().lower() == "null":
            return self._null
        parsed = normalize_origin(origin)
        if parsed is None:
            return False
        if self._any or parsed in self._exact:
            return True
        scheme, host, port = parsed
        return any(
            scheme == s and port == p and host.endswith(suffix) and len(host) > len(suffix)
            for s, suffix, p in self._wild
        )

    def __call__(self, request: Request, call_next: Next) -> Response | None:
        if not self.allows(get_header(request.headers, "Origin")):
            return reject(403, "origin_not_allowed", "origin not allowed")
        return call_next(request)
