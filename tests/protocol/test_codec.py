"""The protocol core without an event loop: bytes in, messages out, bytes back."""

from __future__ import annotations

import json

import msgspec
import pytest

from wshub import codes
from wshub.brokers.base import ClientInfo, Publication
from wshub.errors import ProtocolViolation
from wshub.protocol import messages as m
from wshub.protocol.codec import (
    decode_commands,
    encode_error,
    encode_join_push,
    encode_publication_push,
)


def test_single_and_newline_delimited_commands() -> None:
    one = decode_commands(b'{"id":1,"rpc":{"method":"echo","data":{"a":[1,2]}}}')
    assert len(one) == 1 and one[0].id == 1 and one[0].rpc is not None
    assert one[0].rpc.method == "echo"
    assert isinstance(one[0].rpc.data, msgspec.Raw)
    assert bytes(one[0].rpc.data) == b'{"a":[1,2]}'  # raw: never parsed, never re-encoded
    many = decode_commands(b'{"id":1,"connect":{}}\n\n{"id":2,"subscribe":{"channel":"c"}}\n')
    assert [c.id for c in many] == [1, 2]
    assert many[1].subscribe is not None and many[1].subscribe.channel == "c"


def test_unknown_fields_are_ignored_and_absent_data_is_unset() -> None:
    (cmd,) = decode_commands(b'{"id":3,"publish":{"channel":"c","future":1},"extra":true}')
    assert cmd.publish is not None and cmd.publish.data is msgspec.UNSET


@pytest.mark.parametrize(
    "frame",
    [b"nope", b"[1]", b'{"id":"x"}', b'{"id":1,"subscribe":{"channel":5}}', b'{"id":-1}', b"{"],
)
def test_malformed_frames_are_bad_request(frame: bytes) -> None:
    with pytest.raises(ProtocolViolation) as info:
        decode_commands(frame)
    assert info.value.disconnect == codes.DISCONNECT_BAD_REQUEST


def test_error_reply_shape() -> None:
    out = json.loads(encode_error(7, codes.ERROR_TOO_MANY_REQUESTS))
    assert out == {
        "id": 7,
        "error": {"code": 111, "message": "too many requests", "temporary": True},
    }
    out = json.loads(encode_error(8, codes.ERROR_PERMISSION_DENIED))
    assert out == {"id": 8, "error": {"code": 103, "message": "permission denied"}}


def test_publication_push_embeds_raw_data_and_info() -> None:
    pub = Publication(
        data=b'{"text":"hi"}',
        info=ClientInfo("c1", "u1", b'{"name":"U"}', None),
        offset=42,
        tags={"k": "v"},
        time_ms=123,
    )
    out = json.loads(encode_publication_push("chat:1", pub))
    assert out == {
        "push": {
            "channel": "chat:1",
            "pub": {
                "data": {"text": "hi"},
                "info": {"user": "u1", "client": "c1", "conn_info": {"name": "U"}},
                "offset": 42,
                "tags": {"k": "v"},
            },
        }
    }


def test_join_push_always_carries_user_and_client() -> None:
    out = json.loads(encode_join_push("c", ClientInfo("id1", "")))
    assert out == {"push": {"channel": "c", "join": {"info": {"user": "", "client": "id1"}}}}


def test_connect_result_omits_defaults() -> None:
    out = json.loads(
        m.encode(
            m.Reply(id=1, connect=m.ConnectResult(client="x", version="v", ping=25, pong=True))
        )
    )
    assert out == {"id": 1, "connect": {"client": "x", "version": "v", "ping": 25, "pong": True}}
