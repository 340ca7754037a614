"""Server-side RFC 6455 framing (5.2): a server's frames are unmasked, so a whole text frame
is a small header and the payload. Built once, the same bytes go to every subscriber."""

from __future__ import annotations


def text_header(n: int) -> bytes:
    """The header of a final, unmasked text frame with an ``n``-byte payload."""
    if n < 126:
        return bytes((0x81, n))
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


_HEADERS = [text_header(n) for n in range(126)]


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one complete text frame, ready for the socket."""
    n = len(payload)
    return (_HEADERS[n] if n < 126 else text_header(n)) + payload


def small_header(n: int) -> bytes:
    """``text_header`` from a table for the common small sizes."""
    return _HEADERS[n] if n < 126 else text_header(n)
