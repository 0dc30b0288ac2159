"""The client-facing side of an HTTP/1 session: requests in, responses out.

``ClientSide`` holds the request parser and the client's end of stream,
pauses reading when too many unprocessed bytes pile up, and writes what goes
to the client: now, or at the pace a rule's delay or bandwidth limit sets
(each ``SendData`` then carries its time), re-chunked for HTTP/1.1 clients.
"""

from __future__ import annotations

from proxy.http1 import FramingKind, RequestParser
from proxy.http1.writer import chunk
from proxy.layers.commands import CLIENT, Command, PauseReading, ResumeReading, SendData
from proxy.session.config import SessionConfig
from proxy.session.exchange import Exchange


class ClientSide:
    __slots__ = ("config", "eof", "paused", "requests")

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.requests = RequestParser(config.limits)
        self.eof = False  # the client ended its stream
        self.paused = False

    def flow_control(self, out: list[Command]) -> None:
        """Pause reading while too many unprocessed bytes are buffered."""
        over = self.requests.buffered > self.config.max_client_backlog
        if over and not self.paused:
            self.paused = True
            out.append(PauseReading(CLIENT))
        elif self.paused and not over:
            self.paused = False
            out.append(ResumeReading(CLIENT))

    def emit(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        """Send to the client now, or when a rule's delay/bandwidth allows."""
        if ex.next_at is None and ex.rate is None:
            out.append(SendData(CLIENT, data))
            return
        at = max(ex.next_at or 0.0, self.config.clock())
        rate = ex.rate
        if rate:
            step = max(1024, rate // 20)
            for i in range(0, len(data), step):
                piece = data[i : i + step]
                out.append(SendData(CLIENT, piece, at))
                at += len(piece) / rate
        else:
            out.append(SendData(CLIENT, data, at))
        ex.next_at = at

    def body(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        """Response body bytes for the client, in the framing it was promised."""
        ex.sent_body += len(data)
        ex.count_delivered(data, self.config.preview_bytes)
        assert ex.response is not None
        if ex.response.framing.kind is FramingKind.CHUNKED and ex.request.version == b"1.1":
            data = b"".join(chunk(data))
        if data:
            self.emit(ex, data, out)
