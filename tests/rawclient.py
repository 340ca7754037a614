"""A deliberately minimal WebSocket client over a plain socket, for hostile tests: it can
stop reading, send hand-built frames, and read the close frame it gets."""

from __future__ import annotations

import base64
import os
import socket
import struct


def upgrade_bytes(port: int, path: str, headers: dict[str, str] | None = None) -> bytes:
    """A WebSocket upgrade request, with a fresh key and any extra ``headers``."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def handshake(
    port: int, path: str = "/echo", headers: dict[str, str] | None = None, rcvbuf: int = 0
) -> tuple[socket.socket, int, bytes]:
    """Open a TCP connection and send an upgrade; returns (sock, status, rest-of-response)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(upgrade_bytes(port, path, headers))
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return s, status, rest


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """One client frame. ``rsv`` is the 3-bit RSV field; ``length`` overrides the declared
    payload length (to send a header alone)."""
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head.append(mask_bit | n)
    elif n < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack(">H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack(">Q", n)
    if not masked:
        return bytes(head) + payload
    key = os.urandom(4)
    head += key
    if not payload:
        return bytes(head)
    # XOR as one big integer: fast enough for multi-megabyte payloads.
    reps = key * (len(payload) // 4 + 1)
    masked_payload = (
        int.from_bytes(payload, "big") ^ int.from_bytes(reps[: len(payload)], "big")
    ).to_bytes(len(payload), "big")
    return bytes(head) + masked_payload


def read_frames(s: socket.socket, data: bytes = b"") -> list[tuple[int, bytes]]:
    """Read server frames until the close frame (or EOF); returns (opcode, payload) pairs."""
    out: list[tuple[int, bytes]] = []
    buf = data
    while True:
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n = struct.unpack("!H", buf[2:4])[0]
                off = 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n = struct.unpack("!Q", buf[2:10])[0]
                off = 10
            if len(buf) < off + n:
                break
            out.append((b0 & 0x0F, buf[off : off + n]))
            buf = buf[off + n :]
            if out[-1][0] == 0x8:
                return out
        try:
            chunk = s.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return out
        if not chunk:
            return out
        buf += chunk


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    for op, payload in frames:
        if op == 0x8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
    return None
