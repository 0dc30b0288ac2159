"""What offline analysis produces: one ``CapturedExchange`` per exchange.

A record is one of three kinds:

* ``"http"``: one HTTP/1.x request and its response, or one HTTP/2 stream
  (or as much of them as the capture held, with ``errors`` saying what is
  missing);
* ``"tls"``: one TLS connection, with the SNI and ALPN offered in its
  ClientHello, what the ServerHello chose (``TlsFacts``) and the bytes sent
  each way. With a key log the connection is decrypted
  (``proxy.pcap.tlsstream``) and its HTTP/1.x exchanges or HTTP/2 streams are ``"http"``
  records of their own, carrying the same ``TlsFacts``;
* ``"tcp"``: any other TCP connection (or the opaque tunnel after a WebSocket
  upgrade), with the bytes sent each way.

Text fields are decoded from the wire as latin-1, which maps every byte to one
character and so never fails nor loses information. Times are capture
timestamps in seconds since the epoch.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from proxy.flow.grpcinfo import GrpcCall, GrpcMessage

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int


def endpoint(packed: bytes, port: int) -> Endpoint:
    """An endpoint from a packed IPv4 or IPv6 address."""
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return Endpoint(socket.inet_ntop(family, packed), port)


def text_pairs(fields: tuple[tuple[bytes, bytes], ...]) -> Pairs:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in fields)


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """What a passive reader learned about one TLS connection."""

    version: str | None = None  # "TLSv1.2", "TLSv1.3" (as OpenSSL names them)
    cipher: str | None = None  # IANA name of the negotiated suite
    alpn: str | None = None  # negotiated (TLS 1.3: known only after decryption)
    decrypted: bool = False  # a key log held this connection's secrets
    cert_subject: str | None = None  # end-entity certificate (TLS 1.3: if decrypted)
    cert_issuer: str | None = None


@dataclass(frozen=True, slots=True)
class GrpcCapture:
    call: GrpcCall
    messages: tuple[GrpcMessage, ...]


@dataclass(frozen=True, slots=True)
class CapturedExchange:
    id: str  # "<connection>-<n>": the n-th record of the n-th connection
    kind: str  # "http", "tls" or "tcp"
    connection: int
    client: Endpoint
    server: Endpoint
    start: float  # request start (http) or first packet (tls, tcp)
    end: float  # response end, or the last time anything was seen
    # http
    method: str | None = None
    target: str | None = None  # as in the request line
    url: str | None = None  # absolute when the Host field was present
    version: str | None = None  # "1.1", "1.0" or "2.0"
    request_fields: Pairs = ()
    request_body_size: int = 0
    request_body_preview: bytes = b""
    response_start: float | None = None
    response_end: float | None = None
    status: int | None = None
    reason: str | None = None
    response_version: str | None = None
    response_fields: Pairs = ()
    response_body_size: int = 0
    response_body_preview: bytes = b""
    # tls
    sni: str | None = None
    alpn: tuple[str, ...] = ()  # offered by the client
    tls: TlsFacts | None = None  # for "tls" records and "http" ones decrypted from TLS
    # tls and tcp
    bytes_client_to_server: int = 0
    bytes_server_to_client: int = 0
    close: str | None = None  # "fin", "rst", "eof" (capture ended), "timeout", "evicted"
    errors: tuple[str, ...] = ()
    grpc: GrpcCapture | None = None  # a gRPC call and its messages (proxy.pcap.grpccapture)
