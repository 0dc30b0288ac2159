"""TCP toxics as sans-IO transformers: instructions for given (time, data) inputs."""

from __future__ import annotations

import itertools
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.rules import (
    Close,
    Reset,
    Send,
    Shutdown,
    SourceText,
    Transformer,
    Wake,
    load_sources,
    tcp,
)
from proxy.rules.engine import RuleSet


def load(text: str, rng: Callable[[], float] = lambda: 0.5) -> RuleSet:
    return load_sources([SourceText(Path("/virtual/t.yaml"), textwrap.dedent(text))], rng=rng)


def toxic(yaml: str, direction: str = "upstream") -> Transformer:
    rs = load(f"version: 1\ntcp: [{{{yaml}}}]")
    plan = rs.tcp_for("db", 5432)
    return plan.upstream if direction == "upstream" else plan.downstream


def sent(instructions: list[tcp.Instruction]) -> bytes:
    return b"".join(i.data for i in instructions if isinstance(i, Send))


def test_no_rules_is_passthrough() -> None:
    plan = load("version: 1\n").tcp_for("db", 5432)
    assert plan.upstream.passthrough and plan.matched == ()
    assert plan.upstream.feed(1.0, b"x") == [Send(1.0, b"x")]
    assert plan.upstream.eof(2.0) == [Shutdown(2.0)]


def test_latency_keeps_order_with_jitter() -> None:
    rs = load(
        "version: 1\ntcp: [{latency: {ms: 100, jitter_ms: 50}}]", rng=iter([1.0, 0.0]).__next__
    )
    t = rs.tcp_for("db", 1).upstream
    assert timed(t.feed(0.0, b"a")) == [(0.15, b"a")]
    assert timed(t.feed(0.01, b"b")) == [(0.15, b"b")]  # 0.06 would overtake "a"
    assert timed(t.eof(0.02)) == [(0.15, b"")]


def timed(instructions: list[tcp.Instruction]) -> list[tuple[float, bytes]]:
    return [(round(i.at, 6), i.data if isinstance(i, Send) else b"") for i in instructions]


def test_bandwidth_paces_pieces() -> None:
    t = toxic("bandwidth: {bytes_per_second: 100}")
    out = t.feed(0.0, b"x" * 25)
    assert [(round(i.at, 3), len(i.data)) for i in out if isinstance(i, Send)] == [
        (0.0, 10),
        (0.1, 10),
        (0.2, 5),
    ]
    assert t.feed(0.0, b"y") == [Send(0.25, b"y")]


def test_slicer_splits_with_delays() -> None:
    t = toxic("slicer: {average_size: 4, size_variation: 0, delay_ms: 10}")
    out = t.feed(1.0, b"abcdefghij")
    assert [(round(i.at, 3), i.data) for i in out if isinstance(i, Send)] == [
        (1.0, b"abcd"),
        (1.01, b"efgh"),
        (1.02, b"ij"),
    ]


def test_limit_data_closes_after_n_bytes() -> None:
    t = toxic("limit_data: {bytes: 5}")
    assert t.feed(0.0, b"abc") == [Send(0.0, b"abc")]
    assert t.feed(1.0, b"defg") == [Send(1.0, b"de"), Close(1.0)]
    assert t.feed(2.0, b"more") == [] and t.done


def test_limit_data_zero_closes_at_start() -> None:
    assert toxic("limit_data: {bytes: 0}").start(3.0) == [Close(3.0)]


def test_reset_peer_and_timeout_and_slow_close() -> None:
    assert toxic("reset_peer: {timeout_ms: 500}").start(1.0) == [Reset(1.5)]
    t = toxic("timeout: {ms: 1000}")
    assert t.start(0.0) == [Close(1.0)] and t.feed(0.5, b"dropped") == []
    hang = toxic("timeout: {ms: 0}")
    assert hang.start(0.0) == [] and hang.feed(0.1, b"x") == [] and hang.eof(0.2) == []
    slow = toxic("slow_close: {delay_ms: 2000}")
    assert slow.feed(0.0, b"x") == [Send(0.0, b"x")] and slow.eof(1.0) == [Shutdown(3.0)]


def test_direction_and_percent() -> None:
    rs = load(
        """\
        version: 1
        tcp:
          - {name: down, match: {port: 9000, direction: downstream}, limit_data: {bytes: 1}}
          - {name: half, match: {host: '*.db', percent: 50}, latency: {ms: 10}}
          - {name: other, match: {host: cache, mode: reverse}, latency: {ms: 10}}
        """,
        rng=itertools.cycle([0.4, 0.6]).__next__,
    )
    plan = rs.tcp_for("x", 9000)
    assert (
        plan.matched == ("down",) and plan.upstream.passthrough and not plan.downstream.passthrough
    )
    assert rs.tcp_for("a.db", 1).matched == ("half",)
    assert rs.tcp_for("a.db", 1).matched == ()
    assert rs.tcp_for("cache", 1, mode="reverse").matched == ("other",)
    assert rs.tcp_for("cache", 1).matched == ()


def test_toxics_chain_in_pipeline_order() -> None:
    t = toxic(
        "replace: {literal: secret, with: XX, window: 8}, "
        "limit_data: {bytes: 6}, latency: {ms: 100}"
    )
    out = t.feed(0.0, b"a secret here and more data")
    assert out == [Send(0.1, b"a XX h"), Close(0.1)]


# -- replace ---------------------------------------------------------------


def test_replace_across_a_read_boundary() -> None:
    t = toxic("replace: {literal: FLUSHALL, with: PING, window: 16}")
    first = t.feed(0.0, b"*1\r\n$8\r\nFLUS")
    assert sent(first) == b""
    assert first[-1] == Wake(0.02)
    rest = t.feed(0.001, b"HALL\r\n" + b"." * 20) + t.eof(0.002)
    assert sent(rest) == b"*1\r\n$8\r\nPING\r\n" + b"." * 20
    assert rest[-1] == Shutdown(0.002)


def test_replace_flushes_held_bytes_on_tick() -> None:
    t = toxic("replace: {regex: 'ab+', with: X, window: 8, flush_ms: 10}")
    assert sent(t.feed(0.0, b"zab")) == b""
    assert t.tick(0.005) == []
    assert sent(t.tick(0.01)) == b"zX"
    assert (
        sent(t.feed(0.02, b"b" * 20)) == b"b" * 12
    )  # "ab" already flushed: b's alone do not match


def test_replace_lookbehind_sees_bytes_already_sent() -> None:
    t = toxic("replace: {regex: '(?<=user=)[a-z]+', with: '***', window: 8, flush_ms: 1}")
    out = t.feed(0.0, b"x" * 10 + b"user=")
    out += t.tick(1.0)
    out += t.feed(2.0, b"alice;" + b"." * 10)
    out += t.eof(3.0)
    assert sent(out) == b"x" * 10 + b"user=***;" + b"." * 10


def test_replace_with_groups_and_bytes() -> None:
    t = toxic(r"replace: {regex: 'id=(\d+)', with: 'id=<\1>', window: 32}")
    out = t.feed(0.0, b"id=12 id=345 ") + t.eof(0.1)
    assert sent(out) == b"id=<12> id=<345> "


@settings(max_examples=80, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from([b"a", b"b", b"token=", b"abc", b"0123456789abcdef", b";"]), max_size=30
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_replace_matches_whole_stream_result_for_any_split(
    parts: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(parts)
    regex = re.compile(rb"token=[0-9a-f]{4,16}")
    t = toxic("replace: {regex: 'token=[0-9a-f]{4,16}', with: 'token=X', window: 32}")
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    out: list[tcp.Instruction] = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        out += t.feed(float(i), data[a:b])
    out += t.eof(99.0)
    assert sent(out) == regex.sub(b"token=X", data)
