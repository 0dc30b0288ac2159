"""A request onto a stream of a shared HTTP/2 server connection.

The head goes out as a header block built from our own parse (RFC 9113
§8.3.1: ``:method``, ``:scheme``, ``:authority``, ``:path``; hop-by-hop and
connection-specific fields dropped, §8.2.2, except ``te: trailers``), the
body as DATA as it comes (or as the rules left it), trailers as a last
header block. As for HTTP/1, the head waits until the body bytes that came
with it have been taken, so what a stream carries is what we parsed.

The frames wait in the connection's buffer: the layer that drives the
shared connections takes them once per turn (``UpstreamMux.flush``, after
the sessions it ran), one send for every stream that spoke, not one each.
"""

from __future__ import annotations

from proxy.http1 import BodyData, EndOfMessage
from proxy.layers.commands import Command
from proxy.session.codec import RequestSource
from proxy.session.exchange import Exchange
from proxy.session.shared import StreamChannel


def is_grpc(ex: Exchange) -> bool:
    """A gRPC call over HTTP/2 (``application/grpc``, ``+proto``, ``;charset``...;
    not gRPC-Web, which is made for HTTP/1.1)."""
    if ex.request.version != b"2.0":
        return False
    for name, value in ex.request.fields:
        if name.lower() == b"content-type":
            kind = value.lower()
            return kind == b"application/grpc" or kind.startswith(
                (b"application/grpc+", b"application/grpc;")
            )
    return False


def send_request(
    channel: StreamChannel,
    ex: Exchange,
    requests: RequestSource,
    preview: int,
    now: float,
    out: list[Command],
) -> None:
    """The head (once the body bytes already here are taken), then those bytes."""
    target = ex.target
    assert target is not None
    head = ex.forward
    body = ex.prepared_body
    if body is not None:  # buffered for rules
        channel.send_head(head, target.scheme, target.authority, target.path, not body)
        if body:
            channel.send_data(body)
            channel.end(())
        _complete(ex, now)
        return
    early = b""
    if ex.req_buffer:  # over --max-body: what was buffered (and counted) goes first
        early, ex.req_buffer = bytes(ex.req_buffer), None
    events: list[object] = []
    while True:
        item = requests.next_event()
        if item is None:
            break
        events.append(item)
        if isinstance(item, EndOfMessage):
            break  # what follows is the next request's (HTTP/1 pipelining)
    bare_end = not early and len(events) == 1 and events[0] == EndOfMessage()
    channel.send_head(head, target.scheme, target.authority, target.path, bare_end)
    if bare_end:
        _complete(ex, now)
    else:
        if early:
            channel.send_data(early)
        for event in events:
            request_event(channel, ex, event, preview, now, out)


def request_event(
    channel: StreamChannel,
    ex: Exchange,
    event: object,
    preview: int,
    now: float,
    out: list[Command],
) -> None:
    """A body event of the request being forwarded on ``channel``."""
    if isinstance(event, BodyData):
        ex.count_request(event.data, preview)
        edit = ex.grpc_edit
        channel.send_data(event.data if edit is None else edit.request(event.data))
    elif isinstance(event, EndOfMessage):
        if ex.grpc_edit is not None:  # a message cut short goes as it came
            channel.send_data(ex.grpc_edit.rest(True))
        channel.end(event.trailers)
        _complete(ex, now)


def _complete(ex: Exchange, now: float) -> None:
    ex.request_done = True
    ex.request_done_at = now
