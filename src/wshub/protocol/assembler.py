"""RFC 6455 message assembly on top of a frame parser.

The frame parser (picows, in C) already enforces masking, opcodes, control-frame size and
fragmentation (5.4, 5.5), the declared frame length limit and most of close-frame validity
(``Connection`` checks the close-code range). What is left for a message-oriented API is
here: reserved bits (5.2), the continuation state machine (5.4), the size of a message built
from many fragments, and UTF-8 validity of text messages (8.1), checked incrementally so an
invalid sequence fails on the fragment that carries it and a character split across
fragments is accepted.
"""

from __future__ import annotations

import codecs
from typing import Final

from wshub.codes import CLOSE_INVALID_PAYLOAD, CLOSE_MESSAGE_TOO_BIG, CLOSE_PROTOCOL_ERROR
from wshub.errors import ProtocolViolation

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


def validate_utf8(payload: bytes) -> None:
    """Raise ProtocolViolation(1007) unless ``payload`` is valid UTF-8."""
    if payload.isascii():  # the common case: a scan, no decoded copy
        return
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(CLOSE_INVALID_PAYLOAD, "invalid UTF-8 in text message") from None


class MessageAssembler:
    """Feed data frames (text, binary, continuation); get whole messages back.

    ``feed`` returns None while a fragmented message is incomplete, else the message bytes.
    It raises ProtocolViolation with the close code to use (1002, 1007 or 1009).
    """

    __slots__ = ("_decoder", "_is_text", "_max_size", "_parts", "_size")

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._parts: list[bytes] | None = None
        self._is_text = False
        self._size = 0
        self._decoder: codecs.IncrementalDecoder | None = None

    @property
    def in_progress(self) -> bool:
        return self._parts is not None

    @property
    def is_text(self) -> bool:
        """Whether the last completed (or current) message is text."""
        return self._is_text

    def feed(self, opcode: int, fin: bool, rsv: bool, payload: bytes) -> bytes | None:
        if rsv:
            # No extension is negotiated, so every reserved bit must be 0 (5.2).
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "reserved bits set")
        if opcode == OP_CONTINUATION:
            parts = self._parts
            if parts is None:
                raise ProtocolViolation(
                    CLOSE_PROTOCOL_ERROR, "continuation with nothing to continue"
                )
            self._size += len(payload)
            if self._size > self._max_size:
                self._reset()
                raise ProtocolViolation(CLOSE_MESSAGE_TOO_BIG, "fragmented message too big")
            if self._decoder is not None:
                self._decode(payload, fin)
            parts.append(payload)
            if not fin:
                return None
            self._reset()
            return b"".join(parts)
        if self._parts is not None:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
        self._is_text = opcode == OP_TEXT
        if fin:
            if len(payload) > self._max_size:
                raise ProtocolViolation(CLOSE_MESSAGE_TOO_BIG, "message too big")
            if self._is_text:
                validate_utf8(payload)
            return payload
        if len(payload) > self._max_size:
            raise ProtocolViolation(CLOSE_MESSAGE_TOO_BIG, "message too big")
        self._parts = [payload]
        self._size = len(payload)
        if self._is_text:
            self._decoder = _Utf8Decoder()
            self._decode(payload, False)
        return None

    def _decode(self, payload: bytes, final: bool) -> None:
        assert self._decoder is not None
        try:
            self._decoder.decode(payload, final)
        except UnicodeDecodeError:
            self._reset()
            raise ProtocolViolation(
                CLOSE_INVALID_PAYLOAD, "invalid UTF-8 in text message"
            ) from None

    def _reset(self) -> None:
        self._parts = None
        self._size = 0
        self._decoder = None
