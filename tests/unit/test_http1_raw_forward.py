"""Forwarding a received head as received (``RequestHead.raw``, issue 22 item 2).

The proxy frames what it forwards from its own parse (hazard table, principle
4). A head goes out as the bytes that came in only when those bytes are what
the canonical rebuild writes for the same fields, the framing field kept
where it came. Property tests generate heads (canonical or not, hop-by-hop
or not, every framing) and check that the forwarded bytes are either the
received ones, and then equal to that rebuild, or exactly today's rebuild;
and that every head the definitions call forwardable is forwarded raw.
The unit tests below name the fallbacks one by one.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.flow.hooks import HookKind
from proxy.http1 import ProtocolError, RequestHead, RequestParser, ResponseHead, ResponseParser
from proxy.http1.events import KIND_LENGTH, KIND_NONE
from proxy.http1.fields import _FIELD_LINE, parse_fields
from proxy.http1.writer import request_head, response_head
from proxy.layers.commands import CLIENT, Hook, OpenServer, SendData, server_conn
from proxy.layers.events import DataReceived, ServerOpened
from proxy.rules import SourceText, load_sources
from proxy.session.config import SessionConfig, Upstream
from proxy.session.http import HttpSession
from proxy.session.messages import request_out, response_out
from proxy.session.target import Target, forward_target, origin_target
from tests.playbook import Match, Playbook

REGULAR = SessionConfig()
REVERSE = SessionConfig(upstream=Upstream("http", "127.0.0.1", 9000))
HOP = [b"Connection", b"Keep-Alive", b"TE", b"Trailer", b"Upgrade", b"Proxy-Connection"]
HOP += [b"Proxy-Authorization"]
PLAIN = [b"Server", b"Date", b"content-type", b"X-Trace", b"Cache-Control", b"ETag", b"Vary"]
FRAMING = {b"content-length", b"transfer-encoding"}


# -- generated heads --------------------------------------------------------------------------

value_text = st.text(st.sampled_from("abcXYZ019 \t/;=,\"'-_.:"), min_size=0, max_size=12).map(
    lambda s: s.encode()
)
# How a field line separates its value: the canonical ": " or something the
# parser accepts and reads the same (RFC 9110 §5.5 OWS), which the writer
# would not write.
separator = st.sampled_from([b": ", b": ", b": ", b":", b":  ", b":\t", b": \t"])
trailing = st.sampled_from([b"", b"", b"", b" ", b"\t"])


@st.composite
def line_shape(draw: st.DrawFn, canonical: bool) -> tuple[bytes, bytes]:
    """What goes between a name and its value, and after the value."""
    if canonical:
        return b": ", b""
    return draw(separator), draw(trailing)


@st.composite
def field_lines(draw: st.DrawFn, canonical: bool) -> list[bytes]:
    """Up to six field lines; canonical ones (and often hop-by-hop-free), or
    with any separator the parser accepts."""
    names = PLAIN + HOP if draw(st.integers(0, 4)) == 0 else PLAIN
    out = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(names))
        value = draw(value_text)
        if name == b"Connection" and draw(st.booleans()):
            value = b"keep-alive"  # what most servers send: may stay (RFC 9110 §7.6.1)
        sep, end = draw(line_shape(canonical and draw(st.integers(0, 19)) > 0))
        out.append(name + sep + (value.strip(b" \t") if canonical else value) + end)
    return out


@st.composite
def framing_line(draw: st.DrawFn, canonical: bool) -> bytes | None:
    """No framing field, a Content-Length (maybe with leading zeros), or a TE."""
    kind = draw(st.sampled_from(["none", "length", "length", "te"]))
    if kind == "none":
        return None
    name = draw(st.sampled_from([b"Content-Length", b"content-length", b"Transfer-Encoding"]))
    if kind == "length":
        name = b"Content-Length" if name == b"Transfer-Encoding" else name
        value = draw(st.sampled_from([b"0", b"5", b"615", b"615", b"05", b"00", b"010"]))
    else:
        value = draw(st.sampled_from([b"chunked", b"chunked", b"Chunked", b",chunked", b"gzip"]))
        name = b"Transfer-Encoding"
    sep, end = draw(line_shape(canonical))
    return name + sep + value + end


def insert(lines: list[bytes], line: bytes | None, at: int) -> list[bytes]:
    if line is None:
        return lines
    at = min(at, len(lines))
    return [*lines[:at], line, *lines[at:]]


# Canonical status lines and others the parser reads (1.0, 1.2 as 1.1, no reason).
STATUS_LINES = [
    b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found", b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 Not Modified", b"HTTP/1.1 206 ", b"HTTP/1.1 200", b"HTTP/1.0 200 OK",
    b"HTTP/1.2 200 OK", b"HTTP/1.1 101 Switching",
]  # fmt: skip


@st.composite
def response_case(draw: st.DrawFn) -> tuple[bytes, bytes, bytes, bool]:
    """(response head bytes, request method, request version, client close)."""
    canonical = draw(st.booleans())
    status_line = STATUS_LINES[0]
    if not canonical or draw(st.booleans()):
        status_line = draw(st.sampled_from(STATUS_LINES))
    lines = draw(field_lines(canonical))
    lines = insert(lines, draw(framing_line(canonical)), draw(st.integers(0, 6)))
    head = b"\r\n".join([status_line, *lines]) + b"\r\n\r\n"
    method = draw(st.sampled_from([b"GET", b"GET", b"HEAD", b"POST"]))
    keep_alive = canonical and draw(st.booleans())
    version = b"1.1" if keep_alive else draw(st.sampled_from([b"1.1", b"1.0"]))
    return head, method, version, not keep_alive and draw(st.booleans())


def parse_response(data: bytes, method: bytes) -> ResponseHead:
    parser = ResponseParser()
    parser.expect(method)
    parser.feed(data)
    head = parser.next_event()
    assert isinstance(head, ResponseHead)
    return head


def client_request(method: bytes, version: bytes, close: bool) -> RequestHead:
    fields = b"Host: a.example\r\n" + (b"Connection: close\r\n" if close else b"")
    parser = RequestParser()
    parser.feed(b"%s http://a.example/ HTTP/%s\r\n%s\r\n" % (method, version, fields))
    head = parser.next_event()
    assert isinstance(head, RequestHead)
    return head


def canonical_in_place(head: RequestHead | ResponseHead) -> list[tuple[bytes, bytes]]:
    """The head's fields as the rebuild writes them, the framing field kept in
    its place with the value our framing states (from the definitions, not
    from proxy.session)."""
    out = []
    for name, value in head.fields:
        if name.lower() == b"content-length":
            value = b"%d" % int(value)
        elif name.lower() == b"transfer-encoding":
            value = b"chunked"
        out.append((name, value))
    return out


def same_but_framing_moved(raw: bytes, rebuilt: bytes) -> bool:
    """``raw`` and ``rebuilt`` have the same lines in the same order once the
    framing field line is set aside in both (the rebuild writes it last, with
    our name case), and the same framing field value."""

    def split(data: bytes) -> tuple[list[bytes], list[bytes]]:
        lines = data.split(b"\r\n")
        framing = [ln.split(b":", 1)[1] for ln in lines if ln.split(b":")[0].lower() in FRAMING]
        return [ln for ln in lines if ln.split(b":")[0].lower() not in FRAMING], framing

    return split(raw) == split(rebuilt)


def forwardable_response(data: bytes, head: ResponseHead, request: RequestHead) -> bool:
    """When a response must go out raw, from the definitions: every line
    canonical, HTTP/1.1 with a reason, no hop-by-hop field, a framing we
    keep, a keep-alive HTTP/1.1 client."""
    lines = data[:-4].split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 ") or len(lines[0]) < len(b"HTTP/1.1 200 "):
        return False
    connection = [ln for ln in lines[1:] if ln.partition(b":")[0].lower() == b"connection"]
    if connection and [ln.partition(b":")[2] for ln in connection] == [b" keep-alive"]:
        lines = [ln for ln in lines if ln not in connection]  # our own option too: it may stay
    kind = head.framing.kind.value
    for line in lines[1:]:
        name, _, rest = line.partition(b":")
        value = rest[1:]
        if rest[:1] != b" " or not value or value != value.strip(b" \t"):
            return False
        if name.lower() in {n.lower() for n in HOP}:
            return False
        if name.lower() == b"content-length" and value != b"%d" % int(value):
            return False
        # A bodiless response (HEAD, 204, 304) loses its Transfer-Encoding.
        if name.lower() == b"transfer-encoding" and (value != b"chunked" or kind != "chunked"):
            return False
        if name.lower() == b"content-length" and head.status == 204:
            return False
    client_keeps = request.version == b"1.1" and b"Connection" not in data_of(request)
    return kind in ("length", "chunked", "none") and client_keeps


def data_of(request: RequestHead) -> bytes:
    assert request.raw is not None
    return request.raw


@settings(max_examples=3000, deadline=None)
@given(response_case())
def test_a_response_goes_out_as_received_or_rebuilt(case: tuple[bytes, bytes, bytes, bool]) -> None:
    data, method, version, close = case
    try:
        head = parse_response(data, method)
    except ProtocolError:
        return  # refused: nothing is forwarded
    if head.informational:
        return  # 1xx go through informational_out, always rebuilt
    request = client_request(method, version, close)
    out = response_out(request, head, False)
    rebuilt = response_out(request, replace(head), False)  # replace drops raw
    assert out[1:] == rebuilt[1:]  # the same close decisions
    if out[0] == data:
        expected = response_head(b"1.1", head.status, head.reason, canonical_in_place(head))
        assert out[0] == expected
        kept = [ln for ln in out[0].split(b"\r\n") if ln.lower() != b"connection: keep-alive"]
        assert same_but_framing_moved(b"\r\n".join(kept), rebuilt[0])
    else:
        assert out[0] == rebuilt[0]
    # Raw whenever the definitions allow it; otherwise the rebuild (which may
    # happen to write the received bytes, a 101 for instance).
    if forwardable_response(data, head, request):
        assert out[0] == data
    else:
        assert out[0] == rebuilt[0]


@st.composite
def request_case(draw: st.DrawFn) -> tuple[bytes, SessionConfig]:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT"]))
    config = draw(st.sampled_from([REGULAR, REVERSE]))
    target = b"http://a.example/p?q" if config is REGULAR else b"/p?q"
    canonical = draw(st.booleans())
    version = b"1.1" if canonical else draw(st.sampled_from([b"1.1", b"1.0"]))
    lines = draw(field_lines(canonical))
    host = draw(st.sampled_from([b"a.example", b"b.example", b"127.0.0.1:9000"]))
    if canonical and draw(st.booleans()):
        host = b"a.example" if config is REGULAR else b"127.0.0.1:9000"
    if draw(st.integers(0, 9)):
        sep, end = draw(line_shape(canonical))
        lines = insert(lines, b"Host" + sep + host + end, draw(st.integers(0, 6)))
    lines = insert(lines, draw(framing_line(canonical)), draw(st.integers(0, 6)))
    head = b"\r\n".join([b"%s %s HTTP/%s" % (method, target, version), *lines]) + b"\r\n\r\n"
    return head, config


def forwardable_request(data: bytes, authority: bytes) -> bool:
    lines = data[:-4].split(b"\r\n")[1:]
    hosts = []
    for line in lines:
        name, _, rest = line.partition(b":")
        value = rest[1:]
        if rest[:1] != b" " or not value or value != value.strip(b" \t"):
            return False
        if name.lower() in {n.lower() for n in HOP}:
            return False
        if name.lower() == b"content-length" and value != b"%d" % int(value):
            return False
        if name.lower() == b"transfer-encoding" and value != b"chunked":
            return False
        if name.lower() == b"host":
            hosts.append(value)
    return hosts == [authority]


@settings(max_examples=3000, deadline=None)
@given(request_case())
def test_a_request_field_block_goes_out_as_received_or_rebuilt(
    case: tuple[bytes, SessionConfig],
) -> None:
    data, config = case
    parser = RequestParser()
    parser.feed(data)
    try:
        head = parser.next_event()
        assert isinstance(head, RequestHead)
        up = config.upstream
        target = (
            forward_target(head) if up is None else origin_target(head, "http", up.host, up.port)
        )
        out = request_out(head, target, config)
    except ProtocolError:
        return
    rebuilt = request_out(replace(head), target, config)
    assert out[1:] == rebuilt[1:]
    request_line = b"%s %s HTTP/1.1" % (head.method, target.path)
    as_received = request_line + data[data.index(b"\r\n") :]
    if out[0] == as_received:
        expected = request_head(head.method, target.path, b"1.1", canonical_in_place(head))
        assert out[0] == expected
        assert same_but_framing_moved(out[0], rebuilt[0])
    else:
        assert out[0] == rebuilt[0]
    if forwardable_request(data, target.authority.encode()):
        assert out[0] == as_received
    else:
        assert out[0] == rebuilt[0]


# -- the canonical check against its definition -------------------------------------------

line_text = st.lists(
    st.sampled_from([b"A", b"x-y", b":", b" ", b"\t", b"v", b"\x80", b",", b"="]), max_size=8
).map(b"".join)


@settings(max_examples=3000, deadline=None)
@given(st.lists(line_text, min_size=1, max_size=5))
def test_canonical_field_lines_are_what_the_writer_writes(lines: list[bytes]) -> None:
    """``parse_fields`` calls a block canonical exactly when joining each parsed
    pair with ": " (the writer's join) gives the received lines back, every
    value non-empty; and it accepts or refuses the same blocks as before."""
    try:
        fields, _, canonical = parse_fields(lines, 400)
    except ProtocolError:
        assert any(_FIELD_LINE.fullmatch(line) is None for line in lines)
        return
    assert all(_FIELD_LINE.fullmatch(line) is not None for line in lines)
    written = [name + b": " + value for name, value in fields]
    assert canonical == (written == lines and all(value for _, value in fields))


# -- the fallbacks, one by one ------------------------------------------------------------------

KEEP_ALIVE = b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"


def exchange(response: bytes, request: bytes = KEEP_ALIVE) -> tuple[bytes, ResponseHead]:
    parser = RequestParser()
    parser.feed(request)
    req = parser.next_event()
    assert isinstance(req, RequestHead)
    head = parse_response(response, req.method)
    return response_out(req, head, False)[0], head


def test_a_typical_keep_alive_response_goes_out_as_received() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\nDate: d\r\n\r\n"
    out, head = exchange(data)
    assert out == data  # Content-Length stays first, where it came
    assert head.raw == data[:-4]


def test_a_response_saying_keep_alive_goes_out_as_received() -> None:
    # nginx's keep-alive answer: its Connection option is ours as well.
    data = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 5\r\nConnection: keep-alive\r\nETag: \"x\"\r\n\r\n")  # fmt: skip
    assert exchange(data)[0] == data


@pytest.mark.parametrize(
    "connection",
    [
        b"Connection: Keep-Alive\r\n",
        b"Connection: keep-alive, X-A\r\nX-A: 1\r\n",
        b"Connection: keep-alive\r\nConnection: keep-alive\r\n",
        b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n",
    ],
)
def test_a_response_with_other_connection_options_is_rebuilt(connection: bytes) -> None:
    data = b"HTTP/1.1 200 OK\r\n" + connection + b"Content-Length: 5\r\n\r\n"
    assert exchange(data)[0] == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"


def test_a_chunked_response_goes_out_as_received() -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVary: a\r\n\r\n"
    assert exchange(data)[0] == data


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 010\r\nA: b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\r\nContent-Length: 10\r\n\r\n",
            id="row-4-leading-zero",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length:  5\r\nA: b\r\n\r\n",
            None,
            id="row-3-two-spaces-refused",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length:5\r\nA: b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\r\nContent-Length: 5\r\n\r\n",
            id="no-space-after-colon",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nA: b \r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\r\nContent-Length: 5\r\n\r\n",
            id="trailing-ows",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nA: \r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: \r\nContent-Length: 5\r\n\r\n",
            id="empty-value-left-to-the-rebuild",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nA:\tb\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\r\nContent-Length: 5\r\n\r\n",
            id="tab-after-colon",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ,chunked\r\nA: b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\r\nTransfer-Encoding: chunked\r\n\r\n",
            id="row-10-empty-list-element",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nA: b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\r\nTransfer-Encoding: chunked\r\n\r\n",
            id="te-case",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            id="hop-by-hop",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-A: 1\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            id="row-26-connection-names-a-field",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            id="server-closes",
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            id="http-1.0-server",
        ),
        pytest.param(
            b"HTTP/1.1 200\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 \r\nContent-Length: 5\r\n\r\n",
            id="no-reason",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nServer: x\r\nConnection: close\r\n\r\n",
            id="until-close",
        ),
        pytest.param(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nA: b\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nA: b\r\n\r\n",
            id="row-30-204-loses-content-length",
        ),
        pytest.param(
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nA: b\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nA: b\r\n\r\n",
            id="row-30-304-loses-transfer-encoding",
        ),
    ],
)
def test_a_response_that_changes_is_rebuilt(response: bytes, expected: bytes | None) -> None:
    if expected is None:
        with pytest.raises(ProtocolError):
            exchange(response)
        return
    assert exchange(response)[0] == expected


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 204 No Content\r\nA: b\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 615\r\nETag: x\r\n\r\n",
    ],
    ids=["204", "304-keeps-its-length"],
)
def test_bodiless_responses_that_need_nothing_go_out_as_received(response: bytes) -> None:
    assert exchange(response)[0] == response


def test_a_head_response_keeps_its_canonical_length_in_place() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 615\r\nA: b\r\n\r\n"
    out, head = exchange(data, b"HEAD http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n")
    assert head.framing.kind is KIND_NONE
    assert out == data


@pytest.mark.parametrize(
    ("request_bytes", "added"),
    [
        (b"GET http://a.example/ HTTP/1.0\r\nHost: a.example\r\n\r\n", b"Connection: close"),
        (
            b"GET http://a.example/ HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive\r\n\r\n",
            b"Connection: keep-alive",
        ),
        (
            b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
            b"Connection: close",
        ),
    ],
    ids=["http-1.0-client", "http-1.0-keep-alive", "client-close"],
)
def test_a_response_to_a_client_that_needs_a_connection_field_is_rebuilt(
    request_bytes: bytes, added: bytes
) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nA: b\r\n\r\n"
    out, _ = exchange(data, request_bytes)
    assert out == b"HTTP/1.1 200 OK\r\nA: b\r\nContent-Length: 5\r\n" + added + b"\r\n\r\n"


def test_a_chunked_response_to_an_http_1_0_client_is_rebuilt_without_framing() -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nA: b\r\n\r\n"
    out, _ = exchange(data, b"GET http://a.example/ HTTP/1.0\r\nHost: a.example\r\n\r\n")
    assert out == b"HTTP/1.1 200 OK\r\nA: b\r\nConnection: close\r\n\r\n"


def test_a_101_is_rebuilt() -> None:
    request = (
        b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n"
        b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    parser = RequestParser()
    parser.feed(request)
    req = parser.next_event()
    assert isinstance(req, RequestHead)
    data = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    head = parse_response(data, b"GET")
    out = response_out(req, head, True)[0]
    assert out == data  # the rebuild writes the same: both fields kept for the switch
    assert out == response_out(req, replace(head), True)[0]


def test_a_bare_lf_head_is_refused_not_forwarded() -> None:
    with pytest.raises(ProtocolError):
        exchange(b"HTTP/1.1 200 OK\nContent-Length: 5\n\n")


def test_an_edited_head_is_never_forwarded_raw() -> None:
    """``replace`` (how rules, hooks and the HTTP/2 bridge change a head)
    drops ``raw``: the edit goes out."""
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nA: b\r\n\r\n"
    _, head = exchange(data)
    assert head.raw is not None
    edited = replace(head, status=404, reason=b"Not Found")
    assert edited.raw is None
    request = client_request(b"GET", b"1.1", False)
    out = response_out(request, edited, False)[0]
    assert out == b"HTTP/1.1 404 Not Found\r\nA: b\r\nContent-Length: 5\r\n\r\n"


# -- requests ---------------------------------------------------------------------------------


def forwarded(data: bytes, config: SessionConfig = REGULAR) -> bytes:
    parser = RequestParser()
    parser.feed(data)
    head = parser.next_event()
    assert isinstance(head, RequestHead)
    target: Target
    if config.upstream is None:
        target = forward_target(head)
    else:
        up = config.upstream
        target = origin_target(head, up.scheme, up.host, up.port)
    return request_out(head, target, config)[0]


def test_a_forward_proxy_request_keeps_its_field_block() -> None:
    data = (
        b"POST http://a.example/p HTTP/1.1\r\nContent-Length: 3\r\nHost: a.example\r\nX: y\r\n\r\n"
    )
    out = forwarded(data)
    assert out == b"POST /p HTTP/1.1\r\nContent-Length: 3\r\nHost: a.example\r\nX: y\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            b"GET http://b.example/p HTTP/1.1\r\nHost: a.example\r\nX: y\r\n\r\n",
            b"GET /p HTTP/1.1\r\nHost: b.example\r\nX: y\r\n\r\n",
            id="row-23-host-rewritten",
        ),
        pytest.param(
            b"POST http://a.example/p HTTP/1.1\r\nContent-Length: 03\r\nHost: a.example\r\n\r\n",
            b"POST /p HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\n\r\n",
            id="row-4-leading-zero",
        ),
        pytest.param(
            b"GET http://a.example/p HTTP/1.1\r\nHost: a.example\r\n"
            b"Proxy-Connection: keep-alive\r\n\r\n",
            b"GET /p HTTP/1.1\r\nHost: a.example\r\n\r\n",
            id="hop-by-hop",
        ),
        pytest.param(
            b"GET http://a.example/p HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
            b"GET /p HTTP/1.1\r\nHost: a.example\r\n\r\n",
            id="connection-close",
        ),
        pytest.param(
            b"GET http://a.example/p HTTP/1.0\r\nUser-Agent: u\r\n\r\n",
            b"GET /p HTTP/1.1\r\nHost: a.example\r\nUser-Agent: u\r\n\r\n",
            id="http-1.0-without-host",
        ),
        pytest.param(
            b"GET http://a.example/p HTTP/1.1\r\nHost:a.example\r\n\r\n",
            b"GET /p HTTP/1.1\r\nHost: a.example\r\n\r\n",
            id="no-space-after-colon",
        ),
        pytest.param(
            b"GET http://a.example/p HTTP/1.1\r\nHost: a.example\r\n"
            b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET /p HTTP/1.1\r\nHost: a.example\r\n"
            b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            id="upgrade",
        ),
    ],
)
def test_a_request_that_changes_is_rebuilt(data: bytes, expected: bytes) -> None:
    assert forwarded(data) == expected


def test_an_http_1_0_request_with_host_keeps_its_block_and_closes() -> None:
    parser = RequestParser()
    parser.feed(b"GET http://a.example/p HTTP/1.0\r\nHost: a.example\r\n\r\n")
    head = parser.next_event()
    assert isinstance(head, RequestHead)
    out, upgrade, close = request_out(head, forward_target(head), REGULAR)
    assert out == b"GET /p HTTP/1.1\r\nHost: a.example\r\n\r\n"
    assert (upgrade, close) == (False, True)


def test_a_reverse_proxy_request_keeps_a_host_it_keeps() -> None:
    config = SessionConfig(upstream=Upstream("http", "127.0.0.1", 9000), keep_host=True)
    data = b"GET /p HTTP/1.1\r\nHost: site.example\r\nContent-Length: 0\r\n\r\n"
    assert forwarded(data, config) == data
    # Without keep_host the Host is the upstream's: rebuilt.
    assert forwarded(data, REVERSE) == (
        b"GET /p HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nContent-Length: 0\r\n\r\n"
    )


def test_a_rule_edited_request_is_rebuilt() -> None:
    parser = RequestParser()
    parser.feed(b"PUT http://a.example/p HTTP/1.1\r\nContent-Length: 3\r\nHost: a.example\r\n\r\n")
    head = parser.next_event()
    assert isinstance(head, RequestHead) and head.raw is not None
    edited = replace(head, framing=replace(head.framing, length=7))
    assert edited.framing.kind is KIND_LENGTH and edited.raw is None
    out = request_out(edited, forward_target(edited), REGULAR)[0]
    assert out == b"PUT /p HTTP/1.1\r\nHost: a.example\r\nContent-Length: 7\r\n\r\n"


# -- through the session (playbooks) ------------------------------------------------------------

PEER = ("127.0.0.1", 5000)
SERVER = ("127.0.0.1", 80)
S1 = server_conn(1)
POST = b"POST http://a.test/x HTTP/1.1\r\nContent-Length: 2\r\nHost: a.test\r\nX-A: 1\r\n\r\nhi"
POST_OUT = b"POST /x HTTP/1.1\r\nContent-Length: 2\r\nHost: a.test\r\nX-A: 1\r\n\r\n"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: s\r\nDate: d\r\n\r\n"


def session(rules_yaml: str | None = None) -> HttpSession:
    ids = (str(i) for i in itertools.count())
    clock = itertools.count(1000.0, 0.001)
    rules = None
    if rules_yaml is not None:
        loaded = load_sources([SourceText(Path("/t/rules.yaml"), rules_yaml)], rng=lambda: 0.0)
        rules = lambda: loaded  # noqa: E731
    config = SessionConfig(new_id=lambda: next(ids), clock=lambda: next(clock), rules=rules)
    return HttpSession(config, PEER)


def test_an_unchanged_exchange_goes_through_as_received() -> None:
    """Both heads keep their Content-Length first, where the peers put it."""
    assert (
        Playbook(session())
        >> DataReceived(CLIENT, POST)
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(S1, POST_OUT)
        << SendData(S1, b"hi")
        >> DataReceived(S1, ANSWER + b"ok")
        << SendData(CLIENT, ANSWER)
        << SendData(CLIENT, b"ok")
        << Match(Hook, kind=HookKind.DONE)
    )


def test_a_rule_edited_exchange_is_rebuilt() -> None:
    s = session(
        "version: 1\nrules:\n  - name: edit\n    match: {host: a.test}\n"
        "    request:\n      - set_header: {x-b: '2'}\n"
        "    response:\n      - set_header: {x-c: '3'}\n"
    )
    assert (
        Playbook(s)
        >> DataReceived(CLIENT, POST)
        << OpenServer(S1, "a.test", 80)
        >> ServerOpened(S1, SERVER, reused=False)
        << SendData(
            S1, b"POST /x HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\nx-b: 2\r\nContent-Length: 2\r\n\r\n"
        )
        << SendData(S1, b"hi")
        >> DataReceived(S1, ANSWER + b"ok")
        << SendData(
            CLIENT,
            b"HTTP/1.1 200 OK\r\nServer: s\r\nDate: d\r\nx-c: 3\r\nContent-Length: 2\r\n\r\n",
        )
        << SendData(CLIENT, b"ok")
        << Match(Hook, kind=HookKind.DONE)
    )
