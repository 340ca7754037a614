"""A deliberately minimal WebSocket client over a plain socket, for hostile tests: it can
stop reading, send hand-built frames, and read the close frame it gets."""

from __future__ import annotations

import base64
import os
import socket
import struct


def handshake(
    port: int, path: str = "/echo", headers: dict[str, str] | None = None, rcvbuf: int = 0
) -> tuple[socket.socket, int, bytes]:
    """Open a TCP connection and send an upgrade; returns (sock, status, rest-of-response)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
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
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
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
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


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
