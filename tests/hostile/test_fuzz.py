"""Fuzzing with a bounded budget: the command codec, the frame assembler (against a small
reference model) and the node's handling of whatever the codec lets through, over a real
connection to a ``wshub serve``. Crashes found here live on as the regression tests at the
end of the module.

The budget is ``max_examples`` per property (``WSHUB_FUZZ_EXAMPLES`` scales it) and no
deadline; ``derandomize`` keeps CI runs reproducible (set ``WSHUB_FUZZ_RANDOM=1`` to
explore new inputs).
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_helpers import (
    HUB,
    OP_CLOSE,
    OP_CONT,
    OP_TEXT,
    OPEN_NAMESPACE,
    GatewayProcess,
    build_frame,
    start_gateway,
    upgrade_bytes,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wshub.errors import ProtocolViolation
from wshub.protocol import messages as m
from wshub.protocol.assembler import OP_BINARY, OP_CONTINUATION, MessageAssembler
from wshub.protocol.codec import decode_commands

SCALE = float(os.environ.get("WSHUB_FUZZ_EXAMPLES", "1"))
RANDOM = os.environ.get("WSHUB_FUZZ_RANDOM") == "1"


def budget(n: int) -> Any:
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        derandomize=not RANDOM,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )


# -- strategies ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "channel", "data", "method", "token", "offset", "epoch", "recover", "limit", "since",
    "reverse", "subs", "name", "version", "headers", "join_leave", "recoverable", "positioned",
]  # fmt: skip
COMMANDS = [
    "connect", "subscribe", "unsubscribe", "publish", "presence", "presence_stats", "history",
    "ping", "send", "rpc", "refresh", "sub_refresh",
]  # fmt: skip
CHANNELS = st.sampled_from(["room", "p:room", "h:room", "nope:x", "", "a b", "x" * 300, "\u0000"])
bodies = st.fixed_dictionaries(
    {},
    optional={
        "channel": CHANNELS | st.text(max_size=10) | json_values,
        "data": json_values,
        "method": st.sampled_from(["echo", "boom", "sleep", "nope"]) | json_values,
        **{f: json_values for f in FIELDS if f not in ("channel", "data", "method")},
    },
)


@st.composite
def commands(draw: st.DrawFn) -> dict[str, Any]:
    cmd: dict[str, Any] = {}
    if draw(st.booleans()):
        cmd["id"] = draw(st.integers(min_value=-2, max_value=2**33) | json_values)
    for name in draw(st.lists(st.sampled_from(COMMANDS), max_size=2, unique=True)):
        cmd[name] = draw(bodies | json_values)
    return cmd


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def rpc_echo(data: str) -> str:
    return f'{{"id": 7, "rpc": {{"method": "echo", "data": {data}}}}}'


def publish(data: str) -> str:
    return f'{{"id": 7, "publish": {{"channel": "room", "data": {data}}}}}'


frames = st.one_of(
    commands().map(_encode),
    st.lists(commands().map(_encode), min_size=2, max_size=4).map("\n".join),
    json_values.map(_encode),
    st.integers(1, 3000).map(lambda d: rpc_echo(nested(d))),
    st.integers(1, 3000).map(lambda d: publish(nested(d))),
    st.sampled_from(["1e400", "-1e400", "123456789012345678901234567890", '"\\ud800"', "-0"]).map(
        rpc_echo
    ),
    st.text(max_size=60),
)


# -- the codec ---------------------------------------------------------------------------------


@budget(400)
@given(st.binary(max_size=200) | frames.map(str.encode))
def test_decode_commands_returns_commands_or_refuses_with_3501(data: bytes) -> None:
    try:
        cmds = decode_commands(data)
    except ProtocolViolation as exc:
        assert exc.disconnect.code == 3501
        return
    assert cmds and all(isinstance(c, m.Command) for c in cmds)
    assert all(0 <= c.id <= 0xFFFFFFFF for c in cmds)


# -- the assembler against a reference model -----------------------------------------------------

LIMIT = 64


class Model:
    """RFC 6455 message assembly as the spec states it, without incremental tricks."""

    def __init__(self) -> None:
        self.parts: list[bytes] | None = None
        self.text = False

    def feed(self, opcode: int, fin: bool, rsv: bool, payload: bytes) -> bytes | int | None:
        if rsv:
            return 1002
        if opcode == OP_CONTINUATION:
            if self.parts is None:
                return 1002
            self.parts.append(payload)
        else:
            if self.parts is not None:
                return 1002
            self.parts = [payload]
            self.text = opcode == OP_TEXT
        msg = b"".join(self.parts)
        if len(msg) > LIMIT:
            return 1009
        if self.text:
            try:
                msg.decode("utf-8")
            except UnicodeDecodeError as exc:
                # Invalid unless the message is unfinished and only its tail is incomplete.
                if fin or exc.reason != "unexpected end of data":
                    return 1007
        if not fin:
            return None
        self.parts = None
        return msg


frame_args = st.tuples(
    st.sampled_from([OP_CONTINUATION, OP_TEXT, OP_BINARY]),
    st.booleans(),
    st.sampled_from([False] * 7 + [True]),
    st.binary(max_size=40) | st.text(max_size=20).map(str.encode) | st.sampled_from(
        [b"\xe2\x82", b"\xac", b"\xf0\x9d", b"\x84\x9e", b"\xed\xa0\x80", b"\xff", b"\xc3"]
    ),
)  # fmt: skip


@budget(600)
@given(st.lists(frame_args, max_size=12))
def test_assembler_matches_the_reference_model(
    frames_in: list[tuple[int, bool, bool, bytes]],
) -> None:
    asm, model = MessageAssembler(LIMIT), Model()
    for opcode, fin, rsv, payload in frames_in:
        want = model.feed(opcode, fin, rsv, payload)
        try:
            got: bytes | int | None = asm.feed(opcode, fin, rsv, payload)
        except ProtocolViolation as exc:
            got = exc.disconnect.code
        assert got == want, (opcode, fin, rsv, payload)
        if isinstance(got, int):
            return  # the connection is closed: nothing more is fed
        if got is not None:
            assert asm.is_text == model.text


# -- the node, over a real connection ------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = start_gateway(
        Path(tmp_path_factory.mktemp("fuzz")),
        {
            "client": {"allow_anonymous": True, "command_rate": 0.0},
            "websocket": {"max_message_size": 65536},
            "namespaces": [
                OPEN_NAMESPACE,
                {**OPEN_NAMESPACE, "name": "p", "presence": True, "join_leave": True},
                {**OPEN_NAMESPACE, "name": "h", "history_size": 5, "history_ttl": 60.0},
            ],
            "workers": {"timeout": 1.0},
        },
    )
    yield gw
    gw.stop()


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(upgrade_bytes(port, HUB, None))
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert b" 101 " in head.split(b"\r\n", 1)[0]

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def messages(self) -> Iterator[tuple[int, bytes]]:
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack(">H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", self._read(8))
            yield b0 & 0x0F, self._read(n)


SENTINEL = 4000000000


def exchange(port: int, frame: str, connect_first: bool) -> tuple[int | None, list[dict[str, Any]]]:
    """Send ``frame`` (after a connect command if asked), then a sentinel RPC; returns the
    close code (None if the connection lived) and every reply/push received."""
    c = Client(port)
    if connect_first:
        c.sock.sendall(build_frame(OP_TEXT, b'{"id": 1, "connect": {}}'))
    data = frame.encode()
    # Large frames go in fragments, as clients may send them.
    if len(data) > 4096:
        c.sock.sendall(
            build_frame(OP_TEXT, data[:4096], fin=False) + build_frame(OP_CONT, data[4096:])
        )
    else:
        c.sock.sendall(build_frame(OP_TEXT, data))
    sentinel = {"id": SENTINEL, "rpc": {"method": "echo", "data": "done"}}
    c.sock.sendall(build_frame(OP_TEXT, json.dumps(sentinel).encode()))
    got: list[dict[str, Any]] = []
    try:
        for op, payload in c.messages():
            if op == OP_CLOSE:
                return (struct.unpack(">H", payload[:2])[0] if payload else 1005), got
            for line in payload.split(b"\n"):
                if line == b"{}":
                    continue
                msg = json.loads(line)
                got.append(msg)
                if msg.get("id") == SENTINEL:
                    return None, got
    except (EOFError, OSError):
        return 1006, got
    finally:
        c.sock.close()
    return 1006, got


@pytest.mark.slow
@budget(300)
@given(frame=frames, connect_first=st.booleans())
def test_node_survives_any_command_frame(
    fuzz_gateway: GatewayProcess, frame: str, connect_first: bool
) -> None:
    code, got = exchange(fuzz_gateway.ws_port, frame, connect_first)
    # Whatever the frame, the client's mistake is answered as one: a reply, an error reply
    # (not an internal error) or a protocol disconnect - never an internal error, never
    # a dropped connection.
    assert code not in (1006, 1011, 3004), (code, got)
    errors = [r["error"] for r in got if "error" in r]
    assert not [e for e in errors if e["code"] == 100 and "boom" not in frame], errors
    assert fuzz_gateway.alive()


@pytest.mark.slow
def test_node_fuzzing_left_no_traceback(fuzz_gateway: GatewayProcess) -> None:
    # Runs after the property above (same module, same gateway): the only tracebacks in
    # its log are those of the app's own "boom" RPC.
    bad = [
        r
        for r in fuzz_gateway.log_records()
        if ("traceback" in r or r.get("level") in ("error", "critical"))
        and "rpc handler raised" not in r.get("msg", "")
    ]
    assert not bad, bad[:3]


# -- regressions found by the fuzzers --------------------------------------------------------------


@pytest.mark.parametrize("depth", [1000, 5000, 60000])
def test_regression_deeply_nested_command_is_a_bad_request(depth: int) -> None:
    # msgspec raised RecursionError (not a DecodeError): the connection was closed 1011
    # with a traceback in the log instead of 3501. Where msgspec's limit lies depends on
    # the interpreter (3.12 decodes 1000 levels): a frame either decodes or is a 3501.
    frame = rpc_echo(nested(depth)).encode()
    try:
        cmds = decode_commands(frame)
    except ProtocolViolation as exc:
        assert exc.disconnect.code == 3501
    else:
        assert depth < 5000 and len(cmds) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("1e400", 107),  # valid JSON, but no double: orjson refused it -> error 100 + traceback
        (nested(300), None),  # deeper than orjson can encode: the echo failed with 100
        ("123456789012345678901234567890", None),
    ],
)
def test_regression_rpc_data_the_gateway_cannot_parse_or_encode(
    fuzz_gateway: GatewayProcess, data: str, code: int | None
) -> None:
    closed, got = exchange(fuzz_gateway.ws_port, rpc_echo(data), True)
    assert closed is None
    reply = next(r for r in got if r.get("id") == 7)
    if code is None:
        assert "rpc" in reply, reply
    else:
        assert reply["error"]["code"] == code
