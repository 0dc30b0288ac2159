"""The machinery both HTTP/1 parsers share: buffering, heads, bodies.

``MessageReader`` buffers what it is fed, cuts a complete head (or trailer
section) off the buffer once it is in and checks its bytes, then decodes the
body its framing calls for: counted, chunked with trailers, or until close
(RFC 9112 §6, §7). What a head means (request-line or status-line, and
which framing follows) is the subclasses' part, in proxy/http1/parser.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.http1.errors import ProtocolError
from proxy.http1.events import (
    KIND_CHUNKED,
    KIND_CLOSE,
    KIND_LENGTH,
    KIND_TUNNEL,
    BodyData,
    EndOfMessage,
    Event,
    Framing,
)
from proxy.http1.fields import parse_field_lines
from proxy.http1.framing import MAX_CONTENT_LENGTH
from proxy.http1.scan import BARE_SO_FAR, chunk_size, head_fault


@dataclass(frozen=True, slots=True)
class Limits:
    """Parser limits; defaults close to nginx's and mitmproxy's (docs/limits.md)."""

    max_head: int = 64 * 1024  # request/status line plus fields, bytes
    max_line: int = 16 * 1024  # request line, bytes (longer: 414)
    max_fields: int = 200
    max_chunk_line: int = 4096  # chunk size plus extensions, bytes
    max_trailer: int = 16 * 1024


DEFAULT_LIMITS = Limits()

# Trailer fields that must never be merged or forwarded: framing, routing,
# authentication and controls (RFC 9110 §6.5.1; hazard 21).
FORBIDDEN_TRAILERS = frozenset(
    {
        b"content-length", b"transfer-encoding", b"host", b"authorization",
        b"proxy-authorization", b"content-encoding", b"content-type", b"content-range",
        b"trailer", b"te", b"connection", b"keep-alive", b"upgrade", b"expect",
        b"max-forwards", b"cache-control", b"set-cookie", b"cookie", b"location",
        b"www-authenticate", b"proxy-authenticate", b"retry-after",
    }
)  # fmt: skip

# The end of a message without trailers: one immutable instance for all.
END_OF_MESSAGE = EndOfMessage()

# Parser states (what the next bytes are).
AT_HEAD, AT_LENGTH, AT_CHUNK_SIZE, AT_CHUNK_DATA, AT_CHUNK_END, AT_TRAILER, AT_CLOSE = range(7)
AT_END, AT_TUNNEL, AT_IDLE = 7, 8, 9
_BODY_DIRECT = (AT_LENGTH, AT_CHUNK_DATA, AT_CLOSE)


class MessageReader:
    """Shared machinery: buffering, head splitting, body decoding.

    Subclasses read their own start line and framing in ``_next_head`` and
    say what follows a message in ``_after_message``.
    """

    _error_status = 400

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buf = bytearray()
        # Hot path: body bytes that arrived while the buffer was empty are
        # kept as the caller's object and handed out without a copy.
        self._direct: bytes | None = None
        self._state = AT_HEAD
        self._remaining = 0
        self._scanned = 0
        self._eof = False
        # Bytes received while no response was expected (ResponseParser only).
        self._unsolicited = False
        # The head last cut off the buffer, kept (not copied) until the next:
        # when it turns out invalid, ``refused`` shows what was refused.
        self._last_head: bytes | None = None

    # -- input ---------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if not data:
            return
        if self._direct is None and not self._buf and self._state in _BODY_DIRECT:
            self._direct = data
            return
        if self._direct is not None:
            self._buf += self._direct
            self._direct = None
        if self._state == AT_IDLE:
            self._unsolicited = True
        self._buf += data

    def feed_eof(self) -> None:
        self._eof = True

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out."""
        return len(self._buf) + (len(self._direct) if self._direct is not None else 0)

    @property
    def at_message_start(self) -> bool:
        """True between messages (nothing of a next head parsed yet)."""
        return self._state in (AT_HEAD, AT_IDLE)

    def refused(self, limit: int) -> tuple[bytes, int]:
        """After a ``ProtocolError`` in a head: its first ``limit`` bytes and its size.

        The head being parsed when the error came: the one already cut off
        the buffer, or what is buffered when the error came while looking
        for its end (too large, bare CR/LF, the connection closed).
        """
        data = self._last_head if self._last_head is not None else bytes(self._buf)
        return data[:limit], len(data)

    def take_remaining(self) -> bytes:
        """Bytes after the message that turned the connection into a tunnel."""
        out = bytes(self._buf) + (self._direct or b"")
        self._buf.clear()
        self._direct = None
        return out

    # -- events ----------------------------------------------------------
    def next_event(self) -> Event | None:
        state = self._state
        if state in (AT_LENGTH, AT_CHUNK_DATA):
            return self._counted_body()
        if state == AT_HEAD:
            return self._next_head()
        if state == AT_END:
            self._state = self._after_message()
            return END_OF_MESSAGE
        if state == AT_CHUNK_SIZE:
            return self._chunk_size()
        if state == AT_CHUNK_END:
            return self._chunk_end()
        if state == AT_TRAILER:
            return self._trailer()
        if state == AT_CLOSE:
            return self._close_delimited()
        return None  # AT_IDLE, AT_TUNNEL

    def _after_message(self) -> int:
        return AT_HEAD

    def _next_head(self) -> Event | None:
        raise NotImplementedError

    # -- heads -------------------------------------------------------------
    def _split_head(self, max_size: int, too_large: int, what: str = "head") -> list[bytes] | None:
        """Cut one complete head (or trailer section) off the buffer, as lines.

        ``max_size`` bounds the head itself, not what is buffered behind it
        (a pipelined request), and is judged the same however the bytes were
        split into reads: while the blank line is missing, the last three
        buffered bytes may be the start of it.
        """
        if self._direct is not None:
            self._buf += self._direct
            self._direct = None
        self._last_head = None
        buf = self._buf
        end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
        if end < 0:
            if BARE_SO_FAR.search(buf, max(0, self._scanned - 1)):
                raise ProtocolError(self._error_status, f"bare CR or LF in {what}")
            self._scanned = len(buf)
            if len(buf) - 3 > max_size:
                raise ProtocolError(too_large, f"{what} too large")
            if self._eof and buf:
                raise ProtocolError(self._error_status, f"connection closed inside a {what}")
            return None
        if end > max_size:
            raise ProtocolError(too_large, f"{what} too large")
        head = self._last_head = bytes(buf[:end])
        del buf[: end + 4]
        self._scanned = 0
        lines = head.split(b"\r\n")
        fault = head_fault(lines)
        if fault is not None:
            raise ProtocolError(self._error_status, f"{fault} in {what}")
        if len(lines) - 1 > self.limits.max_fields:
            raise ProtocolError(too_large, f"too many fields in {what}")
        return lines

    def _start_body(self, framing: Framing) -> None:
        kind = framing.kind
        if kind is KIND_LENGTH:
            self._remaining = framing.length
            self._state = AT_LENGTH if framing.length else AT_END
        elif kind is KIND_CHUNKED:
            self._state = AT_CHUNK_SIZE
        elif kind is KIND_CLOSE:
            self._state = AT_CLOSE
        elif kind is KIND_TUNNEL:
            self._state = AT_TUNNEL
        else:
            self._state = AT_END

    # -- bodies --------------------------------------------------------------
    def _counted_body(self) -> Event | None:
        remaining = self._remaining
        data = self._direct
        if data is not None:
            self._direct = None
            if len(data) > remaining:
                self._buf += memoryview(data)[remaining:]
                data = data[:remaining]
        elif self._buf:
            data = bytes(self._buf[:remaining])
            del self._buf[:remaining]
        else:
            if self._eof:
                raise ProtocolError(self._error_status, "connection closed inside a body")
            return None
        remaining -= len(data)
        self._remaining = remaining
        if not remaining:
            self._state = AT_END if self._state == AT_LENGTH else AT_CHUNK_END
        return BodyData(data)

    def _close_delimited(self) -> Event | None:
        if self._direct is not None:
            data, self._direct = self._direct, None
            return BodyData(data)
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            return BodyData(data)
        if self._eof:
            self._state = AT_END
            return self.next_event()
        return None

    def _line(self, limit: int, what: str) -> bytes | None:
        buf = self._buf
        i = buf.find(b"\r\n", 0, limit + 2)
        if i < 0:
            if b"\n" in buf or b"\r" in buf[:-1]:
                raise ProtocolError(self._error_status, f"bare CR or LF in {what}")
            if len(buf) > limit + 1:  # limit bytes and a CR is still a whole line
                raise ProtocolError(self._error_status, f"{what} too long")
            if self._eof:
                raise ProtocolError(self._error_status, f"connection closed inside {what}")
            return None
        line = bytes(buf[:i])
        del buf[: i + 2]
        return line

    def _chunk_size(self) -> Event | None:
        if self._direct is not None:
            self._buf += self._direct
            self._direct = None
        line = self._line(self.limits.max_chunk_line, "chunk size line")
        if line is None:
            return None
        size = chunk_size(line)
        if size is None:
            raise ProtocolError(self._error_status, f"invalid chunk size line {line[:40]!r}")
        if size > MAX_CONTENT_LENGTH:
            raise ProtocolError(self._error_status, "chunk size too large")
        if size:
            self._remaining = size
            self._state = AT_CHUNK_DATA
        else:
            self._state = AT_TRAILER
        return self.next_event()

    def _chunk_end(self) -> Event | None:
        if self._direct is not None:
            self._buf += self._direct
            self._direct = None
        if len(self._buf) < 2:
            if self._eof or (self._buf and self._buf[0] != 0x0D):
                raise ProtocolError(self._error_status, "chunk data not followed by CRLF")
            return None
        if self._buf[:2] != b"\r\n":
            raise ProtocolError(self._error_status, "chunk data not followed by CRLF")
        del self._buf[:2]
        self._state = AT_CHUNK_SIZE
        return self._chunk_size()

    def _trailer(self) -> Event | None:
        if self._direct is not None:
            self._buf += self._direct
            self._direct = None
        buf = self._buf
        if buf.startswith(b"\r\n"):
            del buf[:2]
            self._scanned = 0
            self._state = self._after_message()
            return END_OF_MESSAGE
        lines = self._split_head(self.limits.max_trailer, self._error_status, "trailer section")
        if lines is None:
            if self._eof:
                raise ProtocolError(self._error_status, "connection closed inside trailers")
            return None
        fields = parse_field_lines(lines, self._error_status)
        kept = tuple((k, v) for k, v in fields if k.lower() not in FORBIDDEN_TRAILERS)
        self._state = self._after_message()
        return EndOfMessage(kept)
