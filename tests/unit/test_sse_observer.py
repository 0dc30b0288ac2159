"""The event-stream reading of ``proxy.session.sse`` (WHATWG HTML §9.2.6)."""

from __future__ import annotations

from proxy.session.sse import SseObserver, is_event_stream


def events(data: bytes, step: int = 1, preview: int = 256) -> list[tuple[object, ...]]:
    """Fed in pieces of ``step`` bytes: the result must not depend on where reads end."""
    o = SseObserver("f", "regular", preview)
    for i in range(0, len(data), step):
        o.feed(data[i : i + step], 1.0)
    return [(e.index, e.id, e.event, e.data, e.size, e.retry) for e in o.events]


STREAM = (
    b": a comment\r\n"
    b"id: 7\r\nevent: tick\r\ndata: one\r\ndata:two\r\n\r\n"  # CRLF, no space after ':'
    b"data: three\r\rretry: 500\ndata\n\n"  # CR alone ends a line; 'data' with no colon
    b"event: ignored\n\n"  # no data: not dispatched
    b"data: cut at the end"  # no blank line: never dispatched
)


def test_fields_lines_and_dispatch_in_any_pieces() -> None:
    expected = [
        (0, "7", "tick", b"one\ntwo", 7, None),
        (1, "7", "message", b"three", 5, None),
        (2, "7", "message", b"", 0, 500),
    ]
    for step in (1, 2, 3, 7, len(STREAM)):
        assert events(STREAM, step) == expected, step


def test_long_data_keeps_only_the_preview_but_counts_it_all() -> None:
    data = b"data: " + b"x" * 100_000 + b"\ndata: y\n\n"
    [(_, _, _, kept, size, _)] = events(data, 4096, preview=10)
    assert kept == b"x" * 10 and size == 100_000 + 1 + 1


def test_content_type() -> None:
    assert is_event_stream(((b"Content-Type", b"text/event-stream; charset=utf-8"),))
    assert not is_event_stream(((b"content-type", b"text/plain"),))


def edited(data: bytes, rules: str, step: int, limit: int = 1000) -> tuple[bytes, list[object]]:
    from pathlib import Path

    from proxy.rules import SourceText, load_sources

    ruleset = load_sources([SourceText(Path("/t/s.yaml"), "version: 1\nsse:\n" + rules)])
    plan = ruleset.sse_for("h", "/")
    assert plan is not None
    o = SseObserver("f", "regular", 256)
    o.edit(plan, limit)
    out = b""
    for i in range(0, len(data), step):
        o.feed(data[i : i + step], 1.0)
        out += o.take()
    return out + o.rest(), [e.action for e in o.events]


RULES = """\
  - match: {event: tick, text: {contains: secret}}
    replace: {regex: 'secret-\\d+', with: 'secret-X'}
  - match: {json: {/noise: true}}
    drop: true
"""


def test_event_rules_rewrite_and_drop_in_any_pieces() -> None:
    data = (
        b"id: 1\r\nevent: tick\r\ndata: my secret-42\r\n\r\n"
        b': keep me\ndata: {"noise":true}\n\n'
        b"event: tick\ndata: plain\n\n"
        b"data: unfinished"
    )
    for step in (1, 5, len(data)):
        out, actions = edited(data, RULES, step)
        assert out == (
            b"id: 1\nevent: tick\ndata: my secret-X\n\nevent: tick\ndata: plain\n\ndata: unfinished"
        ), step
        assert actions == ["replaced", "dropped", None]


def test_an_event_over_the_limit_passes_unseen() -> None:
    data = b"event: tick\ndata: secret-1 " + b"x" * 2000 + b"\n\nevent: tick\ndata: secret-2\n\n"
    out, actions = edited(data, RULES, 100, limit=500)
    assert out == data.replace(b"secret-2", b"secret-X")
    assert actions == [None, "replaced"]
