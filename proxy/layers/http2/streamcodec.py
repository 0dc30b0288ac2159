"""One HTTP/2 stream as the client codec of an exchange (``proxy.session.codec``).

The HTTP/2 layer gives each request stream its own ``HttpSession`` (rules,
hooks, the record, the server connection) with a ``StreamCodec`` in place
of the HTTP/1 client side: requests arrive as events the layer pushes
(``StreamRequests``), responses leave as HEADERS and DATA frames on the
stream, through the connection's ``ClientLink``. Request body bytes are
acknowledged to the client (WINDOW_UPDATE) only when the exchange takes
them, which is what makes HTTP/2 flow control real backpressure.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from h2.errors import ErrorCodes

from proxy.http1 import (
    BodyData,
    EndOfMessage,
    Event,
    FramingKind,
    ProtocolError,
    RequestHead,
    ResponseHead,
)
from proxy.http1.events import Fields
from proxy.layers.commands import Command
from proxy.layers.http2.heads import informational_block, response_block, trailer_block
from proxy.layers.http2.link import ClientLink
from proxy.session.clientside import paced
from proxy.session.config import SessionConfig
from proxy.session.exchange import Exchange
from proxy.session.messages import wants_close

HTTP2 = b"2.0"


class StreamRequests:
    """The request events of one stream, in order; a ``RequestSource``.

    A stream whose DATA disagrees with its ``content-length`` is malformed
    (RFC 9113 §8.1.1): h2 catches it frame by frame, but not a stream that
    ends, short, with trailers; that is checked here at its end, and the
    exchange gets the error instead of the end (hazard h2-26).
    """

    __slots__ = ("buffered", "error", "events", "expected", "link", "received", "stream")

    def __init__(self, link: ClientLink, stream: int) -> None:
        self.link = link
        self.stream = stream
        self.events: deque[Event] = deque()
        self.buffered = 0  # body bytes here, not yet taken (nor acknowledged)
        self.received = 0
        self.expected: int | None = None  # the head's content-length
        self.error: str | None = None

    def push(self, event: Event) -> None:
        kind = type(event)
        if kind is RequestHead and event.framing.kind is FramingKind.LENGTH:  # type: ignore[union-attr]
            self.expected = event.framing.length  # type: ignore[union-attr]
        elif kind is BodyData:
            self.buffered += len(event.data)  # type: ignore[union-attr]
            self.received += len(event.data)  # type: ignore[union-attr]
        elif kind is EndOfMessage and self.expected not in (None, self.received):
            self.error = (
                f"content-length {self.expected} but {self.received} bytes of DATA "
                "(RFC 9113 §8.1.1)"
            )
            return
        self.events.append(event)

    def next_event(self) -> Event | None:
        if not self.events:
            if self.error is not None:
                raise ProtocolError(400, self.error)
            return None
        event = self.events.popleft()
        if type(event) is BodyData:
            self.buffered -= len(event.data)
            self.link.consumed(self.stream, len(event.data))
        return event

    @property
    def at_message_start(self) -> bool:
        return not self.events

    @property
    def pending_line(self) -> tuple[bytes, bytes, bytes] | None:
        return None

    def feed(self, data: bytes) -> None:
        raise AssertionError("an HTTP/2 stream's requests come from its layer, not as bytes")

    def feed_eof(self) -> None:
        raise AssertionError("an HTTP/2 stream's end comes from its layer")

    def take_remaining(self) -> bytes:
        return b""

    def refused(self, limit: int) -> tuple[bytes, int]:
        return b"", 0


class StreamCodec:
    """The client end of one exchange on HTTP/2 stream ``stream``."""

    __slots__ = ("config", "ended", "eof", "headed", "link", "requests", "stream")

    def __init__(self, config: SessionConfig, link: ClientLink, stream: int) -> None:
        self.config = config
        self.link = link
        self.stream = stream
        self.requests = StreamRequests(link, stream)
        self.eof = False  # the client ended its side of the stream
        self.ended = False  # we ended (or reset) ours
        self.headed = False  # the response head went out

    @property
    def multiplexed(self) -> bool:
        return True

    def _take(self, out: list[Command], at: float | None = None) -> None:
        """Frames due at ``at`` (a rule's pacing) go out now as their own send;
        frames due now wait in the link for the layer's one send of the turn."""
        if at is not None:
            send = self.link.take(at)
            if send is not None:
                out.append(send)

    def _due_now(self, ex: Exchange, out: list[Command]) -> None:
        """Before frames a rule paces: what is due now goes now, not at their time."""
        if ex.next_at is not None or ex.rate is not None:
            send = self.link.take()
            if send is not None:
                out.append(send)

    def flow_control(self, out: list[Command]) -> None:
        """Nothing to do: the client's window is what we acknowledge."""

    def send_continue(self, ex: Exchange, out: list[Command]) -> None:
        self.link.headers(self.stream, [(b":status", b"100")])
        self._take(out)

    def informational(self, ex: Exchange, head: ResponseHead, out: list[Command]) -> None:
        self.link.headers(self.stream, informational_block(head))
        self._take(out)

    def send_head(self, ex: Exchange, head: ResponseHead, out: list[Command]) -> None:
        # A shared HTTP/2 server's head is already ours (channel.response_head).
        ex.response = head if head.version == HTTP2 else replace(head, version=HTTP2)
        ex.server_closes = wants_close(head)
        ex.response_started = True
        self.headed = True
        # No body: END_STREAM on the HEADERS frame itself, as gRPC's
        # trailers-only responses must be (and nothing else is the worse for it).
        framing = head.framing
        end = framing.kind is FramingKind.NONE or (
            framing.kind is FramingKind.LENGTH and framing.length == 0
        )
        self._due_now(ex, out)
        self.link.headers(self.stream, response_block(head, ex.request.method), end)
        self.ended = self.ended or end
        self._paced(ex, b"", out)

    def body(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        ex.sent_body += len(data)
        ex.count_delivered(data, self.config.preview_bytes)
        if data:
            self._due_now(ex, out)
            self._paced(ex, data, out)

    def _paced(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        if ex.next_at is None and ex.rate is None:  # no rule paces it: the usual case
            self.link.data(self.stream, data)
            return
        for piece, at in paced(ex, data, self.config.clock):
            self.link.data(self.stream, piece)
            self._take(out, at)

    def end(self, ex: Exchange, trailers: Fields, out: list[Command]) -> None:
        self.ended = True
        self._due_now(ex, out)
        self.link.end(self.stream, trailer_block(trailers) or None)
        self._take(out, ex.next_at)

    def send_whole(self, ex: Exchange, data: bytes, out: list[Command], paced: bool) -> None:
        """The proxy's own response: its head (read back into ``ex.response``) and body."""
        head = ex.response
        assert head is not None
        ex.response = replace(head, version=HTTP2)
        body = data[data.index(b"\r\n\r\n") + 4 :]
        self.headed = True
        if paced:
            self._due_now(ex, out)
        self.link.headers(self.stream, response_block(head, ex.request.method), not body)
        if body:
            self.link.data(self.stream, body)
            self.link.end(self.stream)
        self.ended = True
        self._take(out, ex.next_at if paced else None)

    def close(self, out: list[Command], abort: bool = False, code: str | None = None) -> None:
        """The exchange is over: reset the stream on ``abort``, else end what is open.

        A client still sending a request the response made moot is asked to
        stop without error (RFC 9113 §8.1: RST_STREAM with NO_ERROR). A reset
        is CANCEL unless a rule named the code; a stream closed before any
        response (a rule's ``block: {close: true}``) is reset with NO_ERROR,
        since HTTP/2 has no response without a head.
        """
        if abort:
            self.link.reset(self.stream, ErrorCodes[code] if code else ErrorCodes.CANCEL)
        elif not self.headed:  # closed without an answer (a rule's block close)
            self.link.reset(self.stream, ErrorCodes.NO_ERROR)
        elif not self.ended:
            self.link.end(self.stream)
        elif not self.eof:
            self.link.end(self.stream)
            if self.link.pending(self.stream) == 0:
                self.link.reset(self.stream, ErrorCodes.NO_ERROR)
        self.ended = True
        self._take(out)
