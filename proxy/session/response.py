"""The response side of an HTTP session: from the server's bytes to the client.

``HttpSession`` inherits these steps. The response is parsed with our codec,
its head rebuilt (hop-by-hop fields out, framing from our parse, our HTTP
version), rules consulted, and the body relayed, re-chunked for HTTP/1.1
clients or read until close for HTTP/1.0 ones, at the pace rule faults
allow. A pooled connection that failed before any response byte is retried
once on a fresh one (RFC 9112 §9.3.1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.http1 import BodyData, EndOfMessage, FramingKind, ProtocolError, ResponseHead
from proxy.http1.writer import chunk, last_chunk
from proxy.session import messages
from proxy.session.commands import (
    CloseClient,
    Command,
    FlowDone,
    OpenServer,
    SendClient,
    StartTunnel,
)
from proxy.session.exchange import Exchange

if TYPE_CHECKING:
    from proxy.http1 import RequestParser, ResponseParser
    from proxy.session.config import SessionConfig
    from proxy.session.target import Target


class ResponseSteps:
    if TYPE_CHECKING:
        config: SessionConfig
        requests: RequestParser
        responses: ResponseParser | None
        ex: Exchange | None
        tunnel: Exchange | None
        closed: bool
        server_key: tuple[str, int, str | None] | None
        server_closing: bool
        _client_eof: bool

        def _release(self, out: list[Command], reusable: bool) -> None: ...
        def _record(self, ex: Exchange) -> Exchange: ...
        def _pump_client(self, out: list[Command]) -> list[Command]: ...
        def _server_key(self, target: Target) -> tuple[str, int, str | None]: ...
        def _fail(
            self, ex: Exchange, status: int, message: str, out: list[Command],
            server_open: bool = True,
        ) -> list[Command]: ...  # fmt: skip
        def _rules_response(
            self, ex: Exchange, head: ResponseHead, out: list[Command]
        ) -> ResponseHead | None: ...
        def _collect_response(self, ex: Exchange, data: bytes, out: list[Command]) -> None: ...
        def _ruled_response_body(self, ex: Exchange, out: list[Command]) -> bool: ...
        def _cut(self, ex: Exchange, data: bytes, out: list[Command]) -> None: ...

    def _pump_server(self, out: list[Command]) -> list[Command]:
        responses = self.responses
        ex = self.ex
        try:
            while responses is not None and ex is not None and self.ex is ex:
                event = responses.next_event()
                if event is None:
                    break
                if isinstance(event, ResponseHead):
                    self._response_head(ex, event, out)
                elif isinstance(event, BodyData):
                    self._response_body(ex, event.data, out)
                else:
                    assert isinstance(event, EndOfMessage)
                    self._response_end(ex, event, out)
        except ProtocolError as e:
            if ex is not None and self.ex is ex:
                self._server_error(ex, e, out)
        return out

    def _server_error(self, ex: Exchange, e: ProtocolError, out: list[Command]) -> None:
        if ex.reused and ex.retryable and ex.response is None and not ex.response_started:
            # A pooled connection the server had already closed: try once more
            # on a fresh connection (RFC 9112 §9.3.1 allows retrying idempotent
            # or unsent requests).
            ex.reused = False
            self._release(out, reusable=False)
            assert ex.target is not None
            key = self._server_key(ex.target)
            self.server_key = key
            out.append(OpenServer(key[0], key[1], tls=key[2] is not None, sni=key[2], reuse=False))
            return
        ex.error = f"upstream: {e.message}"
        self._fail(ex, 502, f"upstream {ex.url}: {e.message}", out)

    def _response_head(self, ex: Exchange, head: ResponseHead, out: list[Command]) -> None:
        if head.informational:
            if ex.request.version == b"1.1":
                out.append(SendClient(messages.informational_out(head)))
            return
        if head.status == 101 and not ex.upgrade:
            raise ProtocolError(502, "101 Switching Protocols without an upgrade request")
        ex.response_head_at = self.config.clock()
        if ex.plan is not None and head.status != 101:
            ruled = self._rules_response(ex, head, out)
            if ruled is None:
                return
            head = ruled
        self._send_response_head(ex, head, out)
        if head.framing.kind is FramingKind.TUNNEL:
            assert self.responses is not None
            out.append(
                StartTunnel(
                    to_server=self.requests.take_remaining(),
                    to_client=self.responses.take_remaining(),
                )
            )
            self.tunnel, self.ex = ex, None

    def _send_response_head(self, ex: Exchange, head: ResponseHead, out: list[Command]) -> None:
        ex.response = head
        data, close, ex.server_closes = messages.response_out(
            ex.request, head, ex.upgrade, ex.close_client
        )
        ex.close_client = ex.close_client or close or not ex.request_done
        ex.response_started = True
        self._emit(ex, data, out)

    def _response_body(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        preview = self.config.preview_bytes
        if ex.response_size < preview:
            ex.response_preview += data[: preview - ex.response_size]
        ex.response_size += len(data)
        if ex.capture is not None:
            ex.capture.add(data, False)
        if ex.resp_buffer is not None:
            self._collect_response(ex, data, out)
        else:
            self._body_to_client(ex, data, out)

    def _body_to_client(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        if ex.cut_after is not None:
            left = ex.cut_after - ex.sent_body
            if len(data) >= left:
                self._cut(ex, data[:left], out)
                return
        ex.sent_body += len(data)
        assert ex.response is not None
        if ex.response.framing.kind is FramingKind.CHUNKED and ex.request.version == b"1.1":
            data = b"".join(chunk(data))
        self._emit(ex, data, out)

    def _emit(self, ex: Exchange, data: bytes, out: list[Command]) -> None:
        """Send to the client now, or when a rule's delay/bandwidth allows."""
        if ex.next_at is None and ex.rate is None:
            out.append(SendClient(data))
            return
        at = max(ex.next_at or 0.0, self.config.clock())
        rate = ex.rate
        if rate:
            step = max(1024, rate // 20)
            for i in range(0, len(data), step):
                piece = data[i : i + step]
                out.append(SendClient(piece, at))
                at += len(piece) / rate
        else:
            out.append(SendClient(data, at))
        ex.next_at = at

    def _response_end(self, ex: Exchange, event: EndOfMessage, out: list[Command]) -> None:
        assert ex.response is not None
        if ex.resp_buffer is not None:
            if not self._ruled_response_body(ex, out):
                return
        elif ex.response.framing.kind is FramingKind.CHUNKED and ex.request.version == b"1.1":
            self._emit(ex, last_chunk(event.trailers), out)
        if not ex.request_done:
            # The server answered before the request body was complete: the
            # rest of that body can't be relayed, so both connections end.
            ex.close_client = True
        self._finish(ex, out)

    def _finish(self, ex: Exchange, out: list[Command]) -> None:
        assert ex.response is not None
        reusable = (
            ex.request_done
            and not self.server_closing
            and not (self.responses is not None and self.responses.buffered)
            and ex.response.framing.kind is not FramingKind.CLOSE
            and not ex.server_closes
        )
        self.ex = None
        out.append(FlowDone(self._record(ex)))
        if ex.close_client or self._client_eof:
            self._release(out, reusable=reusable)
            self.closed = True
            out.append(CloseClient())
            return
        if not reusable:
            self._release(out, reusable=False)
        self._pump_client(out)
