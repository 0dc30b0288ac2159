"""gRPC's length-prefixed messages, split out of a body as it streams.

Each message is a 5-byte prefix, a flag byte (bit 0: compressed with the
call's ``grpc-encoding``; bit 7, gRPC-Web only: the frame carries trailers)
and a 4-byte big-endian length, then that many bytes
(PROTOCOL-HTTP2.md "Length-Prefixed-Message"; PROTOCOL-WEB.md). Only the
first ``cap`` bytes of a message are kept: a larger one completes as
``truncated``, its size still counted, so memory stays bounded whatever the
length says. gRPC-Web text (``-text``) is base64 of that stream, possibly in
separately padded pieces; ``TextDecoder`` turns it back into bytes first.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

PREFIX = 5
COMPRESSED = 0x01
TRAILERS = 0x80


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete message (or gRPC-Web trailer frame) as it was on the wire."""

    flags: int
    size: int  # the length the prefix said (all of it arrived)
    data: bytes  # its first ``cap`` bytes
    truncated: bool  # ``data`` is only the start

    @property
    def compressed(self) -> bool:
        return bool(self.flags & COMPRESSED)

    @property
    def trailers(self) -> bool:
        return bool(self.flags & TRAILERS)


class Deframer:
    """Feed body bytes; take the frames they complete."""

    __slots__ = ("_buf", "_flags", "_kept", "_left", "_size", "cap")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._buf = bytearray()  # a partial prefix, or the kept part of a message
        self._flags = -1  # -1: reading a prefix
        self._size = 0
        self._left = 0  # bytes of the current message still to come

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame (0 at a message boundary)."""
        if self._flags < 0:
            return len(self._buf)
        return PREFIX + self._size - self._left

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        view = memoryview(data)
        pos, end = 0, len(data)
        while pos < end:
            if self._flags < 0:
                take = min(PREFIX - len(self._buf), end - pos)
                self._buf += view[pos : pos + take]
                pos += take
                if len(self._buf) < PREFIX:
                    break
                self._flags = self._buf[0]
                self._size = self._left = int.from_bytes(self._buf[1:5], "big")
                self._buf.clear()
            else:
                take = min(self._left, end - pos)
                room = self.cap - len(self._buf)
                if room > 0:
                    self._buf += view[pos : pos + min(take, room)]
                self._left -= take
                pos += take
            if self._flags >= 0 and self._left == 0:
                frames.append(self._complete())
        return frames

    def _complete(self) -> Frame:
        frame = Frame(self._flags, self._size, bytes(self._buf), self._size > len(self._buf))
        self._buf.clear()
        self._flags = -1
        return frame


class TextDecoder:
    """gRPC-Web text: base64 in 4-character groups; a padded group may end a piece
    and another piece follow (PROTOCOL-WEB.md), so groups are decoded one run at
    a time, never across padding."""

    __slots__ = ("_rest", "error")

    def __init__(self) -> None:
        self._rest = b""
        self.error: str | None = None

    def feed(self, data: bytes) -> bytes:
        if self.error is not None:
            return b""
        text = self._rest + bytes(c for c in data if c not in b" \t\r\n")
        whole = len(text) - len(text) % 4
        self._rest = text[whole:]
        out = bytearray()
        start = 0
        while start < whole:
            pad = text.find(b"=", start, whole)
            stop = whole if pad < 0 else pad - pad % 4 + 4
            try:
                out += base64.b64decode(text[start:stop], validate=True)
            except (binascii.Error, ValueError) as e:
                self.error = f"gRPC-Web text is not base64: {e}"
                break
            start = stop
        return bytes(out)
