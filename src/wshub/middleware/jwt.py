"""JWT authentication before the upgrade, using :class:`wshub.tokens.TokenVerifier`.

The token comes from the query parameter (``?token=...``) or ``Authorization: Bearer``
(see :func:`wshub.middleware.auth.extract_token`). Status mapping:

============================================  ======  =================
situation                                     status  ``error``
============================================  ======  =================
no token                                      401     ``missing_token``
bad signature, wrong alg/key, malformed,      403     ``invalid_token``
nbf/iat in the future, wrong iss or aud
signature good but ``exp`` passed (+leeway)   401     ``token_expired``
============================================  ======  =================

Expired is 401, not 403: the client's credential is merely stale and a fresh token will
work (it is the HTTP analogue of Centrifugo's 109 "token expired" / refresh). The 401s
carry ``WWW-Authenticate: Bearer`` (with ``error="invalid_token"`` for the expired case,
per RFC 6750).

On success ``request.state["user"]`` is the ``sub`` claim (``""`` without one) and
``request.state["claims"]`` the verified claims.
"""

from __future__ import annotations

from wshub.middleware.auth import extract_token
from wshub.middleware.base import Next, Request, Response, reject
from wshub.tokens import TokenExpired, TokenInvalid, TokenVerifier

__all__ = ["JWTAuth"]


class JWTAuth:
    """JWT authentication middleware (see the module docstring)."""

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        query_param: str = "token",
        header: str = "Authorization",
    ) -> None:
        self._verifier = verifier
        self._query_param = query_param
        self._header = header

    def __call__(self, request: Request, call_next: Next) -> Response | None:
        token = extract_token(request, self._query_param, self._header)
        if token is None:
            return reject(
                401, "missing_token", "authentication required", WWW_Authenticate="Bearer"
            )
        try:
            claims = self._verifier.verify(token)
        except TokenExpired:
            return reject(
                401,
                "token_expired",
                "token expired",
                WWW_Authenticate='Bearer error="invalid_token", error_description="token expired"',
            )
        except TokenInvalid:
            return reject(403, "invalid_token", "invalid token")
        sub = claims.get("sub", "")
        request.state["user"] = sub if isinstance(sub, str) else str(sub)
        request.state["claims"] = claims
        return call_next(request)
