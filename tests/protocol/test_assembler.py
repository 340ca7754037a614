"""MessageAssembler on its own: no event loop, no sockets."""

from __future__ import annotations

import pytest

from wshub.errors import ProtocolViolation
from wshub.protocol.assembler import (
    OP_BINARY,
    OP_CONTINUATION,
    OP_TEXT,
    MessageAssembler,
    validate_utf8,
)

LIMIT = 100


@pytest.fixture
def asm() -> MessageAssembler:
    return MessageAssembler(LIMIT)


def violation(
    asm: MessageAssembler, opcode: int, fin: bool, payload: bytes, rsv: bool = False
) -> int:
    with pytest.raises(ProtocolViolation) as info:
        asm.feed(opcode, fin, rsv, payload)
    return info.value.disconnect.code


def test_unfragmented_messages_pass_through(asm: MessageAssembler) -> None:
    payload = "héllo".encode()
    assert asm.feed(OP_TEXT, True, False, payload) is payload  # no copy
    assert asm.is_text
    assert asm.feed(OP_BINARY, True, False, b"\xff") == b"\xff"
    assert not asm.is_text
    assert not asm.in_progress


def test_fragments_are_joined(asm: MessageAssembler) -> None:
    assert asm.feed(OP_TEXT, False, False, b"Hel") is None
    assert asm.in_progress
    assert asm.feed(OP_CONTINUATION, False, False, b"") is None
    assert asm.feed(OP_CONTINUATION, True, False, b"lo") == b"Hello"
    assert asm.is_text
    assert not asm.in_progress
    # The assembler is ready for the next message.
    assert asm.feed(OP_BINARY, False, False, b"\x00") is None
    assert asm.feed(OP_CONTINUATION, True, False, b"\x01") == b"\x00\x01"
    assert not asm.is_text


@pytest.mark.parametrize("split", range(1, 9))
def test_utf8_character_split_anywhere_is_accepted(asm: MessageAssembler, split: int) -> None:
    text = "€𝄞é".encode()  # 3 + 4 + 2 bytes
    assert asm.feed(OP_TEXT, False, False, text[:split]) is None
    assert asm.feed(OP_CONTINUATION, True, False, text[split:]) == text


def test_utf8_split_byte_by_byte(asm: MessageAssembler) -> None:
    text = "κόσμε 𝄞".encode()
    asm.feed(OP_TEXT, False, False, text[:1])
    for i in range(1, len(text) - 1):
        assert asm.feed(OP_CONTINUATION, False, False, text[i : i + 1]) is None
    assert asm.feed(OP_CONTINUATION, True, False, text[-1:]) == text


@pytest.mark.parametrize(
    "payload",
    [b"\xff", b"ok\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"],
    ids=["ff", "lone-continuation", "overlong", "surrogate", "above-max", "truncated"],
)
def test_invalid_utf8_text_is_1007(asm: MessageAssembler, payload: bytes) -> None:
    assert violation(asm, OP_TEXT, True, payload) == 1007
    # Binary messages are not checked.
    assert asm.feed(OP_BINARY, True, False, payload) == payload


def test_invalid_utf8_fails_on_the_fragment_that_carries_it(asm: MessageAssembler) -> None:
    assert asm.feed(OP_TEXT, False, False, b"valid ") is None
    assert violation(asm, OP_CONTINUATION, False, b"\xce\xba\xff more to come") == 1007
    assert not asm.in_progress


def test_truncated_character_at_message_end_is_1007(asm: MessageAssembler) -> None:
    assert asm.feed(OP_TEXT, False, False, b"\xe2\x82") is None  # may still complete
    assert violation(asm, OP_CONTINUATION, True, b"") == 1007


def test_validate_utf8() -> None:
    validate_utf8(b"")
    validate_utf8(b"plain ascii")
    validate_utf8("日本語".encode())
    with pytest.raises(ProtocolViolation):
        validate_utf8(b"ascii then \xff")


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_CONTINUATION])
def test_reserved_bits_are_1002(asm: MessageAssembler, opcode: int) -> None:
    if opcode == OP_CONTINUATION:
        asm.feed(OP_TEXT, False, False, b"a")
    assert violation(asm, opcode, True, b"x", rsv=True) == 1002


def test_continuation_with_nothing_to_continue_is_1002(asm: MessageAssembler) -> None:
    assert violation(asm, OP_CONTINUATION, True, b"x") == 1002
    assert violation(asm, OP_CONTINUATION, False, b"x") == 1002
    asm.feed(OP_TEXT, True, False, b"done")
    assert violation(asm, OP_CONTINUATION, True, b"x") == 1002


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_new_message_inside_a_fragmented_one_is_1002(asm: MessageAssembler, opcode: int) -> None:
    asm.feed(OP_TEXT, False, False, b"a")
    assert violation(asm, opcode, True, b"b") == 1002


def test_size_limit(asm: MessageAssembler) -> None:
    assert asm.feed(OP_BINARY, True, False, b"x" * LIMIT) == b"x" * LIMIT
    assert violation(asm, OP_BINARY, True, b"x" * (LIMIT + 1)) == 1009
    assert violation(asm, OP_TEXT, False, b"x" * (LIMIT + 1)) == 1009


def test_fragments_summing_over_the_limit_are_1009(asm: MessageAssembler) -> None:
    asm.feed(OP_BINARY, False, False, b"x" * 60)
    assert asm.feed(OP_CONTINUATION, False, False, b"x" * 40) is None  # exactly the limit
    assert violation(asm, OP_CONTINUATION, True, b"x") == 1009
    assert not asm.in_progress


def test_fragments_up_to_the_limit_are_accepted(asm: MessageAssembler) -> None:
    asm.feed(OP_TEXT, False, False, b"a" * 50)
    assert asm.feed(OP_CONTINUATION, True, False, b"b" * 50) == b"a" * 50 + b"b" * 50
