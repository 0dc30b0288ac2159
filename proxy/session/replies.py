"""A hook's ``Reply`` sent to the client: whole, with trailers, or a ``101``
followed by a replayed WebSocket session.

A plain reply is one HTTP/1.1 response framed by its length (``reply_bytes``),
which every client codec sends as it sends the proxy's other answers. A reply
with trailer fields (server replay of a gRPC call: ``grpc-status`` is a
trailer) goes through the codec's head, body and end instead: an HTTP/1.1
client gets the body chunked with the trailer section (RFC 9112 §7.1.2; a
server may send trailers whatever ``TE`` said, RFC 9110 §6.5.1 lets the
recipient drop them), an HTTP/1.0 client the body up to the close (it has no
chunked coding, so no trailers), an HTTP/2 client DATA then a trailing
HEADERS frame with END_STREAM (RFC 9113 §8.1).

A ``101`` with a WebSocket session to play (``Reply.websocket``) answers an
``Upgrade: websocket`` request of an HTTP/1.1 client: the head goes out and
the connection is handed to the WebSocket layer with a replayed server
(``proxy.layers.websocket.replayed``) in place of a server connection, so
its messages are recorded and given to rules like any other WebSocket's.
"""

from __future__ import annotations

from proxy.flow.hooks import HookKind, Reply
from proxy.http1 import ResponseHead
from proxy.http1.events import CHUNKED, TUNNEL
from proxy.layers.commands import Command, StartTunnel, server_conn
from proxy.session.endings import Endings
from proxy.session.exchange import Exchange
from proxy.session.hookpoints import HookPoints, reply_bytes
from proxy.session.hop import connection_tokens
from proxy.session.responses import reason_phrase
from proxy.session.sequencer import Sequencer

#: The server end of a replayed WebSocket: no connection is ever opened for it.
REPLAYED_SERVER = server_conn(2_000_000)


def _reason(reply: Reply) -> bytes:
    return reason_phrase(reply.status) if reply.reason is None else reply.reason


def asks_websocket(ex: Exchange) -> bool:
    """An HTTP/1.1 ``Upgrade: websocket`` request (RFC 6455 §4.1)."""
    head = ex.request
    if head.version != b"1.1" or b"upgrade" not in connection_tokens(head):
        return False
    values = b",".join(v for k, v in head.fields if k.lower() == b"upgrade")
    return b"websocket" in [t.strip().lower() for t in values.split(b",")]


class Replies:
    __slots__ = ("endings", "hooks", "s")

    def __init__(self, session: Sequencer, endings: Endings, hooks: HookPoints) -> None:
        self.s = session
        self.endings = endings
        self.hooks = hooks

    def send(self, ex: Exchange, reply: Reply, out: list[Command]) -> None:
        if reply.websocket is not None:
            if reply.status != 101 or self.s.client_side.multiplexed or not asks_websocket(ex):
                why = "a replayed WebSocket needs an HTTP/1.1 Upgrade: websocket request"
                self.endings.fail(ex, 502, why, out, server_open=False)
                return
            self._websocket(ex, reply, out)
        elif reply.trailers and ex.request.method != b"HEAD":
            self._trailed(ex, reply, out)
        else:
            self.endings.answer(ex, reply_bytes(reply), out)

    def _own(self, ex: Exchange) -> None:
        """The client gets the proxy's response, not the server's (for the record)."""
        ex.by_proxy = True
        ex.response_size = 0
        ex.response_preview = b""
        if ex.capture is not None:
            ex.capture.response = bytearray()

    def _trailed(self, ex: Exchange, reply: Reply, out: list[Command]) -> None:
        """The body and trailers through the codec (chunked for HTTP/1.1)."""
        codec = self.s.client_side
        head = ResponseHead(b"1.1", reply.status, _reason(reply), reply.headers, CHUNKED)
        self._own(ex)
        ex.trailers = reply.trailers  # the record's trailers (a gRPC call's status)
        codec.send_head(ex, head, out)
        codec.body(ex, reply.body, out)
        codec.end(ex, reply.trailers, out)
        self.endings.answered(ex, out)

    def _websocket(self, ex: Exchange, reply: Reply, out: list[Command]) -> None:
        """The ``101``, then the WebSocket layer with the replayed server."""
        s = self.s
        assert reply.websocket is not None
        if not ex.request_done:
            s.client_side.requests.next_event()  # the upgrade request's EndOfMessage
            ex.request_done = True
        ex.upgrade = True
        head = ResponseHead(b"1.1", 101, _reason(reply), reply.headers, TUNNEL)
        self._own(ex)
        s.client_side.send_head(ex, head, out)
        self.hooks.notice(HookKind.TUNNEL, ex, out)
        remaining = s.client_side.requests.take_remaining()
        out.append(StartTunnel(REPLAYED_SERVER, remaining, b"", reply.websocket))
        s.tunnel, s.ex = ex, None
