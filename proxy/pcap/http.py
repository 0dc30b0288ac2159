"""HTTP/1.x exchanges from one reassembled TCP connection.

``HttpConversation`` feeds the client's bytes to ``RequestParser`` and the
server's to ``ResponseParser``, the same strict codec the live proxy uses, and
pairs requests with responses in order (RFC 9112 §9.3: responses come in the
order of the requests, pipelined or not). Each response is parsed knowing
its request's method (``ResponseParser.expect``), so HEAD and CONNECT
responses are framed right. An exchange is emitted as a ``CapturedExchange``
as soon as both its request and its response have ended (or the connection
has, with an error saying what is missing).

Damage is contained per direction. After a gap or a parse error in a
direction, decoding of that direction *stops* (there is no resynchronising:
guessing where the next message starts inside unknown bytes is how
desynchronisation bugs are made). The exchange in progress carries the
error; exchanges whose requests were already read still get their
responses from the other direction. Anything left at the end of the
connection is emitted with an error saying why it is incomplete.

Server bytes that arrive while no request is outstanding are kept aside (up
to ``UNSOLICITED_LIMIT``) and become the start of the next response once the
next request has been read. Offline, the order in which the two directions
are delivered follows the capture (and the filling of holes), not the
endpoints' clocks, so this is not treated as an error unless the bytes are
never claimed; the live proxy's parser is stricter on purpose.

Upgrades: after a request that may switch protocols (CONNECT, or one with an
Upgrade field) the client's following bytes are held until the response
says: a 2xx to CONNECT or a 101 turns the connection into a tunnel (the host
then sniffs the tunnelled bytes afresh, so TLS inside CONNECT is reported
with its SNI); any other answer releases the held bytes to the request
parser. A 101 to ``Upgrade: h2c`` hands the connection over as HTTP/2 with
the request, not yet emitted, as stream 1 (``proxy.pcap.h2decode``).
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from proxy.http1 import (
    BodyData,
    EndOfMessage,
    FramingKind,
    ProtocolError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)
from proxy.pcap.records import CapturedExchange, Endpoint, text_pairs

HOLD_LIMIT = 1 << 20  # client bytes held while an upgrade is undecided
UNSOLICITED_LIMIT = 1 << 16  # server bytes accepted with no request outstanding

END_REASONS = {
    "fin": "connection closed",
    "rst": "connection reset",
    "eof": "capture ended",
    "timeout": "connection idle past the timeout",
    "evicted": "connection evicted (table full)",
}


class Host(Protocol):
    """What a conversation needs from its connection."""

    client: Endpoint
    server: Endpoint
    connection: int

    def next_id(self) -> str: ...
    def emit(self, record: CapturedExchange) -> None: ...
    def tunnel(
        self, ts: float, client_rest: bytes, server_rest: bytes,
        h2c: CapturedExchange | None = None,
    ) -> None: ...  # fmt: skip


class _Exchange:
    """A request and its response while they are being read."""

    __slots__ = (
        "errors", "head", "req_body", "req_preview", "resp_body", "resp_end",
        "resp_preview", "resp_start", "response", "start",
    )  # fmt: skip

    def __init__(self, start: float, head: RequestHead | None) -> None:
        self.start = start
        self.head = head
        self.req_body = 0
        self.req_preview = bytearray()
        self.response: ResponseHead | None = None
        self.resp_start: float | None = None
        self.resp_end: float | None = None
        self.resp_body = 0
        self.resp_preview = bytearray()
        self.errors: list[str] = []

    def record(self, host: Host, end: float, scheme: str) -> CapturedExchange:
        head, resp = self.head, self.response
        fields = text_pairs(head.fields) if head else ()
        return CapturedExchange(
            id=host.next_id(), kind="http", connection=host.connection,
            client=host.client, server=host.server, start=self.start, end=end,
            method=head.method.decode("latin-1") if head else None,
            target=head.target.decode("latin-1") if head else None,
            url=_url(head, scheme) if head else None,
            version=head.version.decode("latin-1") if head else None,
            request_fields=fields, request_body_size=self.req_body,
            request_body_preview=bytes(self.req_preview),
            response_start=self.resp_start, response_end=self.resp_end,
            status=resp.status if resp else None,
            reason=resp.reason.decode("latin-1") if resp else None,
            response_version=resp.version.decode("latin-1") if resp else None,
            response_fields=text_pairs(resp.fields) if resp else (),
            response_body_size=self.resp_body, response_body_preview=bytes(self.resp_preview),
            errors=tuple(self.errors),
        )  # fmt: skip


def _url(head: RequestHead, scheme: str) -> str:
    """Absolute URL for origin-form targets with a Host field (RFC 9112 §3.3)."""
    target = head.target.decode("latin-1")
    if head.method == b"CONNECT" or not target.startswith("/"):
        return target  # authority-form, absolute-form or "*"
    for name, value in head.fields:
        if name.lower() == b"host" and value:
            return f"{scheme}://{value.decode('latin-1')}{target}"
    return target


def _may_switch(head: RequestHead) -> bool:
    """CONNECT or an Upgrade request: the response decides what follows."""
    return head.method == b"CONNECT" or any(k.lower() == b"upgrade" for k, _ in head.fields)


class HttpConversation:
    """HTTP/1.x on one connection; fed per direction by the connection analyzer."""

    def __init__(self, host: Host, preview: int = 256, scheme: str = "http") -> None:
        self.host = host
        self.preview = preview
        self.scheme = scheme  # "https" for exchanges decrypted from TLS
        self.req = RequestParser()
        self.resp = ResponseParser()
        self.pending: deque[_Exchange] = deque()  # requests whose response is not done
        self.receiving: _Exchange | None = None  # request whose body is arriving
        self.req_start: float | None = None  # first byte of the request being read
        self.resp_start: float | None = None
        self.client_stopped: str | None = None
        self.server_stopped: str | None = None
        self.held: list[bytes] | None = None
        self.held_size = 0
        self.early: list[bytes] = []  # server bytes with no request outstanding
        self.early_size = 0
        self.done = False  # became a tunnel: the host has moved on

    # -- input from the connection ------------------------------------------
    def data(self, from_client: bool, ts: float, data: bytes) -> None:
        if from_client:
            self._client_data(ts, data)
        elif not self.server_stopped:
            if self.resp_start is None:
                self.resp_start = ts
            if self.pending:
                self.resp.feed(data)
                self._pump_server(ts)
            else:
                self.early.append(data)
                self.early_size += len(data)
                if self.early_size > UNSOLICITED_LIMIT:
                    self._stop_server(ts, "server sent data with no request outstanding")

    def gap(self, from_client: bool, ts: float, size: int) -> None:
        side = "client" if from_client else "server"
        self.stop(from_client, ts, f"{size} bytes missing from the {side} stream (capture gap)")

    def stop(self, from_client: bool, ts: float, why: str) -> None:
        """No more of this direction can be read (a gap, a record that fails to decrypt)."""
        if from_client:
            self._stop_client(ts, why)
        else:
            self._stop_server(ts, why)

    def fin(self, from_client: bool, ts: float) -> None:
        if from_client:
            if not self.client_stopped and self.held is None:
                self.req.feed_eof()
                self._pump_client(ts)
        elif not self.server_stopped:
            self.resp.feed_eof()
            self._pump_server(ts)

    def close(self, ts: float, reason: str) -> None:
        if self.done:
            return
        self.done = True
        ended = END_REASONS.get(reason, reason)
        receiving, self.receiving = self.receiving, None
        if receiving is not None and not self.client_stopped:
            receiving.errors.append(f"request incomplete: {ended}")
        while self.pending:
            ex = self.pending.popleft()
            if self.server_stopped:
                ex.errors.append(self.server_stopped)
            elif ex.response is None:
                ex.errors.append(f"no response: {ended}")
            else:
                ex.errors.append(f"response incomplete: {ended}")
            self.host.emit(ex.record(self.host, ts, self.scheme))
        if receiving is not None and receiving.resp_end is not None:
            self.host.emit(
                receiving.record(self.host, ts, self.scheme)
            )  # its response was complete
        if self.req.buffered and not self.client_stopped and self.held is None:
            self._orphan(ts, f"incomplete request head ({self.req.buffered} bytes): {ended}")
        unclaimed = self.resp.buffered + self.early_size
        if unclaimed and not self.server_stopped:
            why = (
                "for requests that could not be read" if self.client_stopped else "with no request"
            )
            self._orphan(ts, f"{unclaimed} bytes from the server {why}")

    # -- client side -----------------------------------------------------------
    def _client_data(self, ts: float, data: bytes) -> None:
        if self.client_stopped:
            return
        if self.held is not None:
            self.held.append(data)
            self.held_size += len(data)
            if self.held_size > HOLD_LIMIT:
                self._stop_client(ts, "too much client data while an upgrade was pending")
            return
        if self.req_start is None:
            self.req_start = ts
        self.req.feed(data)
        self._pump_client(ts)

    def _pump_client(self, ts: float) -> None:
        while self.held is None and not self.client_stopped and not self.done:
            try:
                event = self.req.next_event()
            except ProtocolError as e:
                self._stop_client(ts, f"request: {e.message}")
                return
            if event is None:
                return
            if isinstance(event, RequestHead):
                ex = _Exchange(self.req_start if self.req_start is not None else ts, event)
                self.pending.append(ex)
                self.receiving = ex
                self.resp.expect(event.method)
                if self.early:
                    self.resp.feed(b"".join(self.early))
                    self.early, self.early_size = [], 0
                if self.resp.buffered:
                    self._pump_server(ts)
            elif isinstance(event, BodyData) and self.receiving is not None:
                self.receiving.req_body += len(event.data)
                if self.preview:
                    _keep(self.receiving.req_preview, event.data, self.preview)
            elif isinstance(event, EndOfMessage) and self.receiving is not None:
                ex, self.receiving = self.receiving, None
                self.req_start = ts if self.req.buffered else None
                if ex.resp_end is not None:  # answered before the request ended
                    self.host.emit(ex.record(self.host, ts, self.scheme))
                elif ex.head is not None and _may_switch(ex.head):
                    self.held = []

    def _stop_client(self, ts: float, why: str) -> None:
        if self.client_stopped:
            return
        self.client_stopped = why
        if self.receiving is not None:
            ex, self.receiving = self.receiving, None
            ex.errors.append(why)
            if ex.resp_end is not None:
                self.host.emit(ex.record(self.host, ts, self.scheme))
        elif self.held is not None:
            if self.pending:
                self.pending[-1].errors.append(why)
        elif self.req_start is not None:
            self._orphan(ts, why)

    def _orphan(self, ts: float, why: str) -> None:
        """A record for bytes that never became a request head."""
        ex = _Exchange(self.req_start if self.req_start is not None else ts, None)
        ex.errors.append(why)
        self.host.emit(ex.record(self.host, ts, self.scheme))

    # -- server side -------------------------------------------------------------
    def _pump_server(self, ts: float) -> None:
        resp, pending = self.resp, self.pending
        while pending and not self.server_stopped and not self.done:
            try:
                event = resp.next_event()
            except ProtocolError as e:
                self._stop_server(ts, f"response: {e.message}")
                return
            if event is None:
                return
            ex = pending[0]
            if type(event) is BodyData:  # the common case first
                ex.resp_body += len(event.data)
                if self.preview:
                    _keep(ex.resp_preview, event.data, self.preview)
            elif isinstance(event, ResponseHead):
                if ex.resp_start is None:
                    ex.resp_start = self.resp_start if self.resp_start is not None else ts
                if event.informational:
                    continue
                ex.response = event
                if event.framing.kind is FramingKind.TUNNEL:
                    if _h2c(ex.head, event):
                        pending.popleft()
                        self._tunnel(ts, ex.record(self.host, ts, self.scheme))
                        return
                    self._finish(ex, ts)
                    self._tunnel(ts)
                    return
            elif isinstance(event, EndOfMessage):
                self._finish(ex, ts)
                if not pending and resp.buffered:  # bytes beyond what was asked for
                    self.early.append(resp.take_remaining())
                    self.early_size += len(self.early[-1])
                    self.resp = ResponseParser()
                self.resp_start = ts if self.resp.buffered or self.early else None
                if self.held is not None and not pending:
                    self._release(ts)

    def _finish(self, ex: _Exchange, ts: float) -> None:
        """The response ended; the record goes out once the request has ended too."""
        self.pending.popleft()
        ex.resp_end = ts
        if ex is not self.receiving:
            self.host.emit(ex.record(self.host, ts, self.scheme))

    def _stop_server(self, ts: float, why: str) -> None:
        if not self.server_stopped:
            self.server_stopped = why

    def _release(self, ts: float) -> None:
        """The upgrade was refused: the held bytes are requests after all."""
        held, self.held = b"".join(self.held or ()), None
        self.held_size = 0
        if held:
            self._client_data(ts, held)

    def _tunnel(self, ts: float, h2c: CapturedExchange | None = None) -> None:
        self.done = True
        client_rest = self.req.take_remaining() + b"".join(self.held or ())
        self.held = None
        for ex in self.pending:  # requests pipelined after an accepted upgrade
            ex.errors.append("request sent after the connection became a tunnel")
            self.host.emit(ex.record(self.host, ts, self.scheme))
        self.pending.clear()
        self.host.tunnel(ts, client_rest, self.resp.take_remaining(), h2c)


def _h2c(head: RequestHead | None, response: ResponseHead) -> bool:
    """A 101 switching to HTTP/2 over cleartext (RFC 7540 §3.2): stream 1 is the request."""
    if head is None or response.status != 101:
        return False
    return any(
        name.lower() == b"upgrade" and value.strip().lower() == b"h2c"
        for name, value in response.fields
    )


def _keep(preview: bytearray, data: bytes, limit: int) -> None:
    room = limit - len(preview)
    if room > 0:
        preview += data[:room]
