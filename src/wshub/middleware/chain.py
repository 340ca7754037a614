"""The default pre-upgrade chain built from a :class:`~wshub.config.Config`.

Order, outermost first, and why:

1. ``Recover``   - an exception anywhere below becomes a bare 500 (always on).
2. ``AccessLog`` - sees the final outcome of everything below: opens, closes, and every
   refusal with its status and slug (``log.access``).
3. ``OriginCheck`` - a static header test, the cheapest refusal, and cross-site pages
   must be refused before they spend anyone's rate or capacity (``origin.allowed``).
4. ``RateLimit`` - before caps and auth, so floods and token guessing are throttled
   before any counting or signature work; every attempt costs a token
   (``limits.connect_rate``).
5. ``ConnectionCaps`` - before auth so an overloaded server refuses with 503 before doing
   crypto; it reserves a slot and gives it back if anything further in (auth, ``extra``)
   refuses or raises, so only upgrades that go ahead are counted, each released exactly
   once on close (``limits.max_connections`` / ``max_connections_per_ip``).
6. auth - ``TokenAuth`` (``auth.tokens`` or a ``token_validator``) and/or ``JWTAuth``
   (``auth.jwt``). When both are on, either credential is enough: the static/validator
   check runs first and, if it refuses, the JWT check decides (its refusal is returned).
7. ``extra`` - application middleware, which sees ``request.state["user"/"claims"]``.

``default_chain`` returns the list; pass it to :func:`~wshub.middleware.base.build_chain`.
The ``ConnectionCaps`` instance in it (find it with ``isinstance``) exposes the counters
for metrics.
"""

from __future__ import annotations

from collections.abc import Iterable

from wshub.config import Config
from wshub.errors import ConfigError
from wshub.middleware.accesslog import AccessLog
from wshub.middleware.auth import TokenAuth, TokenValidator
from wshub.middleware.base import Middleware, Next, Request, Response
from wshub.middleware.caps import ConnectionCaps
from wshub.middleware.jwt import JWTAuth
from wshub.middleware.origin import OriginCheck
from wshub.middleware.ratelimit import RateLimit
from wshub.middleware.recover import Recover
from wshub.tokens import TokenVerifier

__all__ = ["any_of", "default_chain"]


def any_of(*alternatives: Middleware) -> Middleware:
    """A middleware that passes if any alternative would pass (tried in order).

    Each alternative is run with a probe instead of the real ``call_next``; the first that
    calls it wins and the real rest of the chain runs once. If none passes, the last
    refusal is returned. Alternatives must not mutate ``request.state`` when refusing
    (the auth middlewares only set it on success).
    """
    if not alternatives:
        raise ValueError("any_of needs at least one middleware")

    def middleware(request: Request, call_next: Next) -> Response | None:
        refusal: Response | None = None
        for alt in alternatives:
            passed = False

            def probe(_request: Request) -> Response | None:
                nonlocal passed
                passed = True
                return None

            result = alt(request, probe)
            if passed and result is None:
                return call_next(request)
            refusal = result
        return refusal

    return middleware


def default_chain(
    config: Config,
    *,
    token_validator: TokenValidator | None = None,
    extra: Iterable[Middleware] = (),
) -> list[Middleware]:
    """The standard middleware list for ``config`` (see the module docstring for the order)."""
    chain: list[Middleware] = [Recover()]
    if config.log.access:
        chain.append(AccessLog())
    if config.origin.allowed:
        chain.append(OriginCheck(config.origin.allowed, missing=config.origin.missing))
    limits = config.limits
    if limits.connect_rate > 0:
        chain.append(RateLimit(limits.connect_rate, limits.connect_burst))
    if limits.max_connections > 0 or limits.max_connections_per_ip > 0:
        chain.append(ConnectionCaps(limits.max_connections, limits.max_connections_per_ip))

    auth = config.auth
    auths: list[Middleware] = []
    if auth.tokens or token_validator is not None:
        auths.append(
            TokenAuth(
                auth.tokens,
                validator=token_validator,
                query_param=auth.token_query_param,
                header=auth.token_header,
            )
        )
    if auth.jwt:
        verifier = TokenVerifier(config.token)
        if not verifier.configured:
            raise ConfigError("auth.jwt", "needs a key in [token] (hmac_secret, rsa/ecdsa, jwks)")
        auths.append(
            JWTAuth(
                verifier,
                query_param=auth.token_query_param,
                header=auth.token_header,
            )
        )
    if len(auths) == 1:
        chain.append(auths[0])
    elif auths:
        chain.append(any_of(*auths))

    chain.extend(extra)
    return chain
