"""What the per-exchange logic needs of the client-facing codec: ``ClientCodec``.

The session's parts (``RequestPath``, ``ResponsePath``, ``Endings``) run one
exchange at a time: rules, hooks, the record. They never write wire bytes to
the client themselves; they hand heads, body bytes and endings to the
client codec, which frames them for its protocol:

* ``proxy.session.clientside.ClientSide``: HTTP/1.1 on the client's own
  connection (the session reads its requests from bytes, responses go out
  as HTTP/1.1 heads and chunks);
* ``proxy.layers.http2.streamcodec.StreamCodec``: one HTTP/2 stream of a
  client connection (requests come as events from the HTTP/2 layer,
  responses go out as HEADERS and DATA frames on that stream).

Requests come in as the events of ``proxy.http1.events`` (head, body data,
end with trailers): those are the protocol-neutral shape both codecs
produce, whatever the wire looked like.
"""

from __future__ import annotations

from typing import Protocol

from proxy.http1 import Event, ResponseHead
from proxy.http1.events import Fields
from proxy.layers.commands import Command
from proxy.session.exchange import Exchange


class RequestSource(Protocol):
    """Where the session takes request events from, one at a time."""

    @property
    def buffered(self) -> int: ...  # bytes received and not yet taken as events
    @property
    def at_message_start(self) -> bool: ...
    @property
    def pending_line(self) -> tuple[bytes, bytes, bytes] | None: ...

    def next_event(self) -> Event | None: ...
    def feed(self, data: bytes) -> None: ...
    def feed_eof(self) -> None: ...
    def take_remaining(self) -> bytes: ...
    def refused(self, limit: int) -> tuple[bytes, int]: ...


class ClientCodec(Protocol):
    """The client-facing end of an exchange: requests in, responses framed out."""

    eof: bool  # the client ended its requests (its stream, or the whole connection)

    @property
    def requests(self) -> RequestSource: ...

    @property
    def multiplexed(self) -> bool:
        """One exchange per codec (an HTTP/2 stream): no tunnel, no next request."""
        ...

    def flow_control(self, out: list[Command]) -> None: ...
    def send_continue(self, ex: Exchange, out: list[Command]) -> None:
        """``100 Continue`` for a request whose body a rule waits for (RFC 9110 §10.1.1)."""
        ...

    def informational(self, ex: Exchange, head: ResponseHead, out: list[Command]) -> None: ...
    def send_head(self, ex: Exchange, head: ResponseHead, out: list[Command]) -> None:
        """The response head (as rules and hooks left it); sets ``ex.response``."""
        ...

    def body(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        """Response body bytes, at the pace rules set; counted as delivered."""
        ...

    def end(self, ex: Exchange, trailers: Fields, out: list[Command]) -> None:
        """The response body is complete (with trailers, where the protocol carries them)."""
        ...

    def send_whole(self, ex: Exchange, data: bytes, out: list[Command], paced: bool) -> None:
        """A whole response the proxy made (``ex.response`` already reads it back):
        ``data`` as HTTP/1.1 bytes; ``paced``: at the pace a rule set."""
        ...

    def close(self, out: list[Command], abort: bool = False, code: str | None = None) -> None:
        """No more on this connection (HTTP/1) or stream (HTTP/2); ``abort``: reset
        it (an HTTP/2 stream with error ``code``, a name from RFC 9113 §7)."""
        ...
