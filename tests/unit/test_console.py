"""The console line, and how a log rule's detail raises it."""

from __future__ import annotations

from proxy.flow.record import FlowRecord, Message, RequestInfo, ResponseInfo, RulesInfo
from proxy.sinks.console import format_line


def record(detail: str | None) -> FlowRecord:
    request = RequestInfo(b"POST", "http://a.test/x", Message(((b"X-Req", b"1"),), 4, b"ping"))
    response = ResponseInfo(200, b"OK", Message(((b"X-Resp", b"2"),), 4, b"pong"))
    rules = RulesInfo((("watch", "r.yaml:3", ("log",)),), (), ("t",), detail)
    return FlowRecord("1", "http", "regular", 0.0, 0.1, ("127.0.0.1", 5), None, request,
                      response, rules=rules)  # fmt: skip


def test_plain_line() -> None:
    line = format_line(record(None), colour=False, verbose=False)
    assert "POST http://a.test/x 200 4b" in line and "X-Req" not in line


def test_detail_headers_and_full() -> None:
    headers = format_line(record("headers"), colour=False, verbose=False)
    assert "> X-Req: 1" in headers and "< X-Resp: 2" in headers and "body" not in headers
    full = format_line(record("full"), colour=False, verbose=False)
    assert "> body (4 bytes): 'ping'" in full and "< body (4 bytes): 'pong'" in full
    assert "rule watch (r.yaml:3): log" in full
