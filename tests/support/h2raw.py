"""A raw HTTP/2 client over a blocking socket, for frames real clients never send.

``RawH2`` speaks prior-knowledge h2c with the ``h2`` library as a client
whose outbound validation and normalisation are off, so a test can put
uppercase names, CR/LF/NUL, misplaced pseudo-headers or a ``content-length``
that disagrees with the DATA on the wire exactly as written. ``wait``
collects what came back on one stream (status, body, trailers, RST_STREAM,
GOAWAY), bounded by a deadline.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.exceptions import ProtocolError

Header = tuple[bytes, bytes]


@dataclass
class StreamResult:
    """What the server did with one stream."""

    status: int | None = None
    headers: list[Header] = field(default_factory=list)
    body: bytes = b""
    trailers: list[Header] = field(default_factory=list)
    ended: bool = False  # END_STREAM from the server
    reset: int | None = None  # RST_STREAM's error code
    goaway: int | None = None  # GOAWAY's error code (for the whole connection)
    closed: bool = False  # the server closed the TCP connection

    @property
    def refused(self) -> bool:
        """Rejected: a 4xx answer, the stream reset with an error, or a GOAWAY with one."""
        if self.status is not None and 400 <= self.status < 500:
            return True
        if self.reset is not None and self.reset != 0:
            return True
        return self.goaway is not None and self.goaway != 0


def client_config() -> H2Configuration:
    return H2Configuration(
        client_side=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
        header_encoding=None,
    )


class RawH2:
    """One HTTP/2 connection to ``port`` on loopback."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = H2Connection(client_config())
        self.conn.initiate_connection()
        self.results: dict[int, StreamResult] = {}
        self.goaway: int | None = None
        self.closed = False
        self.flush()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def request(self, headers: list[Header], body: bytes = b"", end: bool = True) -> int:
        """HEADERS (and one DATA with ``body``), END_STREAM on the last frame when ``end``."""
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, headers, end_stream=end and not body)
        if body:
            self.conn.send_data(stream, body, end_stream=end)
        self.flush()
        return stream

    def data(self, stream: int, data: bytes, end: bool = False) -> None:
        self.conn.send_data(stream, data, end_stream=end)
        self.flush()

    def end(self, stream: int) -> None:
        self.conn.end_stream(stream)
        self.flush()

    def wait(self, stream: int, timeout: float | None = None) -> StreamResult:
        """Read until ``stream`` ended or was reset, a GOAWAY, EOF or the deadline."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            result = self.results.setdefault(stream, StreamResult())
            result.goaway = self.goaway
            result.closed = self.closed
            if result.ended or result.reset is not None or self.goaway is not None:
                return result
            left = deadline - time.monotonic()
            if self.closed or left <= 0:
                return result
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                self.closed = True
                continue
            self._receive(data)

    def _receive(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self.closed = True
            return
        for event in events:
            self._event(event)
        self.flush()

    def _event(self, event: object) -> None:
        stream = getattr(event, "stream_id", 0)
        result = self.results.setdefault(stream, StreamResult()) if stream else None
        if isinstance(event, ev.ResponseReceived) and result is not None:
            result.headers = list(event.headers)
            result.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, ev.DataReceived) and result is not None:
            result.body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, stream)
        elif isinstance(event, ev.TrailersReceived) and result is not None:
            result.trailers = list(event.headers)
        elif isinstance(event, ev.StreamEnded) and result is not None:
            result.ended = True
        elif isinstance(event, ev.StreamReset) and result is not None:
            result.reset = int(event.error_code)
        elif isinstance(event, ev.ConnectionTerminated):
            self.goaway = int(event.error_code)
