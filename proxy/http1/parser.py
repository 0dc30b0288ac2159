"""Incremental, strict HTTP/1.1 parsers (sans-IO).

``RequestParser`` and ``ResponseParser`` are fed bytes as they arrive and
hand out events one at a time through ``next_event()``; ``None`` means more
bytes are needed. They never touch a socket, so every rule here is tested by
feeding byte strings (tests/unit/test_http1_*.py).

Why our own parser rather than httptools/llhttp or h11: the proxy's safety
rests on rejecting exactly the ambiguous shapes in the hazard table (RFC 9112
§6.3), on keeping field names' case and order byte-for-byte, and on knowing
which raw bytes carried the framing. llhttp's leniency flags and h11's
normalisation (lower-cased names, merged values) each lose one of those.
A head is checked as one block by C-level bytes methods and a few compiled
regexes (proxy/http1/scan.py), and body bytes are handed through without
copying when they arrive aligned, so the pure Python cost is per message and
per read, never per byte.
"""

from __future__ import annotations

from collections import deque
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
    RequestHead,
    ResponseHead,
)
from proxy.http1.fields import parse_field_lines, parse_fields
from proxy.http1.framing import MAX_CONTENT_LENGTH, request_framing, response_framing
from proxy.http1.scan import BARE_SO_FAR, STATUS_LINE, chunk_size, head_fault, request_line


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

# Parser states.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _CLOSE = range(7)
_END, _TUNNEL, _IDLE = 7, 8, 9
_BODY_DIRECT = (_LENGTH, _CHUNK_DATA, _CLOSE)


class _Parser:
    """Shared machinery: buffering, head splitting, body decoding."""

    _error_status = 400

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buf = bytearray()
        # Hot path: body bytes that arrived while the buffer was empty are
        # kept as the caller's object and handed out without a copy.
        self._direct: bytes | None = None
        self._state = _HEAD
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
        if self._state == _IDLE:
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
        return self._state in (_HEAD, _IDLE)

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
        if state in (_LENGTH, _CHUNK_DATA):
            return self._counted_body()
        if state == _HEAD:
            return self._next_head()
        if state == _END:
            self._state = self._after_message()
            return END_OF_MESSAGE
        if state == _CHUNK_SIZE:
            return self._chunk_size()
        if state == _CHUNK_END:
            return self._chunk_end()
        if state == _TRAILER:
            return self._trailer()
        if state == _CLOSE:
            return self._close_delimited()
        return None  # _IDLE, _TUNNEL

    def _after_message(self) -> int:
        return _HEAD

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
            self._state = _LENGTH if framing.length else _END
        elif kind is KIND_CHUNKED:
            self._state = _CHUNK_SIZE
        elif kind is KIND_CLOSE:
            self._state = _CLOSE
        elif kind is KIND_TUNNEL:
            self._state = _TUNNEL
        else:
            self._state = _END

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
            self._state = _END if self._state == _LENGTH else _CHUNK_END
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
            self._state = _END
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
            self._state = _CHUNK_DATA
        else:
            self._state = _TRAILER
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
        self._state = _CHUNK_SIZE
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


class RequestParser(_Parser):
    """Parses the requests a client sends, one after another (pipelining)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        # The current head's request-line, parsed once it was complete.
        self._parsed_line: tuple[bytes, bytes, bytes] | None = None

    @property
    def pending_line(self) -> tuple[bytes, bytes, bytes] | None:
        """(method, target, version) of a head whose request line is in but not the rest."""
        return self._parsed_line

    def _next_head(self) -> Event | None:
        if self._direct is not None:
            self._buf += self._direct
            self._direct = None
        self._last_head = None
        buf = self._buf
        # RFC 9112 §2.2: ignore at least one empty line before a request-line.
        while buf.startswith(b"\r\n"):
            del buf[:2]
        if not buf:
            return None
        line = self._parsed_line
        if line is None:
            # Judge the request-line as soon as it is complete, before the
            # rest of the head: a malformed one needs no more bytes to be
            # refused, HTTP/0.9's "GET /\r\n" never sends the blank line that
            # ends a head, and a line over max_line is 414 whatever follows.
            max_line = self.limits.max_line
            end = buf.find(b"\r\n", 0, max_line + 2)
            if end >= 0:
                line = self._parsed_line = request_line(bytes(buf[:end]))
            elif len(buf) > max_line + 1:
                raise ProtocolError(414, "request line too long")
        lines = self._split_head(self.limits.max_head, 431)
        if lines is None:
            return None
        assert line is not None  # a complete head has a first CRLF, found above
        self._parsed_line = None
        method, target, version = line
        fields, index = parse_fields(lines[1:], 400)
        framing = request_framing(index, version)
        self._start_body(framing)
        return RequestHead(method, target, version, fields, framing, index)


class ResponseParser(_Parser):
    """Parses responses; told each request's method first (HEAD/CONNECT matter)."""

    _error_status = 502

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._methods: deque[bytes] = deque()
        self._state = _IDLE

    def expect(self, method: bytes) -> None:
        """Register that a request with ``method`` was sent (in order)."""
        self._methods.append(method)
        if self._state == _IDLE:
            self._state = _HEAD

    @property
    def pending(self) -> int:
        """Requests sent whose final response has not been fully parsed."""
        return len(self._methods)

    def _after_message(self) -> int:
        if self._methods:
            self._methods.popleft()
        if self._methods:
            return _HEAD
        if self.buffered:
            self._unsolicited = True
        return _IDLE

    def _next_head(self) -> Event | None:
        if self._unsolicited:
            # Bytes past the end of the last response while no request was
            # outstanding (a body on a HEAD, 204 or 304 response, a second
            # response): they are not the answer to the request sent next
            # (RFC 9112 §6.3 (1), §9.3; hazard 30).
            raise ProtocolError(502, "bytes from the server that no request asked for")
        if not self._buf and self._direct is None:
            if self._eof:
                raise ProtocolError(502, "connection closed before a response")
            return None
        lines = self._split_head(self.limits.max_head, 502)
        if lines is None:
            # Judge the status line as soon as it is complete: a server that
            # answers with something else and waits must get its 502 now, not
            # a 504 when the response head times out.
            end = self._buf.find(b"\r\n", 0, self.limits.max_line + 2)
            if end >= 0 and STATUS_LINE.fullmatch(bytes(self._buf[:end])) is None:
                raise ProtocolError(502, f"malformed status line {bytes(self._buf[:80])!r}")
            return None
        m = STATUS_LINE.fullmatch(lines[0])
        if m is None:
            raise ProtocolError(502, f"malformed status line {lines[0][:80]!r}")
        minor, code, reason = m.groups()
        version = b"1.0" if minor == b"0" else b"1.1"
        status = int(code)
        fields, index = parse_fields(lines[1:], 502)
        framing = response_framing(index, version, status, self._methods[0])
        head = ResponseHead(version, status, reason or b"", fields, framing, index)
        if head.informational:
            return head  # the final response for the same request follows
        self._start_body(framing)
        return head
