"""Token authentication before the upgrade (static tokens and/or a validator callable).

The token is read from the query parameter ``query_param`` (``?token=...``, what browsers
can send) or else from the header ``header`` (``Authorization: Bearer <t>``; a header
without a scheme, e.g. ``X-Token: <t>``, is taken whole; another scheme such as ``Basic``
is ignored). Refusals:

* no token                 -> 401 ``missing_token`` (with ``WWW-Authenticate: Bearer``)
* token not accepted       -> 403 ``invalid_token``

A static token is compared with :func:`hmac.compare_digest` against every configured token
(no early exit). If no static token matches and a validator is set, ``validator(token)``
decides: a dict is the claims to attach, ``None`` refuses.

On success ``request.state["user"]`` is the claims' ``sub`` (``""`` for a static token or
claims without one) and ``request.state["claims"]`` the claims (``{}`` for a static token).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from typing import Any

from wshub.logs import register_secret
from wshub.middleware.base import Next, Request, Response, reject
from wshub.middleware.clientip import get_header

__all__ = ["TokenAuth", "TokenValidator", "extract_token"]

TokenValidator = Callable[[str], dict[str, Any] | None]


def extract_token(request: Request, query_param: str, header: str) -> str | None:
    """The credential of an upgrade request: query parameter first, then the header."""
    if query_param:
        value = request.query.get(query_param)
        if value:
            return value
    if header:
        raw = get_header(request.headers, header)
        if raw:
            raw = raw.strip()
            scheme, sep, rest = raw.partition(" ")
            if not sep:
                return raw or None
            if scheme.lower() == "bearer":
                return rest.strip() or None
    return None


class TokenAuth:
    """Static-token / validator authentication middleware (see the module docstring)."""

    def __init__(
        self,
        tokens: Iterable[str] = (),
        *,
        validator: TokenValidator | None = None,
        query_param: str = "token",
        header: str = "Authorization",
    ) -> None:
        self._tokens = [t.encode() for t in tokens if t]
        for t in tokens:
            register_secret(t)
        self._validator = validator
        self._query_param = query_param
        self._header = header
        if not self._tokens and validator is None:
            raise ValueError("TokenAuth needs static tokens or a validator")

    def _static_match(self, token: str) -> bool:
        candidate = token.encode()
        matched = False
        for t in self._tokens:
            matched |= hmac.compare_digest(candidate, t)
        return matched

    def __call__(self, request: Request, call_next: Next) -> Response | None:
        token = extract_token(request, self._query_param, self._header)
        if token is None:
            return reject(
                401, "missing_token", "authentication required", WWW_Authenticate="Bearer"
            )
        if self._static_match(token):
            request.state["user"] = ""
            request.state["claims"] = {}
            return call_next(request)
        if self._validator is not None:
            claims = self._validator(token)
            if claims is not None:
                sub = claims.get("sub", "")
                request.state["user"] = sub if isinstance(sub, str) else str(sub)
                request.state["claims"] = claims
                return call_next(request)
        return reject(403, "invalid_token", "invalid token")
