"""The flow log's lines are unchanged by the faster encoder and record builder (issue 22).

``proxy.flow.jsonview`` writes each record out with fewer calls than the
version kept in ``tests/support/jsonview_ref.py``; here both encode the same
records, generated (every optional part, any bytes in fields and previews)
and made by real exchanges through the session, and the JSON bytes must be
identical.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.flow.jsonview import record_to_json
from proxy.flow.record import (
    CapturedBodies,
    FlowRecord,
    Message,
    Refused,
    RequestInfo,
    ResponseInfo,
    RouteInfo,
    RulesInfo,
    Source,
    Timings,
    TlsInfo,
    TlsSide,
    TunnelInfo,
)
from proxy.layers.commands import CLIENT, Hook, OpenServer
from proxy.layers.events import DataReceived, ServerOpened
from proxy.rules import SourceText, load_sources
from proxy.session.config import SessionConfig
from proxy.session.http import HttpSession
from proxy.sinks.jsonenc import dumps
from tests.support import jsonview_ref

fields = st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=24)), max_size=4).map(tuple)
previews = st.one_of(st.binary(max_size=40), st.text(max_size=20).map(str.encode))
times = st.floats(min_value=1.6e9, max_value=2e9, allow_nan=False)
maybe_time = st.none() | times
text = st.text(max_size=16)
address = st.tuples(text, st.integers(0, 65535))


@st.composite
def messages(draw: st.DrawFn) -> Message:
    return Message(
        draw(fields),
        draw(st.integers(0, 10**9)),
        draw(previews),
        draw(st.sampled_from([b"1.1", b"1.0", b"2", b"2.0"])),
        draw(st.just(()) | fields),
    )


def requests(depth: int = 1) -> st.SearchStrategy[RequestInfo]:
    inner = st.none() | requests(depth - 1) if depth else st.none()
    return st.builds(RequestInfo, st.binary(max_size=8), text, messages(), inner)


def responses(depth: int = 1) -> st.SearchStrategy[ResponseInfo]:
    inner = st.none() | responses(depth - 1) if depth else st.none()
    return st.builds(
        ResponseInfo,
        st.integers(100, 599),
        st.binary(max_size=12),
        messages(),
        inner,
        st.sampled_from(Source),
    )


sides = st.builds(
    TlsSide,
    st.none() | text,
    st.none() | text,
    st.none() | text,
    st.none() | text,
    st.lists(text, max_size=2).map(tuple),
    st.none() | text,
    st.none() | text,
    st.lists(text, max_size=2).map(tuple),
    st.none() | text,
)
bodies = st.builds(
    CapturedBodies,
    st.sampled_from(["", "/tmp/bodies"]),
    st.none() | st.binary(max_size=4),
    st.none() | st.binary(max_size=4),
    st.booleans(),
    st.booleans(),
)


@st.composite
def records(draw: st.DrawFn) -> FlowRecord:
    start = draw(times)
    return FlowRecord(
        id=draw(text),
        kind=draw(st.sampled_from(["http", "tunnel", "websocket", "tcp"])),
        mode=draw(text),
        start=start,
        end=start + draw(st.floats(0, 1000)),
        client=draw(address),
        server=draw(st.none() | address),
        request=draw(st.none() | requests()),
        response=draw(st.none() | responses()),
        tunnel=draw(
            st.none()
            | st.builds(
                TunnelInfo, st.integers(0, 2**40), st.integers(0, 2**40), text, text, st.none()
            )
        ),
        timings=Timings(*(draw(maybe_time) for _ in range(5))),
        error=draw(st.none() | text),
        tls=draw(
            st.none()
            | st.builds(TlsInfo, st.booleans(), st.none() | sides, st.none() | sides, st.booleans())
        ),
        rules=draw(
            st.none()
            | st.builds(
                RulesInfo,
                st.lists(
                    st.tuples(text, text, st.lists(text, max_size=2).map(tuple)), max_size=2
                ).map(tuple),
                st.lists(text, max_size=2).map(tuple),
                st.lists(text, max_size=2).map(tuple),
                st.none() | text,
            )
        ),
        bodies=draw(st.none() | bodies),
        refused=draw(st.none() | st.builds(Refused, st.binary(max_size=20), st.integers(0, 99))),
        route=draw(st.none() | st.builds(RouteInfo, text, st.none() | address)),
    )


def same(record: FlowRecord) -> None:
    assert dumps(record_to_json(record)) == dumps(jsonview_ref.record_to_json(record))


@settings(max_examples=400, deadline=None)
@given(records())
def test_generated_records_encode_as_before(record: FlowRecord) -> None:
    same(record)


RULES = """version: 1
rules:
  - name: edit
    match: {path: {prefix: /edit}}
    request:
      - set_header: {x-added: "1"}
    response:
      - set_header: {x-seen: "yes"}
  - name: mock
    match: {path: /mock}
    respond: {status: 201, body: "mocked"}
  - name: other
    match: {host: nowhere.test, path: {prefix: /api/}}
    block: {status: 403}
"""


def _exchange(request: bytes, response: bytes) -> FlowRecord:
    rules = load_sources([SourceText(Path("/t/rules.yaml"), RULES)], rng=lambda: 0.0)
    ids = (str(i) for i in itertools.count())
    clock = itertools.count(1795762093.0, 0.0125)
    config = SessionConfig(new_id=lambda: next(ids), clock=lambda: next(clock), rules=lambda: rules)
    session = HttpSession(config, ("127.0.0.1", 5000))
    out = session.handle(DataReceived(CLIENT, request))
    for command in list(out):
        if isinstance(command, OpenServer):
            out = session.handle(ServerOpened(command.conn, ("127.0.0.1", 80), reused=False))
            out = session.handle(DataReceived(command.conn, response))
    done = [c for c in out if isinstance(c, Hook)]
    assert done, out
    record: FlowRecord = done[-1].flow.to_record()
    return record


def test_records_of_real_exchanges_encode_as_before() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-\xe9: caf\xe9\r\n\r\nhello"
    cases = [
        (b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n", ok),
        (b"GET http://a.test/edit?q=1 HTTP/1.1\r\nHost: a.test\r\nA: b\r\n\r\n", ok),
        (b"GET http://a.test/mock HTTP/1.1\r\nHost: a.test\r\n\r\n", ok),
        (
            b"POST http://a.test/p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\n\xff\x00a",
            ok,
        ),
        (
            b"GET http://a.test/c HTTP/1.1\r\nHost: a.test\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nT: 1\r\n\r\n",
        ),
    ]
    for request, response in cases:
        record = _exchange(request, response)
        assert record.request is not None
        same(record)
