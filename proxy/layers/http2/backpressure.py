"""Per-stream backpressure between a client's HTTP/2 windows and the stream's server.

Response data the client's window does not let out waits in the client link
(``ClientLink.pending``). Beyond ``STREAM_BACKLOG`` the stream's server is
made to wait: an HTTP/1.1 server connection stops being read
(``PauseReading``); a stream on a shared HTTP/2 server connection is held
(its data is no longer taken, so its window closes). Below half of it,
both go on. And when a stream ends, the request data it received that
nobody took is acknowledged anyway, or the connection's window would
shrink for good.
"""

from __future__ import annotations

from proxy.layers.commands import Command, PauseReading, ResumeReading
from proxy.layers.http2.link import ClientLink
from proxy.layers.http2.streamcodec import StreamCodec
from proxy.session.http import HttpSession

STREAM_BACKLOG = 256 * 1024  # response bytes queued for a slow client before its server waits


class Backpressure:
    __slots__ = ("link", "paused")

    def __init__(self, link: ClientLink) -> None:
        self.link = link
        self.paused: set[int] = set()  # streams whose server waits

    def ended(self, stream: int, session: HttpSession) -> None:
        self.paused.discard(stream)
        codec = session.client_side
        assert isinstance(codec, StreamCodec)
        self.link.consumed(stream, codec.requests.buffered)
        codec.requests.buffered = 0

    def balance(self, stream: int, session: HttpSession, out: list[Command]) -> bool:
        """Pause or resume ``stream``'s server; True: the session has held data to take."""
        server = session.server
        backlog = self.link.pending(stream)
        if backlog > STREAM_BACKLOG and stream not in self.paused:
            self.paused.add(stream)
            if server.channel is not None:  # a shared server: its stream waits
                server.channel.hold(True)
            elif server.conn is not None:
                out.append(PauseReading(server.conn))
        elif stream in self.paused and backlog <= STREAM_BACKLOG // 2:
            self.paused.discard(stream)
            if server.channel is not None:
                server.channel.hold(False)
                return True
            if server.conn is not None:
                out.append(ResumeReading(server.conn))
        return False
