"""Per-connection analysis: find out what a TCP stream carries, then decode it.

``ConnectionAnalyzer`` is the ``StreamConsumer`` that the reassembler
creates for each connection. It starts by *sniffing*: reassembled data is
buffered (at most ``SNIFF_LIMIT`` bytes) until the client's first bytes say
what the stream is:

* the HTTP/2 connection preface (h2c with prior knowledge, RFC 9113 §3.3)
  -> HTTP/2 (``proxy.pcap.h2decode``);
* a request line start (``token SP``) -> HTTP/1.x (``proxy.pcap.http``);
* a TLS handshake record (``16 03 0x``) -> TLS (``proxy.pcap.tlsstream``):
  the handshake is read for SNI, ALPN, version, cipher and certificate, and
  with a key log the connection is decrypted and its HTTP/1.x or HTTP/2
  decoded;
* anything else -> an opaque TCP stream, counted in bytes each way.

The buffered events are then replayed into the chosen decoder, so nothing
seen while sniffing is lost. After CONNECT or a 101 upgrade, the HTTP
decoder hands the rest of the connection back here and sniffing starts
again on the tunnelled bytes, except after ``Upgrade: h2c``, where HTTP/2
follows with the upgraded request as stream 1.

Which side is the client: the SYN sender when the handshake was captured.
Otherwise (the capture started mid-connection) the reassembler guesses from
the ports, and if the guessed *server* speaks first with a request line or
a ClientHello, the roles are swapped here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from proxy.grpc.settings import GrpcSettings
from proxy.pcap.h2decode import H2Conversation
from proxy.pcap.h2frames import PREFACE
from proxy.pcap.http import HttpConversation
from proxy.pcap.keylog import KeyLog
from proxy.pcap.records import CapturedExchange, endpoint
from proxy.pcap.tcp import ConnectionInfo
from proxy.pcap.tlsstream import TlsStream
from proxy.tls.clienthello import looks_like_tls

SNIFF_LIMIT = 1 << 16  # bytes buffered before a stream with no verdict is opaque
_HEAD = 64  # client bytes looked at

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_REQUEST_START = re.compile(rb"(?:\r\n)*" + _TCHAR + rb"{1,32} [\x21-\x7e]")
_REQUEST_PREFIX = re.compile(rb"(?:\r\n)*\r?" + _TCHAR + rb"{0,32} ?")

Emit = Callable[[CapturedExchange], None]
_CLIENT_FIRST = ("http", "h2", "tls")  # verdicts that only a client's first bytes give
_DATA, _GAP, _FIN = range(3)


class _Mode(Protocol):
    def data(self, from_client: bool, ts: float, data: bytes) -> None: ...
    def gap(self, from_client: bool, ts: float, size: int) -> None: ...
    def fin(self, from_client: bool, ts: float) -> None: ...
    def close(self, ts: float, reason: str) -> None: ...


def verdict(head: bytes, ended: bool) -> str | None:
    """ "http", "h2", "tls" or "tcp" from the client's first bytes; None: need more."""
    if not head:
        return "tcp" if ended else None
    if head[:3] == PREFACE[:3]:
        if head.startswith(PREFACE):
            return "h2"
        if PREFACE.startswith(head) and not ended:
            return None
    if head[0] == 0x16:
        if len(head) < 3:
            return "tcp" if ended else None
        return "tls" if looks_like_tls(head) else "tcp"
    if _REQUEST_START.match(head):
        return "http"
    if not ended and _REQUEST_PREFIX.fullmatch(head):
        return None
    return "tcp"


class ConnectionAnalyzer:
    """The reassembler's consumer for one connection; emits its records."""

    def __init__(
        self,
        info: ConnectionInfo,
        emit: Emit,
        preview: int = 256,
        keylog: KeyLog | None = None,
        grpc: GrpcSettings | None = None,
    ) -> None:
        self.info = info
        self.keylog = keylog  # TLS secrets (``tapproxy analyze --keylog``)
        self.grpc = grpc  # gRPC calls in HTTP/2 streams decoded (``--proto-path``)
        self.connection = info.id
        self.client = endpoint(*info.client)
        self.server = endpoint(*info.server)
        self.preview = preview
        self.swapped = False
        self._emit = emit
        self._records = 0
        self.mode: _Mode = _Sniff(self, info.start, allow_swap=not info.syn_seen)

    # -- StreamConsumer (directions as the reassembler saw them) -------------
    def on_data(self, from_client: bool, ts: float, data: bytes) -> None:
        self.mode.data(from_client != self.swapped, ts, data)

    def on_gap(self, from_client: bool, ts: float, size: int) -> None:
        self.mode.gap(from_client != self.swapped, ts, size)

    def on_fin(self, from_client: bool, ts: float) -> None:
        self.mode.fin(from_client != self.swapped, ts)

    def on_close(self, ts: float, reason: str) -> None:
        self.mode.close(ts, reason)

    # -- for the decoders ----------------------------------------------------
    def next_id(self) -> str:
        self._records += 1
        return f"{self.connection}-{self._records}"

    def emit(self, record: CapturedExchange) -> None:
        self._emit(record)

    def swap(self) -> None:
        self.swapped = not self.swapped
        self.client, self.server = self.server, self.client

    def tunnel(
        self, ts: float, client_rest: bytes, server_rest: bytes,
        h2c: CapturedExchange | None = None,
    ) -> None:  # fmt: skip
        if h2c is not None:
            self.mode = H2Conversation(self, self.preview, upgraded=h2c, grpc=self.grpc)
        else:
            self.mode = _Sniff(self, ts, allow_swap=False)
        if client_rest:
            self.mode.data(True, ts, client_rest)
        if server_rest:
            self.mode.data(False, ts, server_rest)


class _Sniff:
    """Buffers events until the client's first bytes give a verdict."""

    def __init__(self, conn: ConnectionAnalyzer, start: float, allow_swap: bool) -> None:
        self.conn = conn
        self.start = start
        self.allow_swap = allow_swap
        self.events: list[tuple[int, bool, float, bytes, int]] = []
        self.head = b""
        self.size = 0

    def data(self, from_client: bool, ts: float, data: bytes) -> None:
        if self.allow_swap and not from_client and verdict(data[:_HEAD], False) in _CLIENT_FIRST:
            self.conn.swap()
            self.events = [(k, not fc, t, d, n) for k, fc, t, d, n in self.events]
            from_client = True
        if from_client:
            self.allow_swap = False
            if len(self.head) < _HEAD:
                self.head += data[: _HEAD - len(self.head)]
        self.events.append((_DATA, from_client, ts, data, 0))
        self.size += len(data)
        self._decide(ended=False)

    def gap(self, from_client: bool, ts: float, size: int) -> None:
        self.events.append((_GAP, from_client, ts, b"", size))
        self._decide(ended=from_client)

    def fin(self, from_client: bool, ts: float) -> None:
        self.events.append((_FIN, from_client, ts, b"", 0))
        self._decide(ended=from_client)

    def close(self, ts: float, reason: str) -> None:
        if self._decide(ended=True):
            self.conn.mode.close(ts, reason)

    def _decide(self, ended: bool) -> bool:
        kind = verdict(self.head, ended)
        if kind is None and (self.size > SNIFF_LIMIT or ended):
            kind = "tcp"
        if kind is None:
            return False
        conn = self.conn
        if kind == "http":
            conn.mode = HttpConversation(conn, conn.preview)
        elif kind == "h2":
            conn.mode = H2Conversation(conn, conn.preview, grpc=conn.grpc)
        elif kind == "tls":
            conn.mode = TlsStream(conn, self.start, conn.keylog, conn.preview)
        else:
            conn.mode = _Opaque(conn, self.start)
        for what, from_client, ts, data, size in self.events:
            if what == _DATA:
                conn.mode.data(from_client, ts, data)
            elif what == _GAP:
                conn.mode.gap(from_client, ts, size)
            else:
                conn.mode.fin(from_client, ts)
        self.events = []
        return True


class _Opaque:
    """A TCP stream that is neither HTTP nor TLS: bytes are counted each way."""

    def __init__(self, conn: ConnectionAnalyzer, start: float) -> None:
        self.conn = conn
        self.start = start
        self.up = 0
        self.down = 0
        self.errors: list[str] = []

    def data(self, from_client: bool, ts: float, data: bytes) -> None:
        if from_client:
            self.up += len(data)
        else:
            self.down += len(data)

    def gap(self, from_client: bool, ts: float, size: int) -> None:
        side = "client" if from_client else "server"
        self.errors.append(f"{size} bytes missing from the {side} stream (capture gap)")

    def fin(self, from_client: bool, ts: float) -> None:
        return

    def close(self, ts: float, reason: str) -> None:
        conn = self.conn
        conn.emit(
            CapturedExchange(
                id=conn.next_id(), kind="tcp", connection=conn.connection,
                client=conn.client, server=conn.server, start=self.start, end=ts,
                bytes_client_to_server=self.up, bytes_server_to_client=self.down,
                close=reason, errors=tuple(self.errors),
            )
        )  # fmt: skip
