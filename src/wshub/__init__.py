"""wshub: a real-time WebSocket gateway and framework, wire-compatible with Centrifugo."""

from wshub.app import (
    Allow,
    App,
    ClientContext,
    ConnectContext,
    DisconnectContext,
    PublishContext,
    RefreshContext,
    RPCContext,
    SubscribeContext,
)
from wshub.config import Config
from wshub.errors import CommandError, ConfigError, DisconnectError, WshubError

__version__ = "0.1.0"

__all__ = [
    "Allow",
    "App",
    "ClientContext",
    "CommandError",
    "Config",
    "ConfigError",
    "ConnectContext",
    "DisconnectContext",
    "DisconnectError",
    "PublishContext",
    "RPCContext",
    "RefreshContext",
    "SubscribeContext",
    "WshubError",
    "__version__",
]
