"""One HTTP/2 stream of a captured connection, and the record it becomes.

``H2Conversation`` (``proxy.pcap.h2decode``) walks the frames and keeps an
``H2Stream`` per open stream: its request and response header lists, the
body sizes and previews, when each side began and ended, what went wrong.
``stream_record`` turns one into its ``CapturedExchange`` (a request
without ``:method`` is recorded as one that could not be read, RFC 9113
§8.3.1; after an ``Upgrade: h2c`` the HTTP/1.1 request stands for stream 1,
RFC 7540 §3.2; a gRPC call adds its messages and status).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from proxy.pcap.grpccapture import GrpcTap
from proxy.pcap.h2fields import Headers, regular, request_line
from proxy.pcap.records import CapturedExchange, Endpoint


class Owner(Protocol):
    """The connection a stream's record names."""

    client: Endpoint
    server: Endpoint
    connection: int

    def next_id(self) -> str: ...


class H2Stream:
    """One stream while its request and response are being read."""

    __slots__ = (
        "errors", "req_body", "req_done", "req_preview", "request", "resp_body", "resp_end",
        "resp_preview", "resp_start", "response", "server_reset", "start", "status", "upgraded",
    )  # fmt: skip

    def __init__(self, start: float, request: Headers | None) -> None:
        self.start = start
        self.request = request
        self.req_body = 0
        self.req_preview = bytearray()
        self.req_done = False
        self.resp_start: float | None = None
        self.status: int | None = None
        self.response: Headers = []
        self.resp_body = 0
        self.resp_preview = bytearray()
        self.resp_end: float | None = None
        self.errors: list[str] = []
        self.upgraded: CapturedExchange | None = None  # the HTTP/1.1 request of an h2c upgrade
        self.server_reset = False  # NO_ERROR after the response: the rest of the request may come


def opened_by_request(ts: float, headers: Headers) -> H2Stream:
    """A stream opened by a request's header block; without ``:method`` it is malformed
    (RFC 9113 §8.3.1) and recorded as a request that could not be read."""
    if any(name == b":method" for name, _ in headers):
        return H2Stream(ts, headers)
    stream = H2Stream(ts, None)
    stream.errors.append("request without :method (malformed)")
    return stream


def keep(preview: bytearray, data: bytes, limit: int) -> None:
    """The first ``limit`` bytes of a body, as they come."""
    room = limit - len(preview)
    if room > 0:
        preview += data[:room]


def stream_record(
    s: H2Stream, owner: Owner, scheme: str, grpc: GrpcTap | None, end: float,
    errors: list[str] | None = None,
) -> CapturedExchange:  # fmt: skip
    """The record of stream ``s``, ended at ``end`` (``errors``: instead of its own)."""
    base = s.upgraded if s.upgraded is not None else _request(s, owner, scheme)
    final = s.status is not None
    if grpc is not None:
        base = grpc.finish(s, base, s.response if final else None)
    return dataclasses.replace(
        base, end=end, response_start=s.resp_start, response_end=s.resp_end, status=s.status,
        reason="" if final else None, response_version="2.0" if final else None,
        response_fields=regular(s.response), response_body_size=s.resp_body,
        response_body_preview=bytes(s.resp_preview),
        errors=tuple(s.errors if errors is None else errors),
    )  # fmt: skip


def _request(s: H2Stream, owner: Owner, scheme: str) -> CapturedExchange:
    """The request half of a stream's record (``scheme``: when it has no ``:scheme``)."""
    method = target = url = None
    if s.request is not None:
        method, target, url = request_line(s.request, scheme)
    return CapturedExchange(
        id=owner.next_id(), kind="http", connection=owner.connection, client=owner.client,
        server=owner.server, start=s.start, end=s.start, method=method, target=target,
        url=url, version="2.0" if s.request is not None else None,
        request_fields=regular(s.request or []), request_body_size=s.req_body,
        request_body_preview=bytes(s.req_preview),
    )  # fmt: skip
