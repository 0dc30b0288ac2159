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
copying when they arrive aligned (proxy/http1/reader.py, the machinery both
parsers share), so the pure Python cost is per message and per read, never
per byte.
"""

from __future__ import annotations

from collections import deque

from proxy.http1.errors import ProtocolError
from proxy.http1.events import Event, RequestHead, ResponseHead
from proxy.http1.fields import parse_fields
from proxy.http1.framing import canonical_framing, request_framing, response_framing
from proxy.http1.reader import (
    AT_HEAD,
    AT_IDLE,
    DEFAULT_LIMITS,
    FORBIDDEN_TRAILERS,
    Limits,
    MessageReader,
)
from proxy.http1.scan import STATUS_LINE, request_line

# Limits and FORBIDDEN_TRAILERS are imported from here by the package and
# by the HTTP/2 layer.
__all__ = ["DEFAULT_LIMITS", "FORBIDDEN_TRAILERS", "Limits", "RequestParser", "ResponseParser"]


# Attaches the received bytes to a head found canonical (``RequestHead.raw``):
# ``raw`` is no ``__init__`` argument (so that ``replace`` drops it), hence
# set on the frozen instance, once, before anyone else sees the head. The C
# function itself, with no Python frame around it (hot path).
_set_raw = object.__setattr__


class RequestParser(MessageReader):
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
        fields, index, canonical = parse_fields(lines[1:], 400)
        framing = request_framing(index, version)
        self._start_body(framing)
        head = RequestHead(method, target, version, fields, framing, index)
        if canonical and canonical_framing(index):
            _set_raw(head, "raw", self._last_head)
        return head


class ResponseParser(MessageReader):
    """Parses responses; told each request's method first (HEAD/CONNECT matter)."""

    _error_status = 502

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._methods: deque[bytes] = deque()
        self._state = AT_IDLE

    def expect(self, method: bytes) -> None:
        """Register that a request with ``method`` was sent (in order)."""
        self._methods.append(method)
        if self._state == AT_IDLE:
            self._state = AT_HEAD

    @property
    def pending(self) -> int:
        """Requests sent whose final response has not been fully parsed."""
        return len(self._methods)

    def _after_message(self) -> int:
        if self._methods:
            self._methods.popleft()
        if self._methods:
            return AT_HEAD
        if self.buffered:
            self._unsolicited = True
        return AT_IDLE

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
        fields, index, canonical = parse_fields(lines[1:], 502)
        framing = response_framing(index, version, status, self._methods[0])
        head = ResponseHead(version, status, reason or b"", fields, framing, index)
        # "HTTP/1.1 200 OK" is what the writer writes; "HTTP/1.0", "HTTP/1.2"
        # (answered as 1.1) or "HTTP/1.1 200" without the SP are not.
        if canonical and minor == b"1" and reason is not None and canonical_framing(index):
            _set_raw(head, "raw", self._last_head)
        if head.informational:
            return head  # the final response for the same request follows
        self._start_body(framing)
        return head
