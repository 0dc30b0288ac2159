"""The filter language evaluated on real records: the proxy's own record
types, their flow-log JSON (``json_subject``) and the records themselves
(``record_subject``) must give the same answers; bodies decoded and capped."""

from __future__ import annotations

import functools
import gzip
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import brotli  # type: ignore[import-untyped]
import pytest
import zstandard

from proxy.flow.grpcinfo import GrpcCall, GrpcMessage, GrpcStatusInfo
from proxy.flow.jsonview import record_to_json
from proxy.flow.record import (
    CapturedBodies,
    FlowRecord,
    Message,
    RequestInfo,
    ResponseInfo,
    TunnelInfo,
)
from proxy.flow.wsinfo import SseEvent, WsInfo, WsMessage
from proxy.flowfilter import Kind, json_subject, parse, record_subject
from proxy.flowfilter.bodies import SCAN_LIMIT
from proxy.flowfilter.subject import Subject
from proxy.sinks.jsonenc import dumps

Fields = tuple[tuple[bytes, bytes], ...]
REQUEST_HEADERS: Fields = (
    (b"Host", b"api.example.com"),
    (b"User-Agent", b"curl/8.5.0"),
    (b"Content-Type", b"application/json"),
)
RESPONSE_HEADERS: Fields = ((b"Content-Type", b"text/html; charset=utf-8"), (b"Server", b"nginx"))


def http_record(
    *,
    method: bytes = b"POST",
    url: str = "https://api.example.com/v1/items?q=1",
    status: int | None = 200,
    request_headers: Fields = REQUEST_HEADERS,
    response_headers: Fields = RESPONSE_HEADERS,
    request_body: bytes = b'{"name": "widget"}',
    response_body: bytes = b"<h1>Hello</h1>",
    version: bytes = b"1.1",
    error: str | None = None,
    kind: str = "http",
    **extra: Any,
) -> FlowRecord:
    """An exchange whose whole bodies are kept (as with --capture-bodies)."""
    request = RequestInfo(
        method, url, Message(request_headers, len(request_body), request_body[:16], version)
    )
    response = None
    if status is not None:
        response = ResponseInfo(
            status,
            b"OK",
            Message(response_headers, len(response_body), response_body[:16], version),
        )
    return FlowRecord(
        id="f1",
        kind=kind,
        mode="regular",
        start=1795762093.5,
        end=1795762093.75,
        client=("127.0.0.1", 50000),
        server=("10.0.0.7", 443),
        request=request,
        response=response,
        error=error,
        bodies=CapturedBodies("", request_body, response_body),
        **extra,
    )


def via_json(r: FlowRecord, marked: bool = False) -> Subject:
    """As the web store does: the flow-log JSON, bodies from a store beside it."""
    bodies = r.bodies
    store = {"request": bodies.request, "response": bodies.response} if bodies else {}
    record = json.loads(dumps(record_to_json(r)))
    return json_subject(record, store.get, marked)


def via_record(r: FlowRecord, marked: bool = False) -> Subject:
    return record_subject(r, marked)


ADAPTERS = pytest.mark.parametrize("subject", [via_json, via_record], ids=["json", "record"])
Adapter = Callable[..., Subject]


def check(subject: Subject, expected: dict[str, bool]) -> None:
    got = {text: parse(text).matches(subject) for text in expected}
    assert got == expected


@ADAPTERS
def test_request_and_response_parts(subject: Adapter) -> None:
    s = subject(http_record())
    check(
        s,
        {
            "~u /v1/items": True,
            "~u ^https://API\\.example": True,  # case-insensitive
            "v1/item": True,  # a bare word is ~u
            "items?q=1": False,  # a regex: "s?" is an optional s
            "'items\\?q=1'": True,
            "~u /v2/": False,
            "~d example.com": True,
            "~d ^example.com$": False,  # a regex on the host: subdomains match unanchored
            "~m post": True,
            "~m ^GET$": False,
            "~c 200": True,
            "~c 404": False,
            "~h '^server: nginx$'": True,  # "Name: value" lines, either side
            "~hq server": False,
            "~hs server": True,
            "~hq '^user-agent: curl/'": True,
            "~h 'host: api' & ~hs nginx": True,
            "~t json": True,
            "~tq html": False,
            "~ts html": True,
            "~t ^text/html": True,
            "~src ^127.0.0.1:50000$": True,
            "~dst :443$": True,
            "~http": True,
            "~tcp | ~websocket | ~grpc | ~sse | ~tunnel": False,
            "~e": False,
            "~s": True,
            "~q": False,
            "~a": False,
            "~all": True,
            "~marked": False,
            "!~marked & ~c 200": True,
        },
    )
    assert s.kind is Kind.HTTP1


@ADAPTERS
def test_bodies(subject: Adapter) -> None:
    s = subject(http_record())
    check(
        s,
        {
            "~b widget": True,
            "~bq widget": True,
            "~bs widget": False,
            "~bs '<H1>hello'": True,
            '~bq \'"name":\\s*"w\'': True,
            "~b absent": False,
        },
    )


ENCODINGS: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("gzip", gzip.compress),
    ("x-gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send
    ("br", brotli.compress),
    ("zstd", lambda b: zstandard.ZstdCompressor().compress(b)),
    ("gzip, br", lambda b: brotli.compress(gzip.compress(b))),
    ("identity", lambda b: b),
]


@ADAPTERS
@pytest.mark.parametrize(("coding", "encode"), ENCODINGS, ids=[c for c, _ in ENCODINGS])
def test_bodies_are_decoded(
    subject: Adapter, coding: str, encode: Callable[[bytes], bytes]
) -> None:
    body = b"x" * 5000 + b"the needle is here" + bytes(range(256))
    headers = (*RESPONSE_HEADERS, (b"Content-Encoding", coding.encode()))
    s = subject(http_record(response_headers=headers, response_body=encode(body)))
    assert parse("~bs 'needle is here'").matches(s)
    assert parse("~b needle").matches(s)
    assert not parse("~bq needle").matches(s)


@ADAPTERS
def test_an_undecodable_body_is_scanned_as_it_is(subject: Adapter) -> None:
    headers = (*RESPONSE_HEADERS, (b"Content-Encoding", b"gzip"))
    s = subject(http_record(response_headers=headers, response_body=b"not gzip at all"))
    assert parse("~bs 'gzip at'").matches(s)
    weird = (*RESPONSE_HEADERS, (b"Content-Encoding", b"compress"))
    assert parse("~bs gzip").matches(
        subject(http_record(response_headers=weird, response_body=b"gzip"))
    )


@functools.cache
def gzip_bomb() -> bytes:
    """64 MiB of zeros in 64 KiB of gzip."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    return b"".join(z.compress(zeros) for _ in range(64)) + z.flush()


@ADAPTERS
def test_only_the_first_mib_of_a_body_is_scanned(subject: Adapter) -> None:
    body = b"a" * (SCAN_LIMIT - 10) + b"early" + b"b" * 100 + b"late"
    s = subject(http_record(response_body=body))
    assert parse("~bs early").matches(s)
    assert not parse("~bs late").matches(s)
    # A compression bomb stops expanding at the limit.
    headers = (*RESPONSE_HEADERS, (b"Content-Encoding", b"gzip"))
    s = subject(http_record(response_headers=headers, response_body=gzip_bomb()))
    assert not parse("~bs x").matches(s)
    assert parse("~bs '^\\x00+$'").matches(s)


def test_bytes_bodies_and_non_ascii_regexes() -> None:
    s = via_record(http_record(response_body=b"\xff\xfe caf\xc3\xa9 \x00\x01"))
    assert parse("~bs caf\u00e9").matches(s)  # the regex goes to UTF-8 bytes
    assert parse("~bs '\\xff\\xfe'").matches(s)
    assert parse("~bs 'caf.. \\x00'").matches(s)
    latin = via_json(http_record(response_headers=((b"X-Name", b"caf\xe9"),)))
    assert parse("~hs 'caf\\xe9'").matches(latin)  # header bytes as the wire had them


def test_json_subject_reads_bodies_only_when_asked() -> None:
    record = json.loads(dumps(record_to_json(http_record())))
    calls: list[str] = []

    def body(side: str) -> bytes | None:
        calls.append(side)
        return b"stored " + side.encode()

    s = json_subject(record, body)
    assert parse("~u items & ~c 200 & ~h nginx").matches(s)
    assert calls == []
    assert not parse("~c 404 & ~b stored").matches(s)  # & stops at the first false
    assert calls == []
    assert parse("~bs 'stored response' & ~b 'stored request'").matches(s)
    assert calls == ["response", "request"]  # each side read once per evaluation


def test_json_subject_falls_back_to_the_preview() -> None:
    record = json.loads(dumps(record_to_json(http_record(response_body=b"\xff\x01preview"))))
    assert record["response"]["body_preview"]["encoding"] == "base64"
    s = json_subject(record, lambda side: None)
    assert parse("~bs preview").matches(s)
    assert parse("~bq widget").matches(s)
    assert not parse("~bs absent").matches(s)


def test_record_subject_uses_the_preview_without_captured_bodies() -> None:
    r = http_record(response_body=b"0123456789abcdef-after-the-preview")
    bare = replace(r, bodies=None)
    assert parse("~bs 9abc").matches(record_subject(bare))
    assert not parse("~bs after").matches(record_subject(bare))
    assert parse("~bs after").matches(record_subject(r))


@ADAPTERS
def test_marked_error_and_no_response(subject: Adapter) -> None:
    s = subject(http_record(status=None, error="upstream 10.0.0.7:443: connection refused"), True)
    check(
        s, {"~e": True, "~marked": True, "~q": True, "~s": False, "~c 200": False, "~hs .": False}
    )
    check(subject(http_record()), {"~e": False, "~marked": False})


@ADAPTERS
def test_protocol_kinds(subject: Adapter) -> None:
    h2 = subject(http_record(version=b"2.0"))
    assert h2.kind is Kind.HTTP2 and parse("~http & !~grpc").matches(h2)
    status = GrpcStatusInfo(0, "OK", None, None, "trailers")
    call = GrpcCall(
        "grpc", "demo.Echo", "Unary", "unary", "counts", 1, 1, None, None, status, False
    )
    grpc = subject(http_record(version=b"2.0", grpc=call))
    assert grpc.kind is Kind.GRPC and parse("~grpc & ~http").matches(grpc)
    sse_headers = ((b"Content-Type", b"text/event-stream"),)
    sse = subject(http_record(method=b"GET", response_headers=sse_headers))
    assert sse.kind is Kind.SSE and parse("~sse & ~http").matches(sse)
    assets = ((b"Content-Type", b"image/png"),)
    assert parse("~a").matches(subject(http_record(response_headers=assets)))
    assert parse("~a").matches(
        subject(http_record(response_headers=((b"content-type", b"text/css"),)))
    )


@ADAPTERS
def test_websocket_connection(subject: Adapter) -> None:
    info = WsInfo("", False, 2, 2, None, None, "client", error="client: unmasked frame")
    r = http_record(
        method=b"GET",
        url="http://chat.test/ws",
        status=101,
        kind="websocket",
        request_headers=((b"Host", b"chat.test"), (b"Upgrade", b"websocket")),
        tunnel=TunnelInfo(10, 20, "fin", "fin", info),
    )
    s = subject(r)
    check(s, {"~websocket": True, "~http": True, "~tcp": False, "~c 101": True, "~e": True})


@ADAPTERS
def test_tcp_relay_and_tunnel(subject: Adapter) -> None:
    tcp = FlowRecord(
        id="t1",
        kind="tcp",
        mode="tcp:db.test:5432",
        start=1.0,
        end=2.0,
        client=("127.0.0.1", 5000),
        server=("10.1.1.1", 5432),
        tunnel=TunnelInfo(1, 2, "fin", "fin"),
    )
    check(
        subject(tcp),
        {
            "~tcp": True,
            "~http": False,
            "~tunnel": False,
            "~d ^10.1.1.1$": True,
            "~u .": False,
            "~m .": False,
            "~q": False,
            "~s": False,
            "~dst :5432": True,
        },
    )
    tunnel = FlowRecord(
        id="t2",
        kind="tunnel",
        mode="regular",
        start=1.0,
        end=2.0,
        client=("127.0.0.1", 5001),
        server=("10.1.1.2", 443),
        request=RequestInfo(
            b"CONNECT", "secure.test:443", Message(((b"Host", b"secure.test:443"),), 0, b"")
        ),
        tunnel=TunnelInfo(517, 4021, "fin", "fin"),
    )
    check(
        subject(tunnel),
        {
            "~tcp": True,
            "~tunnel": True,
            "~http": False,
            "~d ^secure.test$": True,
            "~m CONNECT": True,
        },
    )


def message_record(kind: str, **fields: Any) -> FlowRecord:
    return FlowRecord(
        id="m", kind=kind, mode="regular", start=1.0, end=1.0, client=("", 0), server=None, **fields
    )


@ADAPTERS
def test_message_records_are_subjects_of_their_own(subject: Adapter) -> None:
    ws = WsMessage("f1", "upstream", 0, "text", 8, 14, 1, False, b"hi there", False)
    check(
        subject(message_record("websocket_message", message=ws)),
        {"~websocket": True, "~bq there": True, "~bs there": False, "~u .": False, "~d .": False},
    )
    down = WsMessage("f1", "downstream", 0, "binary", 3, 5, 1, False, b"\x00\x01z", False)
    check(
        subject(message_record("websocket_message", message=down)), {"~bs z": True, "~bq z": False}
    )
    g = GrpcMessage(
        "f2", "response", 0, "demo.Echo", "Unary", 5, False, None, False, b"\x0a\x03abc", 5
    )
    check(
        subject(message_record("grpc_message", grpc=g)),
        {"~grpc": True, "~bs abc": True, "~websocket": False},
    )
    ev = SseEvent("f3", 0, None, "message", b"tick 42", 7)
    check(subject(message_record("sse_event", message=ev)), {"~sse": True, "~bs 'tick 4'": True})


@pytest.mark.parametrize("text", ["~bs '(x|xx)+y'", "!~bs '(x|xx)+y'", "~u '/(x|xx)+y'"])
def test_a_pathological_regex_runs_out_of_time(text: str) -> None:
    """``(x|xx)+y`` backtracks exponentially (Fibonacci(40) paths over 40
    characters): the evaluation stops at its budget and does not match."""
    x = "x" * 40
    s = via_record(http_record(url=f"http://a.test/{x}", response_body=x.encode()))
    f = parse(text)
    started = time.monotonic()
    assert f.matches(s, budget=0.05) is False
    assert time.monotonic() - started < 2.0
    assert f.timeouts == 1
    assert parse("~bs '(?>x|xx)+y' | ~u '^http://a'").matches(s)  # an atomic group is fine


def test_the_budget_is_shared_by_one_evaluation() -> None:
    s = via_record(http_record(response_body=b"x" * 40))
    f = parse("~c 200 & ~bs '(x|xx)+y' | ~c 200")  # the second test never runs
    assert f.matches(s, budget=0.05) is False and f.timeouts == 1
    assert parse("~c 200").matches(s, budget=0.0) is True  # no regex, no clock


def test_short_texts_have_the_budget_too() -> None:
    """Eight alternatives over a 12-character method: 8**12 paths."""
    s = via_record(http_record(method=b"x" * 12))
    f = parse("~m '(x|x|x|x|x|x|x|x)+y'")
    assert f.matches(s, budget=0.05) is False and f.timeouts == 1
