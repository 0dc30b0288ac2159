"""A client's new stream: its header block checked, and the session that serves it.

Every request stream gets an ``HttpSession`` whose client codec is the
stream (``StreamCodec``); an extended CONNECT for a WebSocket (RFC 8441,
``extconnect``) gets a ``WsSession`` (``wsstream``). A block that cannot
be served is ``Refused``: malformed (RFC 9113 §8.1.1, 400), a plain CONNECT
(RFC 9113 §8.5, 501) or an extended CONNECT for another protocol (501).
"""

from __future__ import annotations

from collections.abc import Iterator

from proxy.flow.record import Address
from proxy.http1 import EndOfMessage, RequestHead
from proxy.layers.commands import CloseConnection, Command, StartTunnel
from proxy.layers.events import Event, TunnelEnded
from proxy.layers.http2.extconnect import Unsupported, extended, websocket_request
from proxy.layers.http2.link import ClientLink
from proxy.layers.http2.request import MalformedRequest, request_head
from proxy.layers.http2.streamcodec import StreamCodec
from proxy.layers.http2.upstream import UpstreamMux
from proxy.layers.http2.wsstream import ws_session
from proxy.session.config import SessionConfig
from proxy.session.http import HttpSession

Headers = list[tuple[bytes, bytes]]


class Refused(Exception):
    """The stream is answered ``status`` with this message, and reset."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class StreamSession(HttpSession):
    """A request stream's session. HTTP/2 has no ``101`` (RFC 9113 §8.6) and
    its requests no ``Upgrade`` (§8.2.2); one that a hook's or a rule's edit
    gave an upgrade and its server switched is ended, not left waiting for a
    tunnel that only an extended CONNECT's session runs (``wsstream``)."""

    __slots__ = ()

    def handle(self, event: Event) -> list[Command]:
        out = super().handle(event)
        if out and type(out[-1]) is StartTunnel:
            switch = out.pop()
            assert isinstance(switch, StartTunnel)
            out.append(CloseConnection(switch.server, abort=True))
            self.client_side.close(out, abort=True)  # the stream: RST_STREAM CANCEL
            error = "server: switched protocols on an HTTP/2 stream (RFC 9113 §8.6)"
            out += super().handle(TunnelEnded(None, error))
        return out


class StreamOpener:
    """What every stream's session shares: the config, the client, its link,
    the names of server connections and the shared HTTP/2 upstreams."""

    __slots__ = ("client", "config", "ids", "link", "mux")

    def __init__(
        self,
        config: SessionConfig,
        client: Address,
        link: ClientLink,
        ids: Iterator[int],
        mux: UpstreamMux,
    ) -> None:
        self.config = config
        self.client = client
        self.link = link
        self.ids = ids
        self.mux = mux

    def request(self, stream: int, headers: Headers, ended: bool) -> HttpSession:
        """The session for a request block (``ended``: END_STREAM came with it)."""
        absolute = self.config.upstream is None  # a forward proxy's target is a URL
        ws = extended(headers)
        try:
            if ws:
                head = websocket_request(headers, ended, absolute)
            else:
                head, _pseudo = request_head(headers, ended, absolute)
        except MalformedRequest as e:
            raise Refused(str(e), 400) from None
        except Unsupported as e:
            raise Refused(str(e), 501) from None
        if head.method == b"CONNECT":
            raise Refused("CONNECT over HTTP/2 is not supported", 501)
        return self.session(stream, head, ended, ws)

    def session(self, stream: int, head: RequestHead, ended: bool, ws: bool = False) -> HttpSession:
        """A request stream's session, with ``head`` (and its end) to read."""
        if ws:
            session = ws_session(self.config, self.client, self.link, self.ids, stream, self.mux)
        else:
            first = StreamCodec(self.config, self.link, stream)
            session = StreamSession(self.config, self.client, first, self.ids, self.mux, stream)
        codec = session.client_side
        assert isinstance(codec, StreamCodec)
        codec.requests.push(head)
        if ended:
            codec.requests.push(EndOfMessage())
            codec.eof = True
        return session
