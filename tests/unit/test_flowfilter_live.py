"""Filters on flows held at a hook (``live_subject`` over the session's own
``Exchange``), and the ``--view-filter`` predicate in the console and flow-log
sinks."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest

from proxy.cli.view_filter import record_predicate
from proxy.flow.record import FlowRecord, Message, RequestInfo, ResponseInfo
from proxy.flowfilter import Kind, live_subject, parse
from proxy.http1.events import NO_BODY, Framing, FramingKind, RequestHead, ResponseHead
from proxy.session.exchange import Exchange
from proxy.sinks.console import ConsoleSink
from proxy.sinks.jsonl import JsonlSink

HEAD = RequestHead(
    b"POST",
    b"http://shop.test/cart",
    b"1.1",
    (
        (b"Host", b"shop.test"),
        (b"Content-Type", b"application/json"),
        (b"Content-Encoding", b"identity"),
    ),
    Framing(FramingKind.LENGTH, 11),
)


def test_at_the_request_point() -> None:
    ex = Exchange("f1", 0.0, HEAD)
    ex.url = "http://shop.test/cart"
    s = live_subject(ex)
    assert s.kind is Kind.HTTP1
    for text, want in {
        "~d shop & ~m POST & ~u /cart$": True,
        "~tq json & ~q & !~s": True,
        "~c 200": False,
        "~bq item": False,  # the body is not known while it streams
    }.items():
        assert parse(text).matches(s) is want, text
    ex.prepared_body = b'{"item": 7}'  # buffered whole for the hook
    assert parse("~bq '\"item\": 7'").matches(live_subject(ex))


def test_after_rules_the_forwarded_request_counts() -> None:
    ex = Exchange("f1", 0.0, HEAD)
    ex.forward = replace(HEAD, method=b"PUT", fields=((b"Host", b"other.test"), (b"X-Rule", b"1")))
    ex.url = "http://other.test/cart"
    s = live_subject(ex, marked=True)
    assert parse("~m PUT & ~d other & ~hq x-rule & ~marked").matches(s)
    assert not parse("~tq json").matches(s)


def test_at_the_response_head_point() -> None:
    ex = Exchange("f1", 0.0, HEAD)
    ex.url = "http://shop.test/cart"
    head = ResponseHead(b"2.0", 503, b"", ((b"content-type", b"text/event-stream"),), NO_BODY)
    ex.held_response = (head, None, True, False)
    s = live_subject(ex)
    assert s.kind is Kind.SSE
    assert parse("~c 503 & ~ts event-stream & ~s & !~q & ~sse & ~http").matches(s)
    assert not parse("~bs .").matches(s)


def test_upgrades_and_grpc_are_known_at_the_request() -> None:
    ws = replace(
        HEAD, method=b"GET", fields=((b"Upgrade", b"WebSocket"), (b"Connection", b"upgrade"))
    )
    ex = Exchange("f1", 0.0, ws)
    ex.url = "http://chat.test/ws"
    assert parse("~websocket").matches(live_subject(ex))
    grpc = replace(HEAD, version=b"2.0", fields=((b"content-type", b"application/grpc+proto"),))
    ex = Exchange("f2", 0.0, grpc)
    ex.url = "http://svc.test/demo.Echo/Unary"
    assert parse("~grpc & ~u Echo/Unary").matches(live_subject(ex))
    ex = Exchange("f3", 0.0, replace(HEAD, version=b"2.0"))
    ex.url = "http://h2.test/"
    assert live_subject(ex).kind is Kind.HTTP2


def record(url: str, status: int, kind: str = "http") -> FlowRecord:
    return FlowRecord(
        id=url,
        kind=kind,
        mode="regular",
        start=1795762093.5,
        end=1795762093.75,
        client=("127.0.0.1", 5000),
        server=("127.0.0.1", 80),
        request=RequestInfo(b"GET", url, Message((), 0, b"")),
        response=ResponseInfo(status, b"OK", Message((), 0, b"")),
    )


RECORDS = [
    record("http://a.test/keep", 200),
    record("http://a.test/drop", 404),
    FlowRecord(id="", kind="rules_error", mode="", start=1.0, end=1.0, client=("", 0), server=None),
]


def test_the_view_filter_keeps_matching_flows_and_non_flows() -> None:
    keep = record_predicate(parse("~c 200"))
    assert keep is not None
    assert [keep(r) for r in RECORDS] == [True, False, True]
    assert record_predicate(None) is None


def test_sinks_write_only_what_the_view_filter_keeps() -> None:
    only = record_predicate(parse("!~u drop"))
    log = JsonlSink("-", only=only)
    lines = [json.loads(line) for line in log.prepare(RECORDS)]
    assert [(x["kind"], x.get("request", {}).get("url")) for x in lines] == [
        ("http", "http://a.test/keep"),
        ("rules_error", None),
    ]
    console = ConsoleSink(io.StringIO(), only=only)
    text = b"".join(console.prepare(RECORDS)).decode()
    assert "/keep" in text and "/drop" not in text
    everything = b"".join(ConsoleSink(io.StringIO()).prepare(RECORDS)).decode()
    assert "/keep" in everything and "/drop" in everything


def test_the_view_filter_says_once_when_a_regex_runs_out_of_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    slow = [record("http://a.test/" + "x" * 40, 200), record("http://b.test/" + "x" * 40, 200)]
    keep = record_predicate(parse("~u '/(x|xx)+y'"))
    assert keep is not None
    assert [keep(r) for r in slow] == [False, False]
    err = capsys.readouterr().err
    assert err.count("ran out of time") == 1 and "flow http://a.test/" in err
