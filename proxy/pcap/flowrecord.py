"""Captured exchanges as the live proxy's flow records (one schema for both).

``tapproxy analyze`` emits exactly the JSON the proxy's ``--flow-log`` does
(``proxy.flow.record``), so every consumer (HAR conversion, a SIEM, a test)
reads both the same way. ``mode`` is ``"capture"``. Optional ``--rules``
tag flows with the match rules that hold, as the live proxy records them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from proxy.flow.grpcinfo import MESSAGE_KIND
from proxy.flow.record import (
    FlowRecord,
    Message,
    ResponseInfo,
    RulesInfo,
    Timings,
    TlsInfo,
    TlsSide,
    TunnelInfo,
)
from proxy.flow.record import (
    RequestInfo as RecordRequest,
)
from proxy.pcap.records import CapturedExchange, Pairs

if TYPE_CHECKING:  # the rules engine (and the session config that imports it) only with rules
    from proxy.rules import RuleSet

MODE = "capture"


def _fields(pairs: Pairs) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs)


def to_flow_record(r: CapturedExchange, rules: RuleSet | None = None) -> FlowRecord:
    client, server = (r.client.ip, r.client.port), (r.server.ip, r.server.port)
    error = "; ".join(r.errors) or None
    if r.kind != "http":
        tunnel = TunnelInfo(
            r.bytes_client_to_server, r.bytes_server_to_client, r.close or "", r.close or ""
        )
        tls = _tls(r) if r.kind == "tls" else None
        kind = "tunnel" if r.kind == "tls" else "tcp"
        return FlowRecord(
            r.id, kind, MODE, r.start, r.end, client, server, tunnel=tunnel, error=error, tls=tls
        )
    request = response = None
    if r.method is not None:
        version = (r.version or "1.1").encode()
        message = Message(
            _fields(r.request_fields), r.request_body_size, r.request_body_preview, version
        )
        request = RecordRequest(r.method.encode("latin-1"), r.url or r.target or "", message)
    if r.status is not None:
        version = (r.response_version or "1.1").encode()
        message = Message(
            _fields(r.response_fields), r.response_body_size, r.response_body_preview, version
        )
        response = ResponseInfo(r.status, (r.reason or "").encode("latin-1"), message)
    timings = Timings(
        request_head=r.start, response_head=r.response_start, response_done=r.response_end
    )
    return FlowRecord(
        r.id, "http", MODE, r.start, r.end, client, server, request=request, response=response,
        timings=timings, error=error, rules=_tag(r, rules) if rules is not None else None,
        tls=_tls(r) if r.tls is not None else None, grpc=r.grpc.call if r.grpc else None,
    )  # fmt: skip


def _tls(r: CapturedExchange) -> TlsInfo:
    """One TLS session seen passively: the same facts on both sides.

    ``keylog`` is true when a key log decrypted it; ``intercepted`` stays
    false (nothing was terminated, the plaintext came from the key log).
    """
    t = r.tls
    if t is None:
        return TlsInfo(False, client=TlsSide(sni=r.sni, offered_alpn=r.alpn))
    client = TlsSide(t.version, t.cipher, t.alpn, r.sni, r.alpn)
    server = TlsSide(
        t.version, t.cipher, t.alpn, r.sni, cert_subject=t.cert_subject, cert_issuer=t.cert_issuer
    )
    return TlsInfo(False, client=client, server=server, keylog=t.decrypted)


def _tag(r: CapturedExchange, rules: RuleSet) -> RulesInfo | None:
    """Which rules match this exchange (request and response phase; no actions run)."""
    from proxy.rules import RequestInfo  # only with --rules: ~0.3 s of imports otherwise
    from proxy.session.target import DEFAULT_PORTS

    if r.method is None:
        return None
    fields = _fields(r.request_fields)
    target = urlsplit(r.url or r.target or "/")
    scheme = target.scheme or "http"
    port = target.port or DEFAULT_PORTS.get(scheme, r.server.port)
    info = RequestInfo(
        scheme, target.hostname or r.server.ip, port, r.method, target.path or "/",
        target.query, fields, r.client.ip, MODE,
    )  # fmt: skip
    plan = rules.on_request(info)
    if plan.pending:
        plan = rules.complete_request(plan, r.request_body_preview or b"")
    hits = plan.hits
    tags = plan.log.tags
    if r.status is not None:
        rplan = rules.on_response(plan, r.status, _fields(r.response_fields))
        if rplan.pending:
            rplan = rules.complete_response(rplan, r.response_body_preview or b"")
        hits += tuple(h for h in rplan.hits if h not in hits)
        tags += tuple(t for t in rplan.log.tags if t not in tags)
    if not hits:
        return None
    return RulesInfo(tuple((h.rule, h.source, h.actions) for h in hits), (), tags, None)


def message_records(r: CapturedExchange) -> list[FlowRecord]:
    """The gRPC messages of an exchange, each its own record (before the call's)."""
    if r.grpc is None:
        return []
    client, server = (r.client.ip, r.client.port), (r.server.ip, r.server.port)
    return [
        FlowRecord(
            f"{r.id}:{m.direction}:{m.index}",
            MESSAGE_KIND,
            MODE,
            m.at,
            m.at,
            client,
            server,
            grpc=m,
        )
        for m in r.grpc.messages
    ]
