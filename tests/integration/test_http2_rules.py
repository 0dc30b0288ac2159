"""Rules, faults and trailers on HTTP/2 streams from clients (issue 15).

A reverse listener with rules in front of the aiohttp upstream (HTTP/1.1
only): a mock answers an h2 request with an h2 response, a delay holds the
stream, block and abort answer it, and ``fault: reset`` resets the stream
alone (RST_STREAM CANCEL) while another stream on the same connection
completes. Trailers of a chunked HTTP/1.1 response reach the h2 client as a
trailing HEADERS frame.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from h2.errors import ErrorCodes

from tests.support.h2clients import Route, assert_h2_record, records_for, tag
from tests.support.h2raw import RawH2
from tests.support.proxyproc import start_proxy
from tests.support.upstreams import RawConnection, Upstreams, pattern_chunks, pattern_sha256


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- rules on HTTP/2 streams --------------------------------------------------------------------

RULES = """\
version: 1
rules:
  - name: mock-h2
    match: {path: /mock}
    respond:
      status: 201
      body: "mocked over h2\\n"
      headers: {content-type: text/plain, x-mock: "yes"}
  - name: slow-h2
    match: {path: {prefix: /bytes/}, query: {slow: "1"}}
    fault: {phase: request, delay: {ms: 700}}
  - name: block-h2
    match: {path: /blocked}
    block: {status: 403, body: "blocked by tapproxy\\n"}
  - name: block-close-h2
    match: {path: /dropped}
    block: {close: true}
  - name: abort-h2
    match: {path: /aborted}
    fault: {abort: {status: 503}}
  - name: reset-h2
    match: {path: /reset}
    fault: {reset: true}
"""


@pytest.fixture(scope="module")
def ruled(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Route]:
    d = tmp_path_factory.mktemp("h2rules")
    (d / "rules.yaml").write_text(RULES)
    p = start_proxy(
        "--mode", "reverse:" + upstreams.url, "--rules", str(d / "rules.yaml"),
        flow_log=d / "flows.jsonl",
    )  # fmt: skip
    yield Route("ruled", p, p.url, ("--http2-prior-knowledge",), p.url)
    p.stop()


def matched(rec: dict[str, object]) -> list[str]:
    rules = rec["rules"]
    assert isinstance(rules, dict)
    return [m["rule"] for m in rules["matched"]]


def test_mock_rule_answers_h2_with_h2(ruled: Route, tmp_path: Path) -> None:
    marker = tag()
    heads = tmp_path / "heads"
    res = ruled.curl(f"/mock?{marker}", tmp_path / "body", "-D", str(heads))
    assert (res.returncode, res.stdout) == (0, "2 201"), res.stderr
    assert (tmp_path / "body").read_bytes() == b"mocked over h2\n"
    assert heads.read_text().startswith("HTTP/2 201") and "x-mock: yes" in heads.read_text()
    [rec] = records_for(ruled.proxy, marker)
    assert_h2_record(rec, 201)
    assert rec["response"]["source"] == "proxy" and rec["server"] is None
    assert matched(rec) == ["mock-h2"]


def test_delay_rule_delays_an_h2_stream(ruled: Route, tmp_path: Path) -> None:
    marker = tag()
    started = time.monotonic()
    res = ruled.curl(f"/bytes/10?slow=1&{marker}", tmp_path / "body")
    took = time.monotonic() - started
    assert (res.returncode, res.stdout) == (0, "2 200"), res.stderr
    assert sha(tmp_path / "body") == pattern_sha256(10)
    assert took >= 0.7, took
    [rec] = records_for(ruled.proxy, marker)
    assert_h2_record(rec)
    assert matched(rec) == ["slow-h2"]


@pytest.mark.parametrize(
    ("path", "status", "body", "rule"),
    [
        ("/blocked", 403, b"blocked by tapproxy\n", "block-h2"),
        ("/aborted", 503, b"fault injected by rule: 503", "abort-h2"),
    ],
)
def test_block_and_abort_answer_the_stream(
    ruled: Route, tmp_path: Path, path: str, status: int, body: bytes, rule: str
) -> None:
    marker = tag()
    res = ruled.curl(f"{path}?{marker}", tmp_path / "body")
    assert (res.returncode, res.stdout) == (0, f"2 {status}"), res.stderr
    assert (tmp_path / "body").read_bytes().startswith(body)
    [rec] = records_for(ruled.proxy, marker)
    assert_h2_record(rec, status)
    assert matched(rec) == [rule]


def _get(path: str) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a.test"),
            (b":path", path.encode())]  # fmt: skip


def test_reset_rule_resets_the_stream_only(ruled: Route, tmp_path: Path) -> None:
    """``fault: {reset: true}`` on HTTP/2: RST_STREAM (CANCEL) on that stream; a stream
    in flight beside it on the same connection completes."""
    marker = tag()
    res = ruled.curl(f"/reset?{marker}", tmp_path / "body")
    assert res.returncode == 92 and "CANCEL" in res.stderr, (res.returncode, res.stderr)
    [rec] = records_for(ruled.proxy, marker)
    assert rec["request"]["http_version"] == "HTTP/2.0"
    assert rec["error"] == "rule reset-h2: reset" and matched(rec) == ["reset-h2"]
    with RawH2(ruled.proxy.port) as c:
        beside = c.request(_get("/bytes/1000?slow=1"))
        reset = c.wait(c.request(_get("/reset")))
        other = c.wait(beside)
    assert reset.reset == ErrorCodes.CANCEL and reset.goaway is None, reset
    assert (other.status, other.body) == (200, next(pattern_chunks(1000))), other


def test_block_close_ends_the_stream_only(ruled: Route) -> None:
    with RawH2(ruled.proxy.port) as c:
        beside = c.request(_get("/bytes/1000?slow=1"))
        dropped = c.wait(c.request(_get("/dropped")))
        other = c.wait(beside)
    assert dropped.reset is not None and not dropped.closed, dropped
    assert (other.status, other.body) == (200, next(pattern_chunks(1000))), other


# -- trailers ------------------------------------------------------------------------------------

CHUNKED_WITH_TRAILERS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: x-checksum\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc123\r\nGrpc-Status: 0\r\n\r\n"
)


@pytest.fixture(scope="module")
def trailing(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Route]:
    """A reverse listener in front of an upstream whose chunked answers carry trailers
    (aiohttp has no API to send response trailers, so this upstream is raw bytes)."""

    async def answer(conn: RawConnection) -> None:
        while True:
            await conn.read_until(b"\r\n\r\n", timeout=10)
            if not conn.received.endswith(b"\r\n\r\n"):
                return
            conn.received.clear()
            conn.send(CHUNKED_WITH_TRAILERS)

    raw = upstreams.raw(answer)
    d = tmp_path_factory.mktemp("h2trailers")
    p = start_proxy("--mode", f"reverse:http://127.0.0.1:{raw.port}", flow_log=d / "f.jsonl")
    yield Route("trailing", p, p.url, ("--http2-prior-knowledge",), p.url)
    p.stop()


def test_trailers_reach_the_h2_client(trailing: Route) -> None:
    with RawH2(trailing.proxy.port) as c:
        r = c.wait(c.request(_get("/t")))
    assert (r.status, r.body, r.ended) == (200, b"hello world", True), r
    assert r.trailers == [(b"x-checksum", b"abc123"), (b"grpc-status", b"0")], r.trailers
    assert all(not name.startswith(b":") for name, _ in r.trailers)
    marker = tag()
    res = trailing.nghttp(f"/t?{marker}", "-v")
    assert res.returncode == 0, res.stderr
    text = res.stdout.decode()
    trailer = re.search(r"recv \(stream_id=\d+\) x-checksum: abc123\n.*?END_STREAM", text, re.S)
    assert trailer, text
    assert_h2_record(records_for(trailing.proxy, marker)[0])
