"""HTTP/2 to HTTP/1.1 desync hazards (issue 15; docs/hazards.md), through a live proxy.

A raw HTTP/2 client (``tests.support.h2raw``: the ``h2`` library with its
outbound validation off) sends each malformed header block to a reverse
listener in front of an HTTP/1.1 backend that records every byte it
receives (``tests.support.h1backend``). Each case checks three things:

* the client: the stream is refused (a 400 on it, an RST_STREAM, or the
  GOAWAY h2 sends for what it treats as a connection error);
* the upstream: nothing at all reached it; only for a ``content-length``
  that disagrees with the DATA may part of one body have gone, and then
  never a second request, and the proxy closed that connection;
* the flow log: a record of the refusal that names the reason.

After each case a control request on a new connection is answered and is
the only thing the backend received besides what the case allows: it
proves the listener still serves and bounds the wait for "nothing".
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.h1backend import H1Backend, Upstream
from tests.support.h2raw import RawH2, StreamResult
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import Upstreams

Header = tuple[bytes, bytes]
_controls = itertools.count()


@pytest.fixture(scope="module")
def backend(upstreams: Upstreams) -> H1Backend:
    return H1Backend(upstreams)


@pytest.fixture(scope="module")
def rproxy(backend: H1Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    log = tmp_path_factory.mktemp("h2hazards") / "flows.jsonl"
    p = start_proxy("--mode", "reverse:http://" + backend.auth.decode(), flow_log=log)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def fproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """A forward listener: the upstream is the one ``:authority`` names."""
    p = start_proxy(flow_log=tmp_path_factory.mktemp("h2hazards-fwd") / "flows.jsonl")
    yield p
    p.stop()


def block(
    method: bytes = b"GET", path: bytes = b"/x", authority: bytes = b"example.test"
) -> list[Header]:
    return [
        (b":method", method),
        (b":scheme", b"http"),
        (b":authority", authority),
        (b":path", path),
    ]


def control(p: ProxyProcess, backend: H1Backend, authority: bytes = b"example.test") -> bytes:
    """A good request on a new connection; its path, once the backend answered it."""
    path = b"/control-%d" % next(_controls)
    with RawH2(p.port) as c:
        r = c.wait(c.request(block(path=path, authority=authority)))
    assert (r.status, r.body) == (200, b"ok"), r
    return path


def only_controls(got: list[tuple[Upstream, bytes]], path: bytes) -> None:
    """What the backend received since the mark is exactly the control request."""
    heads = [h for _, data in got for h in data.split(b"\r\n\r\n") if h]
    assert len(heads) == 1 and heads[0].startswith(b"GET " + path + b" HTTP/1.1\r\n"), got


def refusal_record(p: ProxyProcess, before: int, reason: str) -> dict[str, object]:
    """The flow record written for the refusal, naming ``reason`` (bounded wait)."""
    deadline = time.monotonic() + 10
    while True:
        recs = p.records(before + 1)[before:]
        found = [r for r in recs if reason.lower() in str(r.get("error") or "").lower()]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found, (reason, [r.get("error") for r in recs])
    return found[0]


def assert_refused(r: StreamResult) -> None:
    assert r.refused, r
    assert r.status is None or r.status == 400, r


@dataclass(frozen=True)
class Case:
    name: str
    headers: list[Header]
    reason: str  # in the record's error
    body: bytes = b""


# RFC 9113 §8.2.1 field validity, §8.2.2 connection-specific fields,
# §8.3.1 request pseudo-headers, §8.1.1 malformed messages.
CASES = [
    Case("transfer-encoding", [*block(b"POST"), (b"transfer-encoding", b"chunked")],
         "transfer-encoding", b"5\r\nhello\r\n0\r\n\r\n"),
    Case("te-gzip", [*block(), (b"te", b"gzip")], "TE"),
    Case("te-trailers-gzip", [*block(), (b"te", b"trailers, gzip")], "TE"),
    Case("connection", [*block(), (b"connection", b"close")], "connection"),
    Case("keep-alive", [*block(), (b"keep-alive", b"timeout=5")], "keep-alive"),
    Case("proxy-connection", [*block(), (b"proxy-connection", b"keep-alive")], "proxy-connection"),
    Case("upgrade", [*block(), (b"upgrade", b"websocket")], "upgrade"),
    Case("uppercase-name", [*block(), (b"X-Foo", b"a")], "uppercase"),
    Case("uppercase-host", [*block(), (b"Host", b"example.test")], "uppercase"),
    Case("cr-in-name", [*block(), (b"x-f\roo", b"a")], "header name"),
    Case("lf-in-name", [*block(), (b"x-f\noo", b"a")], "header name"),
    Case("nul-in-name", [*block(), (b"x-f\0oo", b"a")], "header name"),
    Case("space-in-name", [*block(), (b"x foo", b"a")], "name"),
    Case("cr-in-value", [*block(), (b"x-foo", b"a\rb")], "header value"),
    Case("crlf-in-value", [*block(), (b"x-foo", b"a\r\nx-injected: 1")], "header value"),
    Case("nul-in-value", [*block(), (b"x-foo", b"a\0b")], "header value"),
    Case("leading-space", [*block(), (b"x-foo", b" a")], "whitespace"),
    Case("trailing-tab", [*block(), (b"x-foo", b"a\t")], "whitespace"),
    Case("colon-in-name", [*block(), (b"x:foo", b"a")], "header name"),
    Case("missing-method", block()[1:], ":method"),
    Case("missing-scheme", [block()[0], *block()[2:]], ":scheme"),
    Case("missing-path", block()[:3], ":path"),
    Case("duplicate-path", [*block(), (b":path", b"/y")], "duplicate pseudo-header"),
    Case("duplicate-method", [*block(), (b":method", b"POST")], "duplicate pseudo-header"),
    Case("unknown-pseudo", [*block(), (b":foo", b"x")], "pseudo-header"),
    Case("pseudo-after-field", [*block()[:3], (b"x-foo", b"a"), block()[3]], "out of sequence"),
    Case("status-on-request", [*block(), (b":status", b"200")], ":status"),
    Case("path-empty", block(path=b""), ":path"),
    Case("path-absolute-form", block(path=b"http://evil.test/x"), "invalid :path"),
    Case("path-authority-form", block(path=b"evil.test:80"), "invalid :path"),
    Case("path-star-get", block(path=b"*"), "invalid :path"),
    Case("path-space", block(path=b"/a b"), "invalid :path"),
    Case("path-request-line", block(path=b"/a HTTP/1.1\r\nx: y"), "header value"),
    Case("path-hash", block(path=b"/a#b"), "invalid :path"),
    Case("path-tab", block(path=b"/a\tb"), "invalid :path"),
    Case("method-space", block(method=b"GET /y"), "invalid :method"),
    Case("method-request-line", block(method=b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET"),
         "header value"),
    Case("authority-userinfo", block(authority=b"user@example.test"), "invalid :authority"),
    Case("authority-path", block(authority=b"example.test/evil?"), "invalid :authority"),
    Case("authority-space", block(authority=b"example.test x"), "invalid :authority"),
    Case("authority-host-disagree", [*block(), (b"host", b"evil.test")], "authority"),
    Case("host-userinfo", [*block()[:2], block()[3], (b"host", b"user@example.test")], "userinfo"),
    Case("host-twice", [*block()[:2], block()[3], (b"host", b"a.test"), (b"host", b"a.test")],
         "host"),
    Case("content-length-plus", [*block(b"POST"), (b"content-length", b"+2")],
         "content-length", b"ok"),
    Case("content-length-underscore", [*block(b"POST"), (b"content-length", b"1_0")],
         "content-length", b"0123456789"),
    Case("content-length-list", [*block(b"POST"), (b"content-length", b"2, 2")],
         "content-length", b"ok"),
    Case("content-lengths-differ",
         [*block(b"POST"), (b"content-length", b"2"), (b"content-length", b"3")],
         "content-length", b"ok"),
    Case("content-length-without-data", [*block(b"POST"), (b"content-length", b"10")],
         "content-length"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_refused_and_nothing_forwarded(
    case: Case, rproxy: ProxyProcess, backend: H1Backend
) -> None:
    mark = backend.mark()
    before = len(rproxy.records())
    with RawH2(rproxy.port) as c:
        r = c.wait(c.request(case.headers, case.body))
    assert_refused(r)
    path = control(rproxy, backend)
    only_controls(backend.since(mark), path)
    refusal_record(rproxy, before, case.reason)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_refused_on_a_forward_listener(
    case: Case, fproxy: ProxyProcess, backend: H1Backend
) -> None:
    """The same blocks to a forward listener, ``:authority`` (and ``host``) naming the
    backend: the absolute target built from them never reaches it either."""
    headers = [(k, v.replace(b"example.test", backend.auth)) for k, v in case.headers]
    mark = backend.mark()
    before = len(fproxy.records())
    with RawH2(fproxy.port) as c:
        r = c.wait(c.request(headers, case.body))
    assert_refused(r)
    path = control(fproxy, backend, backend.auth)
    only_controls(backend.since(mark), path)
    refusal_record(fproxy, before, case.reason)


def test_options_star_is_forwarded_as_asterisk_form(
    rproxy: ProxyProcess, backend: H1Backend
) -> None:
    """The one exception to origin-form (RFC 9113 §8.3.1): ``*`` for OPTIONS."""
    mark = backend.mark()
    with RawH2(rproxy.port) as c:
        r = c.wait(c.request(block(b"OPTIONS", b"*")))
    assert (r.status, r.body) == (200, b"ok"), r
    [(_, data)] = backend.since(mark)
    assert data.startswith(b"OPTIONS * HTTP/1.1\r\n"), data


def test_options_star_on_a_forward_listener(fproxy: ProxyProcess, backend: H1Backend) -> None:
    mark = backend.mark()
    with RawH2(fproxy.port) as c:
        r = c.wait(c.request(block(b"OPTIONS", b"*", backend.auth)))
    assert (r.status, r.body) == (200, b"ok"), r
    [(_, data)] = backend.since(mark)
    assert data.startswith(b"OPTIONS * HTTP/1.1\r\n"), data


def test_te_trailers_is_allowed_and_not_forwarded(rproxy: ProxyProcess, backend: H1Backend) -> None:
    """``te: trailers`` is the one ``te`` HTTP/2 allows (RFC 9113 §8.2.2); hop-by-hop in 1.1."""
    mark = backend.mark()
    with RawH2(rproxy.port) as c:
        r = c.wait(c.request([*block(path=b"/te"), (b"te", b"trailers")]))
    assert (r.status, r.body) == (200, b"ok"), r
    [(_, data)] = backend.since(mark)
    assert data.startswith(b"GET /te HTTP/1.1\r\n") and b"\r\nte:" not in data.lower(), data


# -- content-length that disagrees with the DATA (H2.CL) -----------------------------------------


def _one_upstream(backend: H1Backend, mark: list[int], path: bytes) -> Upstream:
    """Wait (bounded) until the backend holds the head for ``path``: its connection."""
    found: list[Upstream] = []

    def arrived() -> bool:
        found[:] = [s for s, data in backend.since(mark) if b" " + path + b" " in data]
        return bool(found)

    assert backend.wait_for(arrived), backend.since(mark)
    return found[0]


def _after_disagreement(
    rproxy: ProxyProcess, backend: H1Backend, mark: list[int], up: Upstream, limit: int
) -> None:
    """The backend got one head and at most ``limit`` body bytes on ``up``, then a close;
    nothing else but the control request anywhere."""
    assert backend.wait_for(lambda: up.closed), "the proxy closed the upstream connection"
    got = backend.since(mark)
    data = dict((id(s), d) for s, d in got)[id(up)]
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.count(b" HTTP/1.1\r\n") == 1 and len(body) <= limit, data
    assert b"smuggled" not in b"".join(d for _, d in got)
    path = control(rproxy, backend)
    rest = [(s, d) for s, d in backend.since(mark) if s is not up]
    only_controls(rest, path)


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: example.test\r\n\r\n"


def test_data_beyond_content_length_in_one_write(rproxy: ProxyProcess, backend: H1Backend) -> None:
    """H2.CL: ``content-length: 0`` and a request in the DATA: never a second request."""
    mark = backend.mark()
    before = len(rproxy.records())
    with RawH2(rproxy.port) as c:
        r = c.wait(c.request([*block(b"POST", b"/cl0"), (b"content-length", b"0")], SMUGGLED))
    assert_refused(r)
    refusal_record(rproxy, before, "InvalidBodyLength")
    path = control(rproxy, backend)
    got = backend.since(mark)
    assert b"smuggled" not in b"".join(d for _, d in got), got
    cl0 = [s for s, d in got if b"/cl0 " in d]
    if cl0:  # the head may have gone on alone, complete; then its connection is closed
        _after_disagreement(rproxy, backend, mark, cl0[0], 0)
    else:
        only_controls(got, path)


def test_data_beyond_content_length_after_the_body(
    rproxy: ProxyProcess, backend: H1Backend
) -> None:
    """The declared body went upstream; the DATA after it never does."""
    mark = backend.mark()
    before = len(rproxy.records())
    with RawH2(rproxy.port) as c:
        stream = c.request([*block(b"POST", b"/hold-more"), (b"content-length", b"5")], end=False)
        c.data(stream, b"12345")
        up = _one_upstream(backend, mark, b"/hold-more")
        assert backend.wait_for(lambda: up.received.endswith(b"\r\n\r\n12345"))
        c.data(stream, SMUGGLED, end=True)
        r = c.wait(stream)
    assert_refused(r)
    refusal_record(rproxy, before, "InvalidBodyLength")
    _after_disagreement(rproxy, backend, mark, up, 5)


def test_data_short_of_content_length(rproxy: ProxyProcess, backend: H1Backend) -> None:
    """The stream ends before the declared length: the partial body stays partial
    (the upstream connection is closed, not reused for the next request)."""
    mark = backend.mark()
    before = len(rproxy.records())
    with RawH2(rproxy.port) as c:
        stream = c.request([*block(b"POST", b"/hold-less"), (b"content-length", b"10")], end=False)
        c.data(stream, b"12345")
        up = _one_upstream(backend, mark, b"/hold-less")
        assert backend.wait_for(lambda: up.received.endswith(b"\r\n\r\n12345"))
        c.end(stream)
        r = c.wait(stream)
    assert_refused(r)
    refusal_record(rproxy, before, "InvalidBodyLength")
    _after_disagreement(rproxy, backend, mark, up, 5)


def test_data_short_of_content_length_in_one_write(
    rproxy: ProxyProcess, backend: H1Backend
) -> None:
    mark = backend.mark()
    before = len(rproxy.records())
    with RawH2(rproxy.port) as c:
        r = c.wait(c.request([*block(b"POST", b"/short"), (b"content-length", b"10")], b"12345"))
    assert_refused(r)
    refusal_record(rproxy, before, "InvalidBodyLength")
    got = backend.since(mark)
    short = [s for s, d in got if b"/short " in d]
    if short:
        _after_disagreement(rproxy, backend, mark, short[0], 5)
    else:
        path = control(rproxy, backend)
        only_controls(backend.since(mark), path)


def test_data_short_of_content_length_then_trailers(
    rproxy: ProxyProcess, backend: H1Backend
) -> None:
    """The same H2.CL shortfall, the stream ended by trailers instead of an empty DATA."""
    mark = backend.mark()
    before = len(rproxy.records())
    with RawH2(rproxy.port) as c:
        headers = [*block(b"POST", b"/hold-trailers"), (b"content-length", b"10")]
        stream = c.request(headers, end=False)
        c.data(stream, b"12345")
        up = _one_upstream(backend, mark, b"/hold-trailers")
        assert backend.wait_for(lambda: up.received.endswith(b"\r\n\r\n12345"))
        c.conn.send_headers(stream, [(b"x-checksum", b"1")], end_stream=True)
        c.flush()
        r = c.wait(stream)
    assert_refused(r)
    refusal_record(rproxy, before, "content-length")
    _after_disagreement(rproxy, backend, mark, up, 5)


def test_client_reset_mid_body_closes_the_upstream(
    rproxy: ProxyProcess, backend: H1Backend
) -> None:
    """RST_STREAM in the middle of a body: the partial request is never completed by
    what comes next; the upstream connection is closed, the reset recorded."""
    mark = backend.mark()
    before = len(rproxy.records())
    with RawH2(rproxy.port) as c:
        headers = [*block(b"POST", b"/hold-reset"), (b"content-length", b"10")]
        stream = c.request(headers, end=False)
        c.data(stream, b"12345")
        up = _one_upstream(backend, mark, b"/hold-reset")
        assert backend.wait_for(lambda: up.received.endswith(b"\r\n\r\n12345"))
        c.conn.reset_stream(stream)
        c.flush()
        after = c.wait(c.request(block(path=b"/after-reset")))
    assert (after.status, after.body) == (200, b"ok"), after
    refusal_record(rproxy, before, "client reset the stream")
    assert backend.wait_for(lambda: up.closed), "the proxy closed the upstream connection"
    assert up.received.endswith(b"\r\n\r\n12345"), up.received


def test_other_streams_unaffected_by_a_400(rproxy: ProxyProcess, backend: H1Backend) -> None:
    """A stream error (400 + RST_STREAM) leaves the connection usable (RFC 9113 §5.4.2)."""
    with RawH2(rproxy.port) as c:
        bad = c.wait(c.request(block(path=b"/a b")))
        good = c.wait(c.request(block(path=b"/after")))
    assert bad.status == 400 and bad.goaway is None, bad
    assert (good.status, good.body) == (200, b"ok"), good


def test_refusal_record_is_complete(rproxy: ProxyProcess) -> None:
    """A 400 refusal's record carries the request as sent and the answer."""
    before = len(rproxy.records())
    with RawH2(rproxy.port) as c:
        c.wait(c.request(block(path=b"/a#frag")))
    rec = refusal_record(rproxy, before, "invalid :path b'/a#frag'")
    error = "client: malformed HTTP/2 request: invalid :path b'/a#frag' (RFC 9113 §8.3.1)"
    assert rec["error"] == error
    response = rec["response"]
    assert isinstance(response, dict) and response["status"] == 400


# -- request trailers ---------------------------------------------------------------------------


def test_request_trailers_never_carry_framing_or_routing(
    rproxy: ProxyProcess, backend: H1Backend
) -> None:
    """RFC 9110 §6.5.1 (HTTP/1 hazard 21): trailers are not headers; the HTTP/1.1
    upstream gets the harmless ones in the last chunk and never host or framing."""
    mark = backend.mark()
    trailers = [
        (b"x-checksum", b"1"),
        (b"host", b"evil.test"),
        (b"content-length", b"99"),
        (b"authorization", b"Basic ZXZpbDpldmls"),
    ]
    with RawH2(rproxy.port) as c:
        stream = c.request(block(b"POST", b"/trailers"), end=False)
        c.data(stream, b"hello")
        c.conn.send_headers(stream, trailers, end_stream=True)
        c.flush()
        r = c.wait(stream)
    assert (r.status, r.body) == (200, b"ok"), r
    [(_, data)] = backend.since(mark)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower(), data
    assert body == b"5\r\nhello\r\n0\r\nx-checksum: 1\r\n\r\n", data


# -- gRPC is never downgraded -------------------------------------------------------------------


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def test_grpc_is_never_downgraded_to_http1(rproxy: ProxyProcess, backend: H1Backend) -> None:
    """gRPC needs HTTP/2 end to end (issue 15): to an upstream that speaks only
    HTTP/1.1 the call is not translated; the client gets a 502 (or a reset), the
    upstream at most the HTTP/2 preface, which an HTTP/1.1 server refuses."""
    mark = backend.mark()
    before = len(rproxy.records())
    path = b"/pkg.Service/Method"
    headers = [
        *block(b"POST", path),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    with RawH2(rproxy.port) as c:
        r = c.wait(c.request(headers, b"\x00\x00\x00\x00\x00"))
    assert r.status == 502 or (r.status is None and r.reset not in (None, 0)), r
    rec = refusal_record(rproxy, before, "upstream")
    assert rec["request"] is not None, rec
    assert "does not speak HTTP/2" in str(rec["error"]), rec  # the reason, named
    control_path = control(rproxy, backend)
    got = backend.since(mark)
    assert all(data.startswith(H2_PREFACE) for _, data in got if control_path not in data), got
    assert not any(b"HTTP/1.1\r\n" in data and path in data for _, data in got), got
