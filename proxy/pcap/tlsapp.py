"""What a decrypted TLS connection's application data becomes.

``TlsApplication`` sits between ``proxy.pcap.tlsstream`` (which opens the
records) and the protocol decoders. The protocol is the ALPN the server chose
(RFC 7301 §3.2): "http/1.1", or none at all, goes to the HTTP/1.x decoder
(``proxy.pcap.http``), "h2" to the HTTP/2 decoder (``proxy.pcap.h2decode``,
RFC 9113 §3.2); their exchanges are emitted as ``"http"`` records with
``https`` URLs and the connection's ``TlsFacts``. Anything else is counted but
not decoded, and the connection's record says so, rather than guessing. The
same holds after CONNECT or an upgrade inside TLS (``h2c`` is for cleartext
only, RFC 7540 §3.2, so a 101 to it inside TLS is a tunnel here too).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Protocol

from proxy.grpc.settings import GrpcSettings
from proxy.pcap.h2decode import H2Conversation
from proxy.pcap.http import HttpConversation
from proxy.pcap.records import CapturedExchange, Endpoint, TlsFacts

_HTTP1_ALPN = (None, "http/1.1")


class Connection(Protocol):
    """What a TLS stream needs from its connection analyzer."""

    client: Endpoint
    server: Endpoint
    connection: int
    # Optionally ``grpc: GrpcSettings | None``: gRPC calls in decrypted HTTP/2 decoded.

    def next_id(self) -> str: ...
    def emit(self, record: CapturedExchange) -> None: ...


class _Decoder(Protocol):
    def data(self, from_client: bool, ts: float, data: bytes) -> None: ...
    def fin(self, from_client: bool, ts: float) -> None: ...
    def stop(self, from_client: bool, ts: float, why: str) -> None: ...
    def close(self, ts: float, reason: str) -> None: ...


class AppMode(enum.Enum):
    UNDECIDED = 1  # no application data yet
    HTTP1 = 2
    HTTP2 = 4
    UNDECODED = 3  # decrypted, but no decoder for the protocol (or a tunnel)


class TlsApplication:
    """Routes plaintext to a decoder; the HTTP decoder's host (``proxy.pcap.http.Host``)."""

    def __init__(
        self, conn: Connection, preview: int, facts: Callable[[], TlsFacts], errors: list[str]
    ) -> None:
        self.conn = conn
        self.client, self.server, self.connection = conn.client, conn.server, conn.connection
        self.preview = preview
        self.facts = facts  # the connection's TLS facts at the time a record is emitted
        self.errors = errors  # the connection record's errors (notes go there)
        self.sni: str | None = None
        self.offered_alpn: tuple[str, ...] = ()
        self.mode = AppMode.UNDECIDED
        self.http: _Decoder | None = None

    def data(self, from_client: bool, ts: float, plain: bytes, alpn: str | None) -> None:
        if self.mode is AppMode.UNDECIDED:
            if alpn in _HTTP1_ALPN:
                self.mode = AppMode.HTTP1
                self.http = HttpConversation(self, self.preview, scheme="https")
            elif alpn == "h2":
                self.mode = AppMode.HTTP2
                grpc: GrpcSettings | None = getattr(self.conn, "grpc", None)  # optional
                self.http = H2Conversation(self, self.preview, "https", grpc=grpc)
            else:
                self.mode = AppMode.UNDECODED
                self.errors.append(f"decrypted; ALPN {alpn!r} is not decoded")
        if self.http is not None and plain:
            self.http.data(from_client, ts, plain)

    def fin(self, from_client: bool, ts: float) -> None:
        if self.http is not None:
            self.http.fin(from_client, ts)

    def stop(self, from_client: bool, ts: float, why: str) -> None:
        if self.http is not None:
            self.http.stop(from_client, ts, why)

    def close(self, ts: float, reason: str) -> None:
        if self.http is not None:
            self.http.close(ts, reason)

    # -- proxy.pcap.http.Host -----------------------------------------------------------
    def next_id(self) -> str:
        return self.conn.next_id()

    def emit(self, record: CapturedExchange) -> None:
        self.conn.emit(
            dataclasses.replace(record, sni=self.sni, alpn=self.offered_alpn, tls=self.facts())
        )

    def tunnel(
        self, ts: float, client_rest: bytes, server_rest: bytes,
        h2c: CapturedExchange | None = None,
    ) -> None:  # fmt: skip
        """CONNECT or an upgrade inside TLS: what follows is not decoded."""
        if h2c is not None:
            self.emit(dataclasses.replace(h2c, errors=(*h2c.errors, "h2c upgrade inside TLS")))
        self.errors.append("decrypted; the connection became a tunnel, not decoded further")
        self.mode, self.http = AppMode.UNDECODED, None
