"""Bytes <-> protocol messages for the JSON protocol.

A frame carries one command, or several separated by newlines; replies to one frame go back
in one frame, newline-separated, in the same order.
"""

from __future__ import annotations

import msgspec

from wshub.brokers.base import ClientInfo, Publication
from wshub.codes import DISCONNECT_BAD_REQUEST, ClientError
from wshub.errors import ProtocolViolation
from wshub.protocol.messages import (
    ClientInfoMsg,
    Command,
    ErrorMsg,
    JoinLeave,
    PublicationMsg,
    Push,
    Reply,
    encode,
)

_decode_command = msgspec.json.Decoder(Command).decode

_NO_RAW = msgspec.UNSET

PING = b"{}"
"""The server's heartbeat ping, and the client's pong."""


def decode_commands(data: bytes) -> list[Command]:
    """Parse one frame into its commands; raise ProtocolViolation(3501) on malformed JSON.

    The common frame holds one command and is decoded in one pass; only a frame that is
    not a single JSON value is split on newlines.
    """
    try:
        return [_decode_command(data)]
    except msgspec.ValidationError as exc:
        raise ProtocolViolation(DISCONNECT_BAD_REQUEST, f"malformed command: {exc}") from None
    except msgspec.DecodeError:
        pass
    except RecursionError:  # msgspec's answer to JSON nested ~1000 deep: the client's fault
        raise ProtocolViolation(DISCONNECT_BAD_REQUEST, "command nested too deep") from None
    try:
        cmds = [_decode_command(line) for line in data.split(b"\n") if line.strip()]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolViolation(DISCONNECT_BAD_REQUEST, f"malformed command: {exc}") from None
    except RecursionError:
        raise ProtocolViolation(DISCONNECT_BAD_REQUEST, "command nested too deep") from None
    if not cmds:
        raise ProtocolViolation(DISCONNECT_BAD_REQUEST, "empty frame")
    return cmds


def encode_error(cmd_id: int, err: ClientError) -> bytes:
    return encode(Reply(id=cmd_id, error=ErrorMsg(err.code, err.message, err.temporary)))


def client_info_msg(info: ClientInfo | None) -> ClientInfoMsg | None:
    if info is None:
        return None
    return ClientInfoMsg(
        user=info.user,
        client=info.client,
        conn_info=msgspec.Raw(info.conn_info) if info.conn_info else _NO_RAW,
        chan_info=msgspec.Raw(info.chan_info) if info.chan_info else _NO_RAW,
    )


def publication_msg(pub: Publication) -> PublicationMsg:
    return PublicationMsg(
        data=msgspec.Raw(pub.data),
        info=client_info_msg(pub.info),
        offset=pub.offset,
        tags=pub.tags or None,
    )


def encode_publication_push(channel: str, pub: Publication) -> bytes:
    """The publication push, encoded once per publication and shared by all subscribers."""
    return encode(Reply(push=Push(channel=channel, pub=publication_msg(pub))))


def encode_join_push(channel: str, info: ClientInfo) -> bytes:
    ci = client_info_msg(info)
    assert ci is not None
    return encode(Reply(push=Push(channel=channel, join=JoinLeave(ci))))


def encode_leave_push(channel: str, info: ClientInfo) -> bytes:
    ci = client_info_msg(info)
    assert ci is not None
    return encode(Reply(push=Push(channel=channel, leave=JoinLeave(ci))))
