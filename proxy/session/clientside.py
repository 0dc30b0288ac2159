"""The client-facing HTTP/1 codec of a session: requests in, responses out.

``ClientSide`` holds the request parser and the client's end of stream,
pauses reading when too many unprocessed bytes pile up, and writes what goes
to the client: response heads built from our own parse
(``messages.response_out``), bodies re-chunked for HTTP/1.1 clients, now or
at the pace a rule's delay or bandwidth limit sets (each ``SendData`` then
carries its time). It is the HTTP/1 ``ClientCodec`` (``proxy.session.codec``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from proxy.http1 import RequestParser, ResponseHead
from proxy.http1.events import KIND_CHUNKED, Fields
from proxy.http1.writer import chunk, last_chunk
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Command,
    PauseReading,
    ResumeReading,
    SendData,
)
from proxy.session import messages, ruling
from proxy.session.config import SessionConfig
from proxy.session.exchange import Exchange


def paced(ex: Exchange, data: bytes, now: Callable[[], float]) -> list[tuple[bytes, float | None]]:
    """``data`` cut into the sends a rule's delay and bandwidth limit allow,
    each with its time (None: now); advances ``ex.next_at``."""
    if ex.next_at is None and ex.rate is None:
        return [(data, None)]
    at = max(ex.next_at or 0.0, now())
    rate = ex.rate
    sends: list[tuple[bytes, float | None]] = []
    if rate:
        step = max(1024, rate // 20)
        for i in range(0, len(data), step):
            piece = data[i : i + step]
            sends.append((piece, at))
            at += len(piece) / rate
    else:
        sends.append((data, at))
    ex.next_at = at
    return sends


class ClientSide:
    __slots__ = ("config", "eof", "paused", "requests")

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.requests = RequestParser(config.limits)
        self.eof = False  # the client ended its stream
        self.paused = False

    @property
    def multiplexed(self) -> bool:
        return False

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
        for piece, at in paced(ex, data, self.config.clock):
            out.append(SendData(CLIENT, piece, at))

    def send_continue(self, ex: Exchange, out: list[Command]) -> None:
        out.append(SendData(CLIENT, ruling.CONTINUE))

    def informational(self, ex: Exchange, head: ResponseHead, out: list[Command]) -> None:
        if ex.request.version == b"1.1":  # HTTP/1.0 clients get no 1xx (RFC 9110 §15.2)
            out.append(SendData(CLIENT, messages.informational_out(head)))

    def send_head(self, ex: Exchange, head: ResponseHead, out: list[Command]) -> None:
        # An HTTP/2 server's response goes out as HTTP/1.1; the record says so.
        ex.response = head if head.version != b"2.0" else replace(head, version=b"1.1")
        data, close, ex.server_closes = messages.response_out(
            ex.request, head, ex.upgrade, ex.close_client
        )
        ex.close_client = ex.close_client or close or not ex.request_done
        ex.response_started = True
        self.emit(ex, data, out)

    def _chunked(self, ex: Exchange) -> bool:
        response = ex.response
        assert response is not None
        return response.framing.kind is KIND_CHUNKED and ex.request.version == b"1.1"

    def body(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        """Response body bytes for the client, in the framing it was promised."""
        ex.sent_body += len(data)
        ex.count_delivered(data, self.config.preview_bytes)
        if self._chunked(ex):
            data = b"".join(chunk(data))
        if data:
            self.emit(ex, data, out)

    def end(self, ex: Exchange, trailers: Fields, out: list[Command]) -> None:
        if self._chunked(ex):
            self.emit(ex, last_chunk(trailers), out)

    def send_whole(self, ex: Exchange, data: bytes, out: list[Command], paced: bool) -> None:
        if paced:
            self.emit(ex, data, out)
        else:
            out.append(SendData(CLIENT, data))

    def close(self, out: list[Command], abort: bool = False, code: str | None = None) -> None:
        out.append(CloseConnection(CLIENT, abort))
