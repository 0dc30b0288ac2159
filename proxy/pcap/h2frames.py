"""HTTP/2 framing of one direction of a captured connection (RFC 9113 §4, §6).

``FrameReader`` is fed the reassembled bytes of one direction, in order and
cut anywhere, and returns what they hold:

* ``Frame`` for every frame but DATA, whole, with the padding and the
  priority fields of HEADERS and PUSH_PROMISE already removed, so that
  ``payload`` is the header block fragment (RFC 9113 §6.2, §6.6);
* ``DataChunk`` for DATA (RFC 9113 §6.1): the payload is passed on as it
  arrives, never buffered, and the padding is skipped, so a large body costs
  no memory here. ``end_stream`` is set on the last chunk of a frame that
  carries END_STREAM (an empty chunk for an empty frame).

The client's direction starts with the connection preface (RFC 9113 §3.4),
checked byte for byte. A frame other than DATA is held until it is whole, up
to ``FRAME_LIMIT`` bytes; the 9-byte header (RFC 9113 §4.1) allows 16 MiB,
but nobody sends control frames or header blocks that large except to
exhaust a reader's memory, so a larger one is an error. After an error
``feed`` returns the events read before it and ``error`` says what was
wrong; the rest of the direction is not read (there is no resynchronising
inside a byte stream whose framing is lost).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 §3.4
FRAME_LIMIT = 1 << 20  # largest non-DATA frame held (the wire format allows 2^24 - 1)
HEADER_SIZE = 9

END_STREAM = 0x1  # DATA, HEADERS
ACK = 0x1  # SETTINGS, PING
END_HEADERS = 0x4  # HEADERS, PUSH_PROMISE, CONTINUATION
PADDED = 0x8  # DATA, HEADERS, PUSH_PROMISE
PRIORITY = 0x20  # HEADERS


class FrameType(enum.IntEnum):
    """Frame types of RFC 9113 §6 (others are ignored, §4.1, §5.5)."""

    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


# Frames that must name a stream, and those that must not (RFC 9113 §6.x).
_ON_STREAM = frozenset({0x0, 0x1, 0x2, 0x3, 0x5, 0x9})
_ON_CONNECTION = frozenset({0x4, 0x6, 0x7})
_FIXED_SIZE = {0x2: 5, 0x3: 4, 0x6: 8, 0x8: 4}  # PRIORITY, RST_STREAM, PING, WINDOW_UPDATE


class FrameError(Exception):
    """A connection error (RFC 9113 §5.4.1): the bytes are not valid HTTP/2 framing."""


@dataclass(frozen=True, slots=True)
class Frame:
    type: int  # a ``FrameType`` value, or an unknown type to be ignored
    flags: int
    stream: int
    payload: bytes  # HEADERS / PUSH_PROMISE: the header block fragment only
    promised: int = 0  # PUSH_PROMISE: the promised stream


@dataclass(frozen=True, slots=True)
class DataChunk:
    stream: int
    data: bytes
    end_stream: bool  # the last chunk of a DATA frame with END_STREAM


Event = Frame | DataChunk


class FrameReader:
    """Frames out of one direction's bytes; holds at most one non-DATA frame."""

    __slots__ = ("_buf", "_data_end", "_data_left", "_pad_left", "_preface", "_stream", "error")

    def __init__(self, preface: bool) -> None:
        self._buf = bytearray()
        self._preface = preface  # the client preface is still expected
        self._stream = 0  # of the DATA frame being passed on
        self._data_left = 0  # its payload bytes still to come
        self._pad_left = 0  # then its padding
        self._data_end = False  # whether it carries END_STREAM
        self.error: str | None = None  # set once the framing is broken

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Event]:
        """The events completed by ``data`` (up to an error, see ``error``)."""
        out: list[Event] = []
        if self.error is not None:
            return out
        try:
            self._read(data, out)
        except FrameError as e:
            self.error = str(e)
            self._buf.clear()
        return out

    def _read(self, data: bytes, out: list[Event]) -> None:
        buf = self._buf
        buf += data
        if self._preface:
            size = min(len(buf), len(PREFACE))
            if buf[:size] != PREFACE[:size]:
                raise FrameError("the client did not send the HTTP/2 connection preface")
            if size < len(PREFACE):
                return
            del buf[: len(PREFACE)]
            self._preface = False
        pos = 0
        while True:
            if self._data_left or self._pad_left:
                pos = self._pass_data(pos, out)
                if self._data_left or self._pad_left:
                    break
                continue
            if len(buf) - pos < HEADER_SIZE:
                break
            end = self._frame(pos, out)
            if end < 0:
                break
            pos = end
        del buf[:pos]

    def _pass_data(self, pos: int, out: list[Event]) -> int:
        """Pass on what is here of the current DATA frame; the new position."""
        buf = self._buf
        if self._data_left:
            take = min(self._data_left, len(buf) - pos)
            self._data_left -= take
            last = self._data_left == 0 and self._pad_left == 0 and self._data_end
            if take or last:
                out.append(DataChunk(self._stream, bytes(buf[pos : pos + take]), last))
            pos += take
            if self._data_left:
                return pos
        skip = min(self._pad_left, len(buf) - pos)
        self._pad_left -= skip
        pos += skip
        if self._pad_left == 0 and self._data_end and skip:
            out.append(DataChunk(self._stream, b"", True))
        return pos

    def _frame(self, pos: int, out: list[Event]) -> int:
        """Read the frame at ``pos``; its end, or -1 if it is not all here yet."""
        buf = self._buf
        length = int.from_bytes(buf[pos : pos + 3], "big")
        kind, flags = buf[pos + 3], buf[pos + 4]
        stream = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFF_FFFF  # §4.1: R ignored
        _check(kind, length, stream)
        body = pos + HEADER_SIZE
        if kind == FrameType.DATA:
            pad = 0
            if flags & PADDED:
                if len(buf) - body < 1:
                    return -1
                pad = buf[body]
                body += 1
                length -= 1
            if pad > length:  # §6.1: padding at least as long as the payload
                raise FrameError(f"DATA frame on stream {stream} with too much padding")
            self._stream, self._data_left, self._pad_left = stream, length - pad, pad
            self._data_end = bool(flags & END_STREAM)
            if length == 0 and self._data_end:
                out.append(DataChunk(stream, b"", True))
            return body
        if length > FRAME_LIMIT:
            raise FrameError(f"frame of {length} bytes (type {kind}), over {FRAME_LIMIT}")
        end = body + length
        if len(buf) < end:
            return -1
        payload = bytes(buf[body:end])
        promised = 0
        if kind in (FrameType.HEADERS, FrameType.PUSH_PROMISE):
            payload, promised = _header_block(kind, flags, stream, payload)
        out.append(Frame(kind, flags, stream, payload, promised))
        return end


def _check(kind: int, length: int, stream: int) -> None:
    """The checks of RFC 9113 §6 that the header alone allows."""
    if kind in _ON_STREAM and stream == 0:
        raise FrameError(f"{FrameType(kind).name} frame on stream 0")
    if kind in _ON_CONNECTION and stream != 0:
        raise FrameError(f"{FrameType(kind).name} frame on stream {stream}")
    size = _FIXED_SIZE.get(kind)
    if size is not None and length != size:
        raise FrameError(f"{FrameType(kind).name} frame of {length} bytes, not {size}")
    if kind == FrameType.SETTINGS and length % 6:
        raise FrameError(f"SETTINGS frame of {length} bytes, not a multiple of 6")


def _header_block(kind: int, flags: int, stream: int, payload: bytes) -> tuple[bytes, int]:
    """The fragment of a HEADERS or PUSH_PROMISE payload (§6.2, §6.6), and the promised id."""
    start, end = 0, len(payload)
    if flags & PADDED:
        if not payload:
            raise FrameError(f"padded {FrameType(kind).name} frame on stream {stream} is empty")
        start, end = 1, end - payload[0]
    if kind == FrameType.HEADERS and flags & PRIORITY:
        start += 5  # exclusive bit, stream dependency, weight: not needed to read the stream
    promised = 0
    if kind == FrameType.PUSH_PROMISE:
        if end - start < 4:
            raise FrameError(f"PUSH_PROMISE frame on stream {stream} too short")
        promised = int.from_bytes(payload[start : start + 4], "big") & 0x7FFF_FFFF
        start += 4
    if end < start:
        raise FrameError(f"{FrameType(kind).name} frame on stream {stream}: padding too long")
    return payload[start:end], promised


def settings(payload: bytes) -> list[tuple[int, int]]:
    """The (identifier, value) pairs of a SETTINGS payload (RFC 9113 §6.5.1)."""
    return [
        (int.from_bytes(payload[i : i + 2], "big"), int.from_bytes(payload[i + 2 : i + 6], "big"))
        for i in range(0, len(payload) - 5, 6)
    ]


_ERROR_CODES = (
    "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
    "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
    "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
)  # fmt: skip


def error_name(code: int) -> str:
    """The name of an RST_STREAM or GOAWAY error code (RFC 9113 §7)."""
    return _ERROR_CODES[code] if code < len(_ERROR_CODES) else f"0x{code:x}"
