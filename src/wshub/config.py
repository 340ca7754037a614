"""Configuration: one typed tree, loaded from a TOML file, ``WSHUB_*`` environment
variables and command-line flags (flags win over the environment, which wins over the file).

Every leaf has a flat key: a top-level field is ``port``; a field of a section is
``section.field`` (``websocket.ping_interval``). The environment variable for a key is
``WSHUB_`` + the key upper-cased with dots as double underscores
(``WSHUB_WEBSOCKET__PING_INTERVAL``); the flag is ``--`` + the key with dots and
underscores as dashes (``--websocket-ping-interval``).

Each field's description (and any constraint: ``ge``, ``gt``, ...) lives in its type as
``Annotated[T, msgspec.Meta(...)]`` so it is available at runtime (``--help``, docs,
validation); see ``wshub.configload`` for loading and ``config_keys()``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Port = Annotated[int, Meta(ge=0, le=65535)]
Seconds = Annotated[float, Meta(ge=0)]
Positive = Annotated[int, Meta(gt=0)]
NonNegative = Annotated[int, Meta(ge=0)]


class WebSocketConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The transport and connection lifecycle."""

    max_message_size: Annotated[
        Positive,
        Meta(
            description="Largest inbound message in bytes (one frame or a fragmented message); "
            "over it -> 1009."
        ),
    ] = 65536
    send_queue_bytes: Annotated[
        Positive,
        Meta(
            description="Outbound bytes buffered per connection; over it the client is closed "
            "as slow (3008)."
        ),
    ] = 1048576
    ping_interval: Annotated[
        Seconds,
        Meta(
            description="Seconds between server pings (protocol ``{}`` pings on the hub, "
            "ping frames on raw routes)."
        ),
    ] = 25.0
    pong_timeout: Annotated[
        Seconds,
        Meta(description="Seconds a peer has to answer a ping before it is closed as dead."),
    ] = 8.0
    idle_timeout: Annotated[
        Seconds,
        Meta(
            description="Close a connection that sent no message for this many seconds (0: never)."
        ),
    ] = 0.0
    handshake_timeout: Annotated[
        Seconds, Meta(description="Seconds a TCP peer has to send its upgrade request.")
    ] = 5.0
    connect_timeout: Annotated[
        Seconds,
        Meta(
            description="Seconds a hub connection has to send its connect command "
            "(else 3502 stale)."
        ),
    ] = 10.0
    drain_time: Annotated[
        Seconds,
        Meta(
            description="On SIGTERM/SIGINT: seconds to wait for clients to close after the "
            "close frame."
        ),
    ] = 5.0
    write_buffer_low: Annotated[
        NonNegative, Meta(description="Low-water mark of the socket write buffer.")
    ] = 65536


class WorkerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The bounded pool that runs Python handlers."""

    concurrency: Annotated[
        Positive, Meta(description="Handler calls running at once; more wait in the queue.")
    ] = 256
    queue_size: Annotated[
        NonNegative,
        Meta(description="Calls waiting for a worker; beyond it commands get error 111."),
    ] = 10000
    timeout: Annotated[
        Seconds,
        Meta(description="Seconds a handler may run before its command gets an internal error."),
    ] = 10.0


class AuthConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Pre-upgrade authentication (both off by default)."""

    tokens: Annotated[
        list[str],
        Meta(description="Static upgrade tokens; when non-empty the token middleware is on."),
    ] = []
    token_query_param: Annotated[
        str, Meta(description="Query parameter that may carry a static upgrade token.")
    ] = "token"
    token_header: Annotated[
        str, Meta(description="Header that may carry a static upgrade token.")
    ] = "Authorization"
    jwt: Annotated[
        bool, Meta(description="Require a valid JWT (see [token]) before the upgrade.")
    ] = False


class TokenConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How JWTs (connection and subscription tokens) are verified."""

    hmac_secret: Annotated[
        str, Meta(description="Secret for HMAC-signed (HS256/384/512) tokens (empty: off).")
    ] = ""
    rsa_public_key: Annotated[
        str, Meta(description="RSA public key for RS*/PS* tokens: PEM file path or PEM text.")
    ] = ""
    ecdsa_public_key: Annotated[
        str, Meta(description="ECDSA public key for ES* tokens: PEM file path or PEM text.")
    ] = ""
    jwks_file: Annotated[
        str, Meta(description="Path of a JWKS file with verification keys (empty: off).")
    ] = ""
    issuer: Annotated[str, Meta(description="Required ``iss`` claim (empty: not checked).")] = ""
    audience: Annotated[str, Meta(description="Required ``aud`` claim (empty: not checked).")] = ""
    leeway: Annotated[
        Seconds, Meta(description="Seconds of clock skew tolerated on exp/nbf/iat.")
    ] = 5.0


class OriginConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The Origin check on upgrades."""

    allowed: Annotated[
        list[str],
        Meta(
            description="Allowed origins, ``scheme://host[:port]``; ``https://*.example.com`` "
            "for subdomains; ``*`` allows any. Empty list: the check is off."
        ),
    ] = []
    missing: Annotated[
        Literal["allow", "refuse"],
        Meta(
            description="What to do with an upgrade that carries no Origin header "
            "(non-browser clients)."
        ),
    ] = "allow"


class LimitsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Connection admission limits."""

    connect_rate: Annotated[
        float,
        Meta(ge=0, description="Upgrades per second per client IP (token bucket; 0: off)."),
    ] = 0.0
    connect_burst: Annotated[
        Positive, Meta(description="Burst size of the per-IP upgrade token bucket.")
    ] = 20
    max_connections: Annotated[
        NonNegative,
        Meta(description="Global connection cap (0: off); over it -> 503 with Retry-After."),
    ] = 0
    max_connections_per_ip: Annotated[
        NonNegative, Meta(description="Connections per client IP (0: off).")
    ] = 0
    trusted_proxies: Annotated[
        list[str], Meta(description="Peers (IPs or CIDRs) whose X-Forwarded-For is believed.")
    ] = []


class ClientConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The Centrifugo client protocol on /connection/websocket."""

    allow_anonymous: Annotated[
        bool, Meta(description='Accept connect commands without a token (user "").')
    ] = False
    insecure: Annotated[
        bool,
        Meta(description="Development only: accept any connect and allow every channel operation."),
    ] = False
    channel_limit: Annotated[
        NonNegative, Meta(description="Subscriptions per connection; over it -> error 106.")
    ] = 128
    channel_max_length: Annotated[Positive, Meta(description="Longest channel name accepted.")] = (
        255
    )
    command_rate: Annotated[
        float,
        Meta(
            ge=0,
            description="Commands per second per connection (token bucket); over it -> error 111.",
        ),
    ] = 100.0
    command_burst: Annotated[
        Positive, Meta(description="Burst size of the per-connection command token bucket.")
    ] = 200
    command_rate_disconnect_after: Annotated[
        NonNegative,
        Meta(description="Consecutive rate-limited commands before a 3013 disconnect."),
    ] = 50
    presence_ttl: Annotated[
        Seconds, Meta(description="Seconds a presence entry lives unless refreshed.")
    ] = 60.0
    expire_grace: Annotated[
        Seconds,
        Meta(
            description="Seconds after token expiry before a connection that did not refresh "
            "is closed."
        ),
    ] = 25.0


class NamespaceConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Options of the channels ``name:...`` (the default namespace has name "")."""

    name: Annotated[
        str, Meta(description='Namespace name, the part before ":" ("" is the default namespace).')
    ] = ""
    presence: Annotated[bool, Meta(description="Keep presence information.")] = False
    join_leave: Annotated[
        bool, Meta(description="Send join/leave messages to subscribers that ask for them.")
    ] = False
    force_push_join_leave: Annotated[
        bool, Meta(description="Send join/leave messages to every subscriber.")
    ] = False
    history_size: Annotated[
        NonNegative, Meta(description="Publications kept in history (0: no history).")
    ] = 0
    history_ttl: Annotated[Seconds, Meta(description="Seconds history is kept (0: off).")] = 0.0
    force_recovery: Annotated[
        bool, Meta(description="Recover missed publications on every resubscribe.")
    ] = False
    allow_subscribe_for_client: Annotated[
        bool, Meta(description="Authenticated clients may subscribe without a token.")
    ] = False
    allow_subscribe_for_anonymous: Annotated[
        bool, Meta(description="Anonymous clients may subscribe without a token.")
    ] = False
    allow_publish_for_subscriber: Annotated[
        bool, Meta(description="Subscribers may publish from the client side.")
    ] = False
    allow_publish_for_client: Annotated[
        bool, Meta(description="Authenticated clients may publish from the client side.")
    ] = False
    allow_publish_for_anonymous: Annotated[
        bool, Meta(description="Anonymous clients may publish from the client side.")
    ] = False
    client_publication_exclude_client_info: Annotated[
        bool,
        Meta(
            description="Leave the publisher's client info out of client-side publications "
            "(smaller pushes, and subscribers do not learn who published)."
        ),
    ] = False
    allow_presence_for_subscriber: Annotated[
        bool, Meta(description="Subscribers may call presence and presence_stats.")
    ] = False
    allow_presence_for_client: Annotated[
        bool, Meta(description="Authenticated clients may call presence and presence_stats.")
    ] = False
    allow_history_for_subscriber: Annotated[
        bool, Meta(description="Subscribers may call history.")
    ] = False
    allow_history_for_client: Annotated[
        bool, Meta(description="Authenticated clients may call history.")
    ] = False
    allow_user_limited_channels: Annotated[
        bool,
        Meta(description='Channels like "chat#42,43" are open only to the users listed after "#".'),
    ] = False


class CorsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """CORS for the HTTP port (/api, /metrics, /health, /ready)."""

    allowed_origins: Annotated[
        list[str],
        Meta(
            description="Origins allowed to call the HTTP side from a browser, "
            "``scheme://host[:port]``; ``*`` allows any. Empty list: CORS off."
        ),
    ] = []
    allowed_methods: Annotated[
        list[str], Meta(description="Methods allowed in cross-origin requests.")
    ] = msgspec.field(default_factory=lambda: ["GET", "POST"])
    allowed_headers: Annotated[
        list[str], Meta(description="Request headers allowed in cross-origin requests.")
    ] = msgspec.field(default_factory=lambda: ["Authorization", "Content-Type", "X-API-Key"])
    allow_credentials: Annotated[
        bool, Meta(description="Allow cookies and credentials in cross-origin requests.")
    ] = False
    max_age: Annotated[
        NonNegative, Meta(description="Seconds browsers may cache a preflight answer.")
    ] = 600


class LogConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Logging."""

    level: Annotated[
        Literal["debug", "info", "warning", "error"], Meta(description="Minimum log level.")
    ] = "info"
    access: Annotated[bool, Meta(description="One JSON line per connection open and close.")] = True


class RuntimeConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The Python process ``wshub serve`` runs in (a library user's process is left alone)."""

    gc_freeze: Annotated[
        bool,
        Meta(
            description="After start-up, move every object alive then out of the cyclic "
            "garbage collector's view (gc.freeze), so full collections scan only what "
            "connections create."
        ),
    ] = True
    gc_threshold: Annotated[
        NonNegative,
        Meta(
            description="Allocations between young-generation collections (Python's default "
            "is 700; every connection allocates dozens of tracked objects). 0: Python's default."
        ),
    ] = 20000


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The whole gateway configuration."""

    host: Annotated[str, Meta(description="Address both listeners bind to.")] = "127.0.0.1"
    port: Annotated[Port, Meta(description="WebSocket port (the hub and raw routes).")] = 8000
    http_port: Annotated[
        Port,
        Meta(
            description="HTTP port for /api, /metrics, /health, /ready, /admin and /demo (0: off)."
        ),
    ] = 8001
    engine: Annotated[
        Literal["memory", "redis"],
        Meta(description="Broker and presence engine: memory (one node) or redis."),
    ] = "memory"
    redis_url: Annotated[str, Meta(description="Redis server URL (used when engine is redis).")] = (
        "redis://127.0.0.1:6379/0"
    )
    redis_pool_size: Annotated[
        Positive,
        Meta(
            description="Redis connections at most, the pub/sub one included; more concurrent "
            "engine calls wait for one, up to redis_pool_timeout."
        ),
    ] = 100
    redis_pool_timeout: Annotated[
        Seconds,
        Meta(description="Seconds an engine call waits for a free Redis connection."),
    ] = 5.0
    api_key: Annotated[
        str,
        Meta(
            description="Key for the server HTTP API (X-API-Key or ``Authorization: apikey``); "
            "empty: API off."
        ),
    ] = ""
    admin_password: Annotated[
        str, Meta(description="Password for /admin (empty: admin page off).")
    ] = ""
    demo: Annotated[bool, Meta(description="Serve the demo page at /demo.")] = False
    app: Annotated[
        str, Meta(description="``module:attribute`` of a wshub.App to serve (handlers, routes).")
    ] = ""
    websocket: WebSocketConfig = msgspec.field(default_factory=WebSocketConfig)
    workers: WorkerConfig = msgspec.field(default_factory=WorkerConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    token: TokenConfig = msgspec.field(default_factory=TokenConfig)
    origin: OriginConfig = msgspec.field(default_factory=OriginConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    client: ClientConfig = msgspec.field(default_factory=ClientConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    runtime: RuntimeConfig = msgspec.field(default_factory=RuntimeConfig)
    cors: CorsConfig = msgspec.field(default_factory=CorsConfig)
    namespaces: Annotated[
        list[NamespaceConfig],
        Meta(
            description='Channel namespaces; a channel without ":" uses the one named "" '
            "(or defaults). Given as [[namespaces]] tables in the file, or as a JSON array."
        ),
    ] = []
