"""The console line, and how a log rule's detail raises it."""

from __future__ import annotations

from dataclasses import replace

from proxy.flow.record import (
    FlowRecord,
    Message,
    RequestInfo,
    ResponseInfo,
    RulesInfo,
    TunnelInfo,
)
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


def test_rule_effects_are_marked_without_verbose() -> None:
    """Issue 14 item 8: mocked/blocked/aborted/delayed responses are marked."""
    base = record(None)
    notes = [
        ("stub", ("respond 200",), "[mocked by stub]"),
        ("deny", ("block 403",), "[blocked by deny]"),
        ("boom", ("fault abort 503",), "[aborted by boom]"),
        ("slow", ("set_header x", "fault delay 300ms±0"), "[delayed by slow]"),
        ("cut", ("block close",), "[blocked by cut]"),
    ]
    for name, actions, mark in notes:
        rec = replace(base, rules=RulesInfo(((name, "r.yaml:1", actions),)))
        assert format_line(rec, colour=False, verbose=False).endswith(mark)
    edit_only = replace(base, rules=RulesInfo((("e", "r.yaml:1", ("set_header x",)),)))
    assert "[" not in format_line(edit_only, colour=False, verbose=False)


def test_tunnel_line_shows_bytes_each_way() -> None:
    request = RequestInfo(b"CONNECT", "a.test:443", Message((), 0, b""))
    rec = FlowRecord("1", "tunnel", "regular", 0.0, 1.0, ("127.0.0.1", 5), ("10.0.0.1", 443),
                     request, tunnel=TunnelInfo(517, 40960, "fin", "fin"))  # fmt: skip
    line = format_line(rec, colour=False, verbose=False)
    assert "CONNECT a.test:443 up 517b down 40.0k 1000ms [tunnel]" in line
    assert "--- -" not in line
