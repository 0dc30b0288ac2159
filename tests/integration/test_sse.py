"""Server-sent events through the proxy (issue 17 item 4).

An aiohttp upstream sends one event a second. Through the proxy, to an
HTTP/1.1 client (forward mode) and an HTTP/2 client (h2c prior knowledge
to a reverse listener), the first event arrives within a second of the
request (it is not held until the stream ends), every event has its
``sse_event`` record, and the response's record is written when the stream
ends, after them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.proxyproc import ProxyProcess, running_proxy
from tests.support.upstreams import Upstreams
from tests.support.wsservers import start_app, ws_app

COUNT = 3


@pytest.fixture(scope="module")
def sse_port(upstreams: Upstreams) -> Iterator[int]:
    runner, port = upstreams.call(start_app(ws_app()))
    yield port
    upstreams.call(runner.cleanup())


def read_events(stream: Iterator[bytes], start: float) -> list[tuple[float, bytes]]:
    """(seconds since ``start``, event) for each event as it arrives."""
    events: list[tuple[float, bytes]] = []
    buf = b""
    for chunk in stream:
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            events.append((time.monotonic() - start, event))
    return events


def check(p: ProxyProcess, events: list[tuple[float, bytes]], path: str) -> None:
    assert [e for _, e in events] == [
        f"id: {i}\nevent: tick\ndata: tick {i}".encode() for i in range(COUNT)
    ]
    assert events[0][0] < 1.0, events  # the first event is not held back
    assert events[-1][0] >= COUNT - 1 - 0.2  # the upstream's pace, one a second
    recs = p.records(COUNT + 1, timeout=10)
    flow = next(r for r in recs if r["kind"] == "http" and r["request"]["url"].endswith(path))
    mine: list[Any] = [
        r for r in recs if r["kind"] == "sse_event" and r["sse_event"]["flow"] == flow["id"]
    ]
    assert [(e["sse_event"]["id"], e["sse_event"]["event"]) for e in mine] == [
        (str(i), "tick") for i in range(COUNT)
    ]
    assert [e["sse_event"]["data"]["data"] for e in mine] == [f"tick {i}" for i in range(COUNT)]
    assert flow["response"]["body_size"] == sum(len(e) + 2 for _, e in events)
    assert recs.index(flow) > max(recs.index(e) for e in mine)  # written when the stream ended


def test_sse_http1_client_forward(sse_port: int, tmp_path: Path) -> None:
    path = f"/sse?count={COUNT}&every=1"
    with running_proxy(flow_log=tmp_path / "f.jsonl") as p:
        start = time.monotonic()
        with (
            httpx.Client(proxy=p.url, timeout=10) as c,
            c.stream("GET", f"http://127.0.0.1:{sse_port}{path}") as r,
        ):
            assert r.headers["content-type"] == "text/event-stream"
            events = read_events(r.iter_raw(), start)
        check(p, events, path)


def test_sse_http2_client_reverse(sse_port: int, tmp_path: Path) -> None:
    path = f"/sse?count={COUNT}&every=1&h2"
    mode = f"reverse:http://127.0.0.1:{sse_port}"
    with running_proxy("--mode", mode, flow_log=tmp_path / "f.jsonl") as p:
        start = time.monotonic()
        with (
            httpx.Client(http1=False, http2=True, timeout=10) as c,
            c.stream("GET", f"http://127.0.0.1:{p.port}{path}") as r,
        ):
            assert r.http_version == "HTTP/2"
            events = read_events(r.iter_raw(), start)
        check(p, events, path)


SSE_RULES = """
version: 1
sse:
  - name: tock
    match: {path: /sse, event: tick, text: {regex: 'tick 1$'}}
    replace: {regex: tick, with: TOCK}
  - name: no-two
    match: {text: {contains: tick 2}}
    drop: true
"""


def test_sse_rules_rewrite_and_drop_events(sse_port: int, tmp_path: Path) -> None:
    rules = tmp_path / "sse.yaml"
    rules.write_text(SSE_RULES)
    path = f"/sse?count={COUNT}&every=1&rules"
    with running_proxy("--rules", str(rules), flow_log=tmp_path / "f.jsonl") as p:
        start = time.monotonic()
        with (
            httpx.Client(proxy=p.url, timeout=10) as c,
            c.stream("GET", f"http://127.0.0.1:{sse_port}{path}") as r,
        ):
            events = read_events(r.iter_raw(), start)
        assert [e for _, e in events] == [
            b"id: 0\nevent: tick\ndata: tick 0",
            b"id: 1\nevent: tick\ndata: TOCK 1",
        ]
        assert events[0][0] < 1.0  # held only until the event's end
        recs = p.records(COUNT + 1, timeout=10)
        actions = [r["sse_event"]["action"] for r in recs if r["kind"] == "sse_event"]
        assert actions == [None, "replaced", "dropped"]
