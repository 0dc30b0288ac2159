"""Serialising (proxy/http1/writer.py): canonical framing, and round trips.

What the writer emits must parse back, with our own strict parser, into
exactly the message it was given: that is what lets the proxy re-frame every
message it forwards from its own parse (hazards 4, 10, 19, 21, 26).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.http1 import (
    CHUNKED,
    NO_BODY,
    UNTIL_CLOSE,
    BodyData,
    EndOfMessage,
    Event,
    Framing,
    FramingKind,
    RequestHead,
    ResponseHead,
)
from proxy.http1.parser import FORBIDDEN_TRAILERS
from proxy.http1.writer import (
    LAST_CHUNK,
    chunk,
    framed_fields,
    last_chunk,
    request_head,
    response_head,
)
from tests.unit.test_http1_parser import merge, parse


def length(n: int) -> Framing:
    return Framing(FramingKind.LENGTH, n)


FIELDS = [
    (b"Host", b"a"),
    (b"Content-Length", b"010"),
    (b"X-A", b"1"),
    (b"transfer-encoding", b",chunked"),
    (b"CONTENT-LENGTH", b"3"),
    (b"X-B", b"2"),
]


@pytest.mark.parametrize(
    ("framing", "expected"),
    [
        # Row 4: the length we computed, in decimal, never the sender's digits.
        pytest.param(
            length(10),
            [(b"Host", b"a"), (b"X-A", b"1"), (b"X-B", b"2"), (b"Content-Length", b"10")],
            id="row-04-length",
        ),
        # Row 10: one canonical Transfer-Encoding, never the received value.
        pytest.param(
            CHUNKED,
            [(b"Host", b"a"), (b"X-A", b"1"), (b"X-B", b"2"), (b"Transfer-Encoding", b"chunked")],
            id="row-10-chunked",
        ),
        pytest.param(NO_BODY, [(b"Host", b"a"), (b"X-A", b"1"), (b"X-B", b"2")], id="none"),
        pytest.param(UNTIL_CLOSE, [(b"Host", b"a"), (b"X-A", b"1"), (b"X-B", b"2")], id="close"),
    ],
)
def test_framed_fields_replaces_every_framing_field(
    framing: Framing, expected: list[tuple[bytes, bytes]]
) -> None:
    assert framed_fields(FIELDS, framing) == expected


def test_framed_fields_keeps_lookalikes() -> None:
    """Row 17: Transfer_Encoding is not framing and is not touched."""
    fields = [(b"Transfer_Encoding", b"chunked"), (b"Content_Length", b"5")]
    assert framed_fields(fields, length(0)) == [*fields, (b"Content-Length", b"0")]


def test_request_head_bytes() -> None:
    out = request_head(b"POST", b"/p?q", b"1.1", [(b"Host", b"a"), (b"Content-Length", b"10")])
    assert out == b"POST /p?q HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"


def test_response_head_bytes() -> None:
    assert response_head(b"1.1", 204, b"No Content", []) == b"HTTP/1.1 204 No Content\r\n\r\n"
    # An empty reason keeps the SP the status-line grammar requires (RFC 9112 §4).
    assert response_head(b"1.1", 200, b"", []) == b"HTTP/1.1 200 \r\n\r\n"


def test_chunk_and_last_chunk() -> None:
    assert b"".join(chunk(b"hello world!")) == b"c\r\nhello world!\r\n"
    assert last_chunk() == LAST_CHUNK == b"0\r\n\r\n"
    assert last_chunk(((b"X-T", b"1"),)) == b"0\r\nX-T: 1\r\n\r\n"


def test_empty_chunk_is_nothing_not_the_last_chunk() -> None:
    """A zero-size chunk *is* the last-chunk (RFC 9112 §7.1): writing one for
    empty data would end the body early and let what follows be read as a
    new request by the server."""
    assert chunk(b"") == []
    body = [*chunk(b"ab"), *chunk(b""), *chunk(b"cd"), last_chunk()]
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(body)
    events, status = parse([raw])
    assert status is None
    assert events[1:] == [BodyData(b"abcd"), EndOfMessage()]


def test_chunk_is_a_list_of_buffers_without_copying_the_data() -> None:
    data = b"x" * 100
    assert chunk(data)[1] is data


# -- round trips --------------------------------------------------------------------

TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VCHAR = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
_FRAMING_NAMES = {b"content-length", b"transfer-encoding"}

tokens = st.binary(min_size=1, max_size=12).map(lambda b: bytes(TCHAR[x % len(TCHAR)] for x in b))
field_names = tokens.filter(lambda n: n.lower() not in _FRAMING_NAMES)


@st.composite
def field_values(draw: st.DrawFn) -> bytes:
    """field-value: no leading or trailing whitespace, SP/HTAB inside."""
    inner = st.sampled_from([*(bytes([c]) for c in VCHAR[:40]), b"\x80", b"\xff", b" ", b"\t"])
    parts = draw(st.lists(inner, max_size=10))
    return b"".join(parts).strip(b" \t")


fields_st = st.lists(st.tuples(field_names, field_values()), max_size=6)
bodies = st.lists(st.binary(min_size=0, max_size=40), max_size=4)
trailer_names = field_names.filter(lambda n: n.lower() not in FORBIDDEN_TRAILERS)
trailers_st = st.lists(st.tuples(trailer_names, field_values()), max_size=3)


@st.composite
def targets(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["origin", "absolute", "asterisk"]))
    path = b"/" + draw(st.binary(max_size=20)).translate(bytes(0x21 + i % 94 for i in range(256)))
    if kind == "origin":
        return path
    if kind == "absolute":
        return b"http://h.example:8080" + path
    return b"*"


def body_events(pieces: list[bytes]) -> list[Event]:
    data = b"".join(pieces)
    return [BodyData(data)] if data else []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=tokens,
    target=targets(),
    version=st.sampled_from([b"1.0", b"1.1"]),
    fields=fields_st,
    kind=st.sampled_from(["none", "length", "chunked"]),
    pieces=bodies,
    trailers=trailers_st,
    split=st.integers(min_value=1, max_value=50),
)
def test_property_request_round_trip(
    method: bytes,
    target: bytes,
    version: bytes,
    fields: list[tuple[bytes, bytes]],
    kind: str,
    pieces: list[bytes],
    trailers: list[tuple[bytes, bytes]],
    split: int,
) -> None:
    if kind == "chunked" and version == b"1.0":
        kind = "length"  # no chunked in HTTP/1.0 (RFC 9112 §6.1)
    data = b"".join(pieces)
    framing = {"none": NO_BODY, "length": length(len(data)), "chunked": CHUNKED}[kind]
    out_fields = framed_fields(fields, framing)
    raw = request_head(method, target, version, out_fields)
    body: list[Event] = []
    end = EndOfMessage()
    if kind == "length":
        raw += data
        body = body_events(pieces)
    elif kind == "chunked":
        raw += b"".join(b"".join(chunk(p)) for p in pieces) + last_chunk(tuple(trailers))
        body = body_events(pieces)
        end = EndOfMessage(tuple(trailers))
    head = RequestHead(method, target, version, tuple(out_fields), framing)
    expected = ([head, *body, end], None)
    assert parse([raw]) == expected
    assert parse([raw[i : i + split] for i in range(0, len(raw), split)]) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.integers(min_value=100, max_value=599),
    reason=field_values(),
    version=st.sampled_from([b"1.0", b"1.1"]),
    fields=fields_st,
    kind=st.sampled_from(["length", "chunked", "close"]),
    method=st.sampled_from([b"GET", b"HEAD", b"POST"]),
    pieces=bodies,
    trailers=trailers_st,
)
def test_property_response_round_trip(
    status: int,
    reason: bytes,
    version: bytes,
    fields: list[tuple[bytes, bytes]],
    kind: str,
    method: bytes,
    pieces: list[bytes],
    trailers: list[tuple[bytes, bytes]],
) -> None:
    if status == 101:
        status = 200  # a tunnel, tested in test_http1_parser.py
    if kind == "chunked" and version == b"1.0":
        kind = "length"
    data = b"".join(pieces)
    framing = {"length": length(len(data)), "chunked": CHUNKED, "close": UNTIL_CLOSE}[kind]
    raw = response_head(version, status, reason, framed_fields(fields, framing))
    bodiless = method == b"HEAD" or status < 200 or status in (204, 304)
    parsed_framing = NO_BODY if bodiless else framing
    expected: list[Event] = [
        ResponseHead(version, status, reason, tuple(framed_fields(fields, framing)), parsed_framing)
    ]
    if not bodiless:
        if kind == "chunked":
            raw += b"".join(b"".join(chunk(p)) for p in pieces) + last_chunk(tuple(trailers))
            expected += [*body_events(pieces), EndOfMessage(tuple(trailers))]
        else:
            raw += data
            expected += [*body_events(pieces), EndOfMessage()]
    elif not 100 <= status < 200:
        expected.append(EndOfMessage())
    # A 1xx head is followed by the final response, so no EndOfMessage yet.
    eof = kind == "close" and not bodiless
    assert parse([raw], response_to=[method], eof=eof) == (merge(expected), None)
