"""Pre-upgrade middleware: the chain (``base``), the standard middlewares and the default
chain built from a Config (``chain.default_chain``)."""

from __future__ import annotations

from wshub.middleware.accesslog import AccessLog
from wshub.middleware.auth import TokenAuth, TokenValidator, extract_token
from wshub.middleware.base import (
    CloseInfo,
    Middleware,
    Next,
    Request,
    Response,
    build_chain,
    reject,
)
from wshub.middleware.caps import ConnectionCaps
from wshub.middleware.chain import any_of, default_chain
from wshub.middleware.clientip import get_header, resolve_client_ip
from wshub.middleware.jwt import JWTAuth
from wshub.middleware.origin import OriginCheck, normalize_origin
from wshub.middleware.ratelimit import RateLimit
from wshub.middleware.recover import Recover

__all__ = [
    "AccessLog",
    "CloseInfo",
    "ConnectionCaps",
    "JWTAuth",
    "Middleware",
    "Next",
    "OriginCheck",
    "RateLimit",
    "Recover",
    "Request",
    "Response",
    "TokenAuth",
    "TokenValidator",
    "any_of",
    "build_chain",
    "default_chain",
    "extract_token",
    "get_header",
    "normalize_origin",
    "reject",
    "resolve_client_ip",
]
