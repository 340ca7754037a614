"""The Centrifugo client protocol v2 messages, JSON form.

Field names follow the protocol's ``client.proto``; ``data`` fields stay raw JSON
(``msgspec.Raw``) so payloads are never parsed or re-encoded by the gateway. Unknown fields
are ignored, as the protocol's forward-compatibility rules require.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, Raw, Struct, UnsetType

# -- requests (client -> server) ---------------------------------------------------------


class StreamPositionMsg(Struct, omit_defaults=True):
    offset: int = 0
    epoch: str = ""


class SubscribeRequest(Struct, omit_defaults=True):
    channel: str = ""
    token: str = ""
    recover: bool = False
    epoch: str = ""
    offset: int = 0
    data: Raw | UnsetType = UNSET
    positioned: bool = False
    recoverable: bool = False
    join_leave: bool = False


class ConnectRequest(Struct, omit_defaults=True):
    token: str = ""
    data: Raw | UnsetType = UNSET
    subs: dict[str, SubscribeRequest] = {}
    name: str = ""
    version: str = ""
    headers: dict[str, str] = {}


class ChannelRequest(Struct, omit_defaults=True):
    """unsubscribe, presence, presence_stats all carry just a channel."""

    channel: str = ""


class PublishRequest(Struct, omit_defaults=True):
    channel: str = ""
    data: Raw | UnsetType = UNSET


class HistoryRequest(Struct, omit_defaults=True):
    channel: str = ""
    limit: int = 0
    since: StreamPositionMsg | None = None
    reverse: bool = False


class EmptyRequest(Struct):
    pass


class SendRequest(Struct, omit_defaults=True):
    data: Raw | UnsetType = UNSET


class RPCRequest(Struct, omit_defaults=True):
    data: Raw | UnsetType = UNSET
    method: str = ""


class RefreshRequest(Struct, omit_defaults=True):
    token: str = ""


class SubRefreshRequest(Struct, omit_defaults=True):
    channel: str = ""
    token: str = ""


CommandId = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
"""A uint32, as in client.proto."""


class Command(Struct, omit_defaults=True):
    id: CommandId = 0
    connect: ConnectRequest | None = None
    subscribe: SubscribeRequest | None = None
    unsubscribe: ChannelRequest | None = None
    publish: PublishRequest | None = None
    presence: ChannelRequest | None = None
    presence_stats: ChannelRequest | None = None
    history: HistoryRequest | None = None
    ping: EmptyRequest | None = None
    send: SendRequest | None = None
    rpc: RPCRequest | None = None
    refresh: RefreshRequest | None = None
    sub_refresh: SubRefreshRequest | None = None


# -- results and pushes (server -> client) -------------------------------------------------


class ErrorMsg(Struct, omit_defaults=True):
    code: int
    message: str
    temporary: bool = False


class ClientInfoMsg(Struct, omit_defaults=True):
    user: str
    client: str
    conn_info: Raw | UnsetType = UNSET
    chan_info: Raw | UnsetType = UNSET


class PublicationMsg(Struct, omit_defaults=True):
    data: Raw | UnsetType = UNSET
    info: ClientInfoMsg | None = None
    offset: int = 0
    tags: dict[str, str] | None = None
    time: int = 0


class SubscribeResult(Struct, omit_defaults=True):
    expires: bool = False
    ttl: int = 0
    recoverable: bool = False
    epoch: str = ""
    publications: list[PublicationMsg] | None = None
    recovered: bool = False
    offset: int = 0
    positioned: bool = False
    data: Raw | UnsetType = UNSET
    was_recovering: bool = False


class ConnectResult(Struct, omit_defaults=True):
    client: str = ""
    version: str = ""
    expires: bool = False
    ttl: int = 0
    data: Raw | UnsetType = UNSET
    subs: dict[str, SubscribeResult] | None = None
    ping: int = 0
    pong: bool = False
    session: str = ""
    node: str = ""


class RefreshResult(Struct, omit_defaults=True):
    client: str = ""
    version: str = ""
    expires: bool = False
    ttl: int = 0


class SubRefreshResult(Struct, omit_defaults=True):
    expires: bool = False
    ttl: int = 0


class EmptyResult(Struct):
    pass


class PresenceResult(Struct):
    presence: dict[str, ClientInfoMsg]


class PresenceStatsResult(Struct):
    num_clients: int = 0
    num_users: int = 0


class HistoryResult(Struct, omit_defaults=True):
    publications: list[PublicationMsg] | None = None
    epoch: str = ""
    offset: int = 0


class RPCResult(Struct, omit_defaults=True):
    data: Raw | UnsetType = UNSET


class UnsubscribePush(Struct, omit_defaults=True):
    code: int = 0
    reason: str = ""


class SubscribePush(Struct, omit_defaults=True):
    recoverable: bool = False
    epoch: str = ""
    offset: int = 0
    positioned: bool = False
    data: Raw | UnsetType = UNSET


class JoinLeave(Struct):
    info: ClientInfoMsg


class MessagePush(Struct, omit_defaults=True):
    data: Raw | UnsetType = UNSET


class DisconnectPush(Struct, omit_defaults=True):
    code: int = 0
    reason: str = ""


class RefreshPush(Struct, omit_defaults=True):
    expires: bool = False
    ttl: int = 0


class Push(Struct, omit_defaults=True):
    channel: str = ""
    pub: PublicationMsg | None = None
    join: JoinLeave | None = None
    leave: JoinLeave | None = None
    unsubscribe: UnsubscribePush | None = None
    message: MessagePush | None = None
    subscribe: SubscribePush | None = None
    disconnect: DisconnectPush | None = None
    refresh: RefreshPush | None = None


class Reply(Struct, omit_defaults=True):
    id: int = 0
    error: ErrorMsg | None = None
    push: Push | None = None
    connect: ConnectResult | None = None
    subscribe: SubscribeResult | None = None
    unsubscribe: EmptyResult | None = None
    publish: EmptyResult | None = None
    presence: PresenceResult | None = None
    presence_stats: PresenceStatsResult | None = None
    history: HistoryResult | None = None
    ping: EmptyResult | None = None
    rpc: RPCResult | None = None
    refresh: RefreshResult | None = None
    sub_refresh: SubRefreshResult | None = None


EMPTY = EmptyResult()
_encoder = msgspec.json.Encoder()
encode = _encoder.encode
