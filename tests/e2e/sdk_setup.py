"""What both SDK suites share: the gateway's token secret, its test configuration (the
namespaces the scenarios use) and connection tokens."""

from __future__ import annotations

import time
from typing import Any

import jwt

from support import make_config, open_namespace
from wshub.config import Config, NamespaceConfig

SECRET = "e2e-sdk-secret-that-is-long-enough-for-hs256"
GRACE = 0.5
"""client.expire_grace: how long after expiry an unrefreshed connection is closed."""


def token(sub: str, ttl: float | None = None, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, **claims}
    if ttl is not None:
        payload["exp"] = int(time.time() + ttl)
    return jwt.encode(payload, SECRET, algorithm="HS256")


def config(**overrides: Any) -> Config:
    namespaces: list[NamespaceConfig] = [
        open_namespace(""),
        open_namespace("pres", presence=True, join_leave=True),
        open_namespace("hist", history_size=100, history_ttl=300, force_recovery=True),
        NamespaceConfig(name="private", allow_publish_for_subscriber=True),
        NamespaceConfig(name="chat", allow_user_limited_channels=True),
    ]
    opts: dict[str, Any] = dict(
        token={"hmac_secret": SECRET, "leeway": 0.0},
        client={"expire_grace": GRACE},
        namespaces=namespaces,
    )
    opts.update(overrides)
    return make_config(**opts)
