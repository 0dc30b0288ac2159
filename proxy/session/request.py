"""The request side of an HTTP session: from the client's parsed head to the server.

``HttpSession`` inherits these steps. The head goes out only once the body
bytes that arrived with it have parsed (a smuggled second request in the same
packet must never reach the server, hazards 14 and 18-20); then the body
streams as it comes, re-chunked when the forwarded framing is chunked, and
counted for the flow log's size, preview and capture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.http1 import BodyData, EndOfMessage, FramingKind, ProtocolError
from proxy.http1.writer import chunk, last_chunk
from proxy.session.commands import Command, SendServer
from proxy.session.exchange import Exchange

if TYPE_CHECKING:
    from proxy.http1 import RequestParser, ResponseParser
    from proxy.session.config import SessionConfig


class RequestSteps:
    if TYPE_CHECKING:
        config: SessionConfig
        requests: RequestParser
        responses: ResponseParser | None

        def _fail(
            self, ex: Exchange, status: int, message: str, out: list[Command],
            server_open: bool = True,
        ) -> list[Command]: ...  # fmt: skip

    def _send_head(self, ex: Exchange, out: list[Command]) -> None:
        """Forward the head, but only after the body bytes already here parse.

        A smuggling payload usually arrives in the same packet as its head; if
        its framing is bad, nothing of the message may reach the server
        (hazards 14, 18-20). Bytes that arrive later are streamed as they come.
        """
        assert self.responses is not None
        body: list[Command] = []
        if ex.prepared_body is not None:  # buffered for rules: framed by its length
            self.responses.expect(ex.forward.method)
            out.append(SendServer(ex.out_head))
            if ex.prepared_body:
                out.append(SendServer(ex.prepared_body))
            self._request_complete(ex, out)
            return
        if ex.req_buffer:  # over --max-body: what was buffered goes first, the rest streams
            self._forward_body(ex, bytes(ex.req_buffer), body)
            ex.req_buffer = None
        try:
            while not ex.request_done:
                event = self.requests.next_event()
                if event is None:
                    break
                self._request_body(ex, event, body)
        except ProtocolError as e:
            ex.error = f"client: {e.message}"
            self._fail(ex, e.status, e.message, out)
            return
        self.responses.expect(ex.forward.method)
        out.append(SendServer(ex.out_head))
        out.extend(body)

    def _request_body(self, ex: Exchange, event: object, out: list[Command]) -> None:
        if isinstance(event, BodyData):
            self._count_request(ex, event.data)
            self._forward_body(ex, event.data, out)
        elif isinstance(event, EndOfMessage):
            if ex.forward.framing.kind is FramingKind.CHUNKED:
                out.append(SendServer(last_chunk(event.trailers)))
            self._request_complete(ex, out)

    def _count_request(self, ex: Exchange, data: bytes) -> None:
        if ex.request_size < self.config.preview_bytes:
            ex.request_preview += data[: self.config.preview_bytes - ex.request_size]
        ex.request_size += len(data)
        if ex.capture is not None:
            ex.capture.add(data, True)

    def _forward_body(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        if ex.forward.framing.kind is FramingKind.CHUNKED:
            out.extend(SendServer(b) for b in chunk(data))
        else:
            out.append(SendServer(data))

    def _request_complete(self, ex: Exchange, out: list[Command]) -> None:
        ex.request_done = True
        ex.request_done_at = self.config.clock()
