"""One exchange on a shared HTTP/2 server connection: a ``StreamChannel``.

The request goes out as a header block built from our parse and DATA sent
as the server's windows allow (the rest queued, and the session told to
read no more of the request while the queue is long: ``blocked``). The
response comes back as the events our HTTP/1 parser would produce, so the
session's ``ResponsePath`` needs no HTTP/2 of its own; body data is
acknowledged (WINDOW_UPDATE) only as the session takes it, so a slow
client slows this stream's server and nothing else.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from http import HTTPStatus

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import H2Error
from h2.stream import StreamState

from proxy.http1 import (
    NO_BODY,
    BodyData,
    EndOfMessage,
    Event,
    Framing,
    FramingKind,
    ProtocolError,
    RequestHead,
    ResponseHead,
)
from proxy.http1.events import Fields
from proxy.http1.fields import build_index, index_of, indexed_tokens
from proxy.layers.commands import Command, Conn, SendData
from proxy.layers.http2.link import end_stream, send_window
from proxy.session.hop import ALWAYS_HOP, strip_hop_by_hop

Header = tuple[bytes, bytes]
BACKLOG = 256 * 1024  # request bytes queued for a server's window before the session waits
_DROPPED = ALWAYS_HOP | {b"host", b"content-length"}
_CHUNKED = Framing(FramingKind.CHUNKED)
_LENGTH = FramingKind.LENGTH
_NO_TOKENS: set[bytes] = set()  # no Connection field: nothing it names to drop
# The reason phrase our HTTP/1-shaped head carries for a status (HTTP/2 has none).
_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
_OPEN = StreamState.OPEN  # compared by identity: an enum's hash is Python code
_HALF_CLOSED_REMOTE = StreamState.HALF_CLOSED_REMOTE


def request_block(head: RequestHead, scheme: str, authority: str, path: bytes) -> list[Header]:
    """RFC 9113 §8.3.1 pseudo-headers, then our fields without the connection-specific ones."""
    block: list[Header] = [
        (b":method", head.method),
        (b":scheme", scheme.encode("ascii")),
        (b":authority", authority.encode("ascii")),
        (b":path", path),
    ]
    index = index_of(head)
    tokens = indexed_tokens(index, b"connection") if b"connection" in index else _NO_TOKENS
    for name, value in strip_hop_by_hop(head, tokens, False, framing=True):
        lname = name.lower()
        if lname not in _DROPPED:
            block.append((lname, value))
    te = index.get(b"te")
    if te is not None and any(b"trailers" in value.lower() for value in te):
        block.append((b"te", b"trailers"))  # the one te value HTTP/2 allows (§8.2.2)
    if head.framing.kind is _LENGTH:
        block.append((b"content-length", b"%d" % head.framing.length))
    return block


def response_head(headers: list[Header], ended: bool, method: bytes) -> ResponseHead:
    """A response block as our head: framing from content-length or the stream's end."""
    status = 0
    fields: list[Header] = []
    length: int | None = None
    for name, value in headers:
        if name == b":status":
            status = int(value)
        elif not name.startswith(b":"):
            fields.append((name, value))
            if name == b"content-length" and value.isdigit():
                length = int(value)
    reason = _REASONS.get(status, b"")
    if method == b"HEAD" or status in (204, 304) or status < 200:
        framing = NO_BODY
    elif length is not None:
        framing = Framing(_LENGTH, length)
    elif ended:
        framing = Framing(_LENGTH, 0)
    else:
        framing = _CHUNKED
    kept = tuple(fields)
    return ResponseHead(b"2.0", status, reason, kept, framing, build_index(kept))


class ChannelResponses:
    """The response of one stream, as events; a ``ResponseSource``."""

    __slots__ = ("buffered", "complete", "error", "events", "h2", "held", "stream")

    def __init__(self, h2: H2Connection) -> None:
        self.h2 = h2
        self.stream = 0
        self.events: deque[Event] = deque()
        self.buffered = 0
        self.complete = False  # the end of the response is among the events
        self.error: str | None = None
        self.held = False  # the client is slow: nothing is taken (nor acknowledged)

    def push(self, event: Event) -> None:
        if type(event) is BodyData:
            self.buffered += len(event.data)
        elif type(event) is EndOfMessage:
            self.complete = True
        self.events.append(event)

    def next_event(self) -> Event | None:
        if self.held:
            return None
        if self.events:
            event = self.events.popleft()
            if type(event) is BodyData:
                self.buffered -= len(event.data)
                with contextlib.suppress(H2Error):
                    self.h2.acknowledge_received_data(len(event.data), self.stream)
            return event
        if self.error is not None and not self.complete:
            raise ProtocolError(502, self.error)
        return None

    def fail(self, message: str) -> None:
        if not self.complete and self.error is None:
            self.error = message

    def feed(self, data: bytes) -> None:
        """Bytes come to the connection, not here: a call is only a wake."""

    def feed_eof(self) -> None:
        self.fail("the server closed the connection")

    def expect(self, method: bytes) -> None:
        """The stream's end marks the response's; nothing to expect."""

    def take_remaining(self) -> bytes:
        return b""


class Channel:
    """The exchange of session ``token`` on stream ``stream`` of ``conn``."""

    __slots__ = (
        "by_stream", "closed", "conn", "ending", "h2", "method", "on_close", "queued",
        "responses", "stream", "token",
    )  # fmt: skip

    def __init__(
        self,
        conn: Conn,
        h2: H2Connection,
        token: int,
        on_close: Callable[[Channel], None],
        by_stream: dict[int, Channel],
    ) -> None:
        self.conn = conn
        self.h2 = h2
        self.token = token
        self.on_close = on_close  # frees its place on the connection
        self.by_stream = by_stream  # the connection's channels by stream id, for its frames
        self.closed = False
        self.stream = 0  # assigned when the head goes out
        self.method = b""
        self.queued = bytearray()
        self.ending: tuple[Fields] | None = None  # the end, queued behind the data
        self.responses = ChannelResponses(h2)

    @property
    def blocked(self) -> bool:
        return len(self.queued) > BACKLOG

    def hold(self, held: bool) -> None:
        """Take no more of the response (its window closes behind it), or again."""
        self.responses.held = held

    def send_head(
        self, head: RequestHead, scheme: str, authority: str, path: bytes, end: bool
    ) -> None:
        h2 = self.h2
        self.stream = self.responses.stream = h2.get_next_available_stream_id()
        self.by_stream[self.stream] = self
        self.method = head.method
        h2.send_headers(self.stream, request_block(head, scheme, authority, path), end_stream=end)

    def send_data(self, data: bytes) -> None:
        if data and self.stream:
            self.queued += data
            self.flush()

    def end(self, trailers: Fields) -> None:
        if self.stream:
            self.ending = (trailers,)
            self.flush()

    def flush(self) -> None:
        """Send what the server's windows allow, then the end behind it."""
        h2, stream = self.h2, self.stream
        if not self._open():
            self.queued.clear()
            self.ending = None
            return
        if self.queued and not send_window(h2, stream, self.queued):
            return
        if self.ending is not None:
            (trailers,) = self.ending
            self.ending = None
            block = [(k.lower(), v) for k, v in trailers if k.lower() not in _DROPPED]
            end_stream(h2, stream, block)

    def _open(self) -> bool:
        s = self.h2.streams.get(self.stream)
        if s is None:
            return False
        state = s.state_machine.state
        return state is _OPEN or state is _HALF_CLOSED_REMOTE

    def take(self, out: list[Command]) -> None:
        data = self.h2.data_to_send()
        if data:
            out.append(SendData(self.conn, data))

    def close(self, out: list[Command]) -> None:
        """Reset the stream unless it ended both ways (its server is told to stop)."""
        s = self.h2.streams.get(self.stream) if self.stream else None
        if s is not None and not s.closed:
            with contextlib.suppress(H2Error):
                self.h2.reset_stream(self.stream, ErrorCodes.CANCEL)
        responses = self.responses
        if responses.buffered and self.stream:  # taken by nobody: the connection gets it back
            with contextlib.suppress(H2Error):
                self.h2.acknowledge_received_data(responses.buffered, self.stream)
            responses.buffered = 0
            responses.events.clear()
        self.queued.clear()
        self.ending = None
        self.take(out)
        if not self.closed:
            self.closed = True
            self.on_close(self)
