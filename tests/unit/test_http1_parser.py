"""The HTTP/1 parsers, table-driven (RFC 9112; ../shared/http1-hazards.md).

Every table row is ``pytest.param(raw, expected, id=...)``: ``raw`` is fed
to a fresh parser and ``expected`` is what comes out, as an ``Outcome``: the
events (adjacent ``BodyData`` merged, since how a body is cut into events
depends on reads) and the status of the ``ProtocolError`` that ended parsing,
or ``None``. Hazard-table rows that belong to the codec have ids ``row-NN-*``;
rows 22-26 (target, Host, hop-by-hop) are in test_http1_session.py and every
row is also sent through a running proxy in tests/integration/test_hazards.py.

Each outcome must not depend on how the bytes were split into reads: every
table is also run one byte at a time, at every single split point, and in
random splits.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.http1 import (
    CHUNKED,
    DEFAULT_LIMITS,
    NO_BODY,
    TUNNEL,
    UNTIL_CLOSE,
    BodyData,
    EndOfMessage,
    Event,
    Fields,
    Framing,
    FramingKind,
    Limits,
    ProtocolError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)
from proxy.http1.scan import has_bare_cr_or_lf as _has_bare_cr_or_lf

Outcome = tuple[list[Event], int | None]

# -- helpers -------------------------------------------------------------------


def merge(events: Iterable[Event]) -> list[Event]:
    """Adjacent BodyData joined: the same message however it was read."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, BodyData) and out and isinstance(out[-1], BodyData):
            out[-1] = BodyData(out[-1].data + e.data)
        else:
            out.append(e)
    return out


def drain(parser: RequestParser | ResponseParser, into: list[Event]) -> None:
    while (event := parser.next_event()) is not None:
        # The parser never hands out an empty body piece (a writer would
        # turn it into the last-chunk).
        assert not (isinstance(event, BodyData) and not event.data), "empty BodyData"
        into.append(event)


def parse(
    pieces: Iterable[bytes],
    *,
    response_to: Sequence[bytes] | None = None,
    eof: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> Outcome:
    """Feed ``pieces`` (one read each), draining events after every read.

    ``response_to``: parse responses to requests with these methods instead.
    """
    parser: RequestParser | ResponseParser
    if response_to is None:
        parser = RequestParser(limits)
    else:
        parser = ResponseParser(limits)
        for method in response_to:
            parser.expect(method)
    events: list[Event] = []
    try:
        for piece in pieces:
            parser.feed(piece)
            drain(parser, events)
        if eof:
            parser.feed_eof()
            drain(parser, events)
    except ProtocolError as e:
        return merge(events), e.status
    return merge(events), None


def bytewise(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


def random_splits(raw: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, rng.randint(1, 12))))
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]


def assert_split_invariant(raw: bytes, expected: Outcome, **kw: object) -> None:
    """The outcome of ``raw`` is ``expected`` however the bytes are split:
    whole, one byte at a time, at every single split point, at random ones."""
    assert parse([raw], **kw) == expected  # type: ignore[arg-type]
    assert parse(bytewise(raw), **kw) == expected, "fed one byte at a time"  # type: ignore[arg-type]
    if len(raw) <= 2000:
        for i in range(1, len(raw)):
            assert parse([raw[:i], raw[i:]], **kw) == expected, f"split at {i}"  # type: ignore[arg-type]
    rng = random.Random(raw)
    for _ in range(20):
        pieces = random_splits(raw, rng) if len(raw) > 1 else [raw]
        assert parse(pieces, **kw) == expected, f"split as {[len(p) for p in pieces]}"  # type: ignore[arg-type]


def rq(
    method: bytes = b"GET",
    target: bytes = b"/",
    fields: Fields = ((b"Host", b"a"),),
    framing: Framing = NO_BODY,
    version: bytes = b"1.1",
) -> RequestHead:
    return RequestHead(method, target, version, fields, framing)


def rs(
    status: int = 200,
    reason: bytes = b"OK",
    fields: Fields = (),
    framing: Framing = NO_BODY,
    version: bytes = b"1.1",
) -> ResponseHead:
    return ResponseHead(version, status, reason, fields, framing)


def length(n: int) -> Framing:
    return Framing(FramingKind.LENGTH, n)


EOM = EndOfMessage()
H = (b"Host", b"a")


def ok(*events: Event) -> Outcome:
    return list(events), None


def rejected(status: int = 400, *before: Event) -> Outcome:
    return list(before), status


def post(*lines: bytes, body: bytes = b"", version: bytes = b"1.1") -> bytes:
    """A POST / with Host and the given field lines (raw, no CRLF)."""
    head = b"POST / HTTP/" + version + b"\r\nHost: a\r\n" + b"".join(x + b"\r\n" for x in lines)
    return head + b"\r\n" + body


def with_cl(value: bytes, body: bytes = b"") -> bytes:
    return post(b"Content-Length:" + value, body=body)


def with_te(value: bytes, body: bytes = b"0\r\n\r\n") -> bytes:
    return post(b"Transfer-Encoding:" + value, body=body)


def chunked_post(body: bytes) -> bytes:
    return with_te(b" chunked", body)


def chunked_head(te: bytes = b"chunked") -> RequestHead:
    return rq(b"POST", fields=(H, (b"Transfer-Encoding", te)), framing=CHUNKED)


def cl_head(value: bytes, n: int) -> RequestHead:
    return rq(b"POST", fields=(H, (b"Content-Length", value)), framing=length(n))


# -- valid requests ------------------------------------------------------------------

VALID_REQUESTS = [
    pytest.param(
        b"GET /p/q?x=1&y=%20 HTTP/1.1\r\nHost: a\r\n\r\n",
        ok(rq(target=b"/p/q?x=1&y=%20"), EOM),
        id="origin-form",
    ),
    pytest.param(
        b"GET http://a:8080/p?q HTTP/1.1\r\nHost: a:8080\r\n\r\n",
        ok(rq(target=b"http://a:8080/p?q", fields=((b"Host", b"a:8080"),)), EOM),
        id="absolute-form",
    ),
    pytest.param(
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
        ok(rq(b"CONNECT", b"a.example:443", ((b"Host", b"a.example:443"),)), EOM),
        id="authority-form",
    ),
    pytest.param(
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        ok(rq(b"OPTIONS", b"*"), EOM),
        id="asterisk-form",
    ),
    pytest.param(
        with_cl(b" 5", b"hello"),
        ok(cl_head(b"5", 5), BodyData(b"hello"), EOM),
        id="content-length",
    ),
    pytest.param(
        with_cl(b"5", b"hello"),
        ok(cl_head(b"5", 5), BodyData(b"hello"), EOM),
        id="content-length-no-space",
    ),
    pytest.param(
        with_cl(b" 0"),
        ok(cl_head(b"0", 0), EOM),
        id="content-length-zero",
    ),
    pytest.param(
        chunked_post(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        ok(chunked_head(), BodyData(b"hello world"), EOM),
        id="chunked",
    ),
    pytest.param(
        chunked_post(
            b'5;name=value\r\nhello\r\n6 ; q="a \\"b\\"" ;r\r\n world\r\n'
            b"0;last\r\nX-Checksum: abc\r\nX-Other:  1 \r\n\r\n"
        ),
        ok(
            chunked_head(),
            BodyData(b"hello world"),
            EndOfMessage(((b"X-Checksum", b"abc"), (b"X-Other", b"1"))),
        ),
        id="chunked-extensions-and-trailers",
    ),
    pytest.param(
        chunked_post(b"000A\r\n0123456789\r\nb\r\n0123456789a\r\n00\r\n\r\n"),
        ok(chunked_head(), BodyData(b"01234567890123456789a"), EOM),
        id="chunked-hex-case-and-leading-zeros",
    ),
    pytest.param(
        with_te(b" CHUNKED"),
        ok(chunked_head(b"CHUNKED"), EOM),
        id="chunked-case-insensitive",
    ),
    pytest.param(
        b"GET / HTTP/1.0\r\n\r\n",
        ok(rq(fields=(), version=b"1.0"), EOM),
        id="http-1.0-without-host",
    ),
    pytest.param(
        b"GET / HTTP/1.9\r\nHost: a\r\n\r\n",
        ok(rq(), EOM),
        id="higher-minor-is-1.1",
    ),
    pytest.param(
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ok(rq(), EOM),
        id="leading-empty-lines-ignored",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nhOsT:   a \t\r\nX-Empty:\r\nX-Space: \r\nX-Obs: caf\xe9\r\n"
        b"X-Inner: a  b\tc\r\nx-dup: 1\r\nX-DUP: 2\r\n\r\n",
        ok(
            rq(
                fields=(
                    (b"hOsT", b"a"),
                    (b"X-Empty", b""),
                    (b"X-Space", b""),
                    (b"X-Obs", b"caf\xe9"),
                    (b"X-Inner", b"a  b\tc"),
                    (b"x-dup", b"1"),
                    (b"X-DUP", b"2"),
                )
            ),
            EOM,
        ),
        id="fields-case-order-and-ows",
    ),
    pytest.param(
        b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
        ok(rq(b"HEAD"), EOM),
        id="head",
    ),
]

PIPELINED = (
    b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
    b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    b"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1\r\nx\r\n0\r\nX-T: 1\r\n\r\n"
    b"\r\n"
    b"GET /4 HTTP/1.0\r\n\r\n"
)
PIPELINED_EVENTS = ok(
    rq(target=b"/1"),
    EOM,
    rq(b"POST", b"/2", (H, (b"Content-Length", b"3")), length(3)),
    BodyData(b"abc"),
    EOM,
    rq(b"POST", b"/3", (H, (b"Transfer-Encoding", b"chunked")), CHUNKED),
    BodyData(b"x"),
    EndOfMessage(((b"X-T", b"1"),)),
    rq(target=b"/4", fields=(), version=b"1.0"),
    EOM,
)
VALID_REQUESTS.append(pytest.param(PIPELINED, PIPELINED_EVENTS, id="pipelined"))


@pytest.mark.parametrize(("raw", "expected"), VALID_REQUESTS)
def test_valid_request(raw: bytes, expected: Outcome) -> None:
    assert_split_invariant(raw, expected)


def test_body_bytes_are_passed_through_without_copy() -> None:
    p = RequestParser()
    p.feed(with_cl(b" 10"))
    assert isinstance(p.next_event(), RequestHead)
    data = b"0123456789"
    p.feed(data)
    event = p.next_event()
    assert isinstance(event, BodyData) and event.data is data


def test_connect_leaves_tunnel_bytes_for_take_remaining() -> None:
    p = RequestParser()
    p.feed(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01\x00")
    head = p.next_event()
    assert isinstance(head, RequestHead) and head.framing is NO_BODY
    assert p.take_remaining() == b"\x16\x03\x01\x00"


def test_eof_between_requests_is_clean() -> None:
    assert parse([b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\n"], eof=True) == ok(rq(), EOM)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n", id="in-head"),
        pytest.param(with_cl(b" 5", b"hel"), id="in-length-body"),
        pytest.param(chunked_post(b"5\r\nhel"), id="in-chunk-data"),
        pytest.param(chunked_post(b"5"), id="in-chunk-size"),
        pytest.param(chunked_post(b"5\r\nhello"), id="before-chunk-crlf"),
        pytest.param(chunked_post(b"0\r\n"), id="before-last-crlf"),
        pytest.param(chunked_post(b"0\r\nX: 1\r\n"), id="in-trailers"),
    ],
)
def test_eof_inside_a_request_is_an_error(raw: bytes) -> None:
    events, status = parse([raw], eof=True)
    assert status == 400
    assert EOM not in events


# -- valid responses -------------------------------------------------------------------

VALID_RESPONSES = [
    # A field value's leading and trailing whitespace is SP or HTAB (RFC 9110
    # §5.5): one such octet on each side of a framing value is accepted.
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length:\t2\t\r\n\r\nok",
        [b"GET"],
        ok(rs(fields=((b"Content-Length", b"2"),), framing=length(2)), BodyData(b"ok"), EOM),
        id="content-length-ows-tabs",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        [b"GET"],
        ok(rs(fields=((b"Content-Length", b"2"),), framing=length(2)), BodyData(b"ok"), EOM),
        id="content-length",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
        [b"GET"],
        ok(
            rs(fields=((b"Transfer-Encoding", b"chunked"),), framing=CHUNKED),
            BodyData(b"ok"),
            EndOfMessage(((b"X-T", b"1"),)),
        ),
        id="chunked-with-trailer",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nuntil close",
        [b"GET"],
        ok(rs(fields=((b"Server", b"x"),), framing=UNTIL_CLOSE), BodyData(b"until close"), EOM),
        id="close-delimited",
    ),
    pytest.param(
        b"HTTP/1.0 200 OK\r\n\r\nold",
        [b"GET"],
        ok(rs(framing=UNTIL_CLOSE, version=b"1.0"), BodyData(b"old"), EOM),
        id="http-1.0-close-delimited",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz",
        [b"GET"],
        ok(
            rs(fields=((b"Transfer-Encoding", b"gzip"),), framing=UNTIL_CLOSE), BodyData(b"zz"), EOM
        ),
        id="final-coding-not-chunked-reads-until-close",  # RFC 9112 §6.3 (4)
    ),
    pytest.param(
        b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        [b"GET"],
        ok(rs(reason=b"", fields=((b"Content-Length", b"0"),), framing=length(0)), EOM),
        id="no-reason-phrase",
    ),
    pytest.param(
        b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n",
        [b"GET"],
        ok(rs(404, b"", ((b"Content-Length", b"0"),), length(0)), EOM),
        id="empty-reason-phrase",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n\r\n",
        [b"GET", b"HEAD", b"DELETE"],
        ok(
            rs(fields=((b"Content-Length", b"2"),), framing=length(2)),
            BodyData(b"ok"),
            EOM,
            rs(fields=((b"Content-Length", b"9"),)),
            EOM,
            rs(204, b"No Content"),
            EOM,
        ),
        id="pipelined-get-head-delete",
    ),
    pytest.param(
        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 1\r\n\r\nx",
        [b"CONNECT"],
        ok(
            rs(407, b"Proxy Authentication Required", ((b"Content-Length", b"1"),), length(1)),
            BodyData(b"x"),
            EOM,
        ),
        id="connect-refused-has-a-body",
    ),
]


@pytest.mark.parametrize(("raw", "methods", "expected"), VALID_RESPONSES)
def test_valid_response(raw: bytes, methods: list[bytes], expected: Outcome) -> None:
    assert_split_invariant(raw, expected, response_to=methods, eof=True)


@pytest.mark.parametrize(
    ("raw", "method", "status"),
    [
        pytest.param(
            b"HTTP/1.1 200 Connection established\r\n\r\n", b"CONNECT", 200, id="connect-2xx"
        ),
        pytest.param(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n",
            b"GET",
            101,
            id="101",
        ),
    ],
)
def test_tunnel_responses_hand_over_the_rest(raw: bytes, method: bytes, status: int) -> None:
    p = ResponseParser()
    p.expect(method)
    p.feed(raw + b"\x81\x05hello")
    head = p.next_event()
    assert isinstance(head, ResponseHead) and head.status == status and head.framing is TUNNEL
    assert p.next_event() is None  # opaque bytes are not parsed
    assert p.take_remaining() == b"\x81\x05hello"


def test_response_eof_before_any_byte() -> None:
    assert parse([], response_to=[b"GET"], eof=True) == rejected(502)


def test_response_parser_idle_until_expect() -> None:
    p = ResponseParser()
    assert p.next_event() is None and p.pending == 0
    p.expect(b"GET")
    p.feed(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert isinstance(p.next_event(), ResponseHead)
    assert p.next_event() == EOM
    assert p.pending == 0 and p.at_message_start


# -- the hazard table, request side --------------------------------------------------------

HAZARD_REQUESTS = [
    # 1: CL and TE both present: reject (§6.3 (3)), whatever the order.
    pytest.param(
        post(b"Content-Length: 5", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
        rejected(),
        id="row-01-cl-then-te",
    ),
    pytest.param(
        post(b"Transfer-Encoding: chunked", b"Content-Length: 5", body=b"0\r\n\r\n"),
        rejected(),
        id="row-01-te-then-cl",
    ),
    pytest.param(
        post(b"Content-Length: 0", b"Transfer-Encoding: chunked"),
        rejected(),
        id="row-01-cl-zero-and-te",
    ),
    # 2: several Content-Length: refused even when they agree (§6.3 (5) lets
    # a recipient accept identical ones; we never do).
    pytest.param(
        post(b"Content-Length: 1", b"Content-Length: 2", body=b"ab"),
        rejected(),
        id="row-02-two-values",
    ),
    pytest.param(
        post(b"Content-Length: 5", b"Content-Length: 5", body=b"hello"),
        rejected(),
        id="row-02-two-equal",
    ),
    pytest.param(with_cl(b" 1, 2", b"ab"), rejected(), id="row-02-list"),
    pytest.param(with_cl(b" 5, 5", b"hello"), rejected(), id="row-02-equal-list"),
    pytest.param(
        post(b"content-length: 1", b"CONTENT-LENGTH: 1", body=b"a"),
        rejected(),
        id="row-02-case-variants",
    ),
    # 3: Content-Length not 1*DIGIT.
    pytest.param(with_cl(b" +3", b"abc"), rejected(), id="row-03-plus"),
    pytest.param(with_cl(b" -1"), rejected(), id="row-03-minus"),
    pytest.param(with_cl(b" 0x10"), rejected(), id="row-03-hex"),
    pytest.param(with_cl(b" 1_0"), rejected(), id="row-03-underscore"),
    pytest.param(with_cl(b"  3 ", b"abc"), rejected(), id="row-03-surrounding-spaces"),
    pytest.param(with_cl(b"\t\t3", b"abc"), rejected(), id="row-03-two-leading-tabs"),
    pytest.param(with_cl(b" 3\t\t", b"abc"), rejected(), id="row-03-two-trailing-tabs"),
    pytest.param(with_cl(b" 3 \t", b"abc"), rejected(), id="row-03-trailing-space-and-tab"),
    # ... but one OWS octet, SP or HTAB, on each side is a field value's own
    # whitespace (RFC 9110 §5.5), not part of the number.
    pytest.param(
        with_cl(b"\t81\t", b"x" * 81),
        ok(cl_head(b"81", 81), BodyData(b"x" * 81), EOM),
        id="row-03-ows-tab-both-sides-accepted",
    ),
    pytest.param(
        with_cl(b" 3 ", b"abc"),
        ok(cl_head(b"3", 3), BodyData(b"abc"), EOM),
        id="row-03-ows-trailing-space-accepted",
    ),
    pytest.param(
        with_cl(b"\t3", b"abc"),
        ok(cl_head(b"3", 3), BodyData(b"abc"), EOM),
        id="row-03-ows-leading-tab-accepted",
    ),
    pytest.param(with_cl(b" 3 3", b"abc"), rejected(), id="row-03-two-numbers"),
    pytest.param(with_cl(b" 1.0", b"a"), rejected(), id="row-03-decimal"),
    pytest.param(with_cl(b""), rejected(), id="row-03-empty"),
    pytest.param(with_cl(b" "), rejected(), id="row-03-blank"),
    pytest.param(with_cl(b" \x0c3", b"abc"), rejected(), id="row-03-form-feed"),
    pytest.param(with_cl(b" 3\x0b", b"abc"), rejected(), id="row-03-vertical-tab"),
    pytest.param(with_cl(b" \xd9\xa3"), rejected(), id="row-03-arabic-indic-digit"),
    pytest.param(with_cl(b" \xef\xbc\x93"), rejected(), id="row-03-fullwidth-digit"),
    pytest.param(with_cl(b" 9223372036854775808"), rejected(), id="row-03-2-pow-63"),
    pytest.param(with_cl(b" 99999999999999999999999"), rejected(), id="row-03-huge"),
    pytest.param(
        with_cl(b" 9223372036854775807"),
        ok(cl_head(b"9223372036854775807", 2**63 - 1)),
        id="row-03-largest-accepted",
    ),
    # 4: leading zeros are decimal: the framing says 10 (the writer then
    # emits "Content-Length: 10", test_http1_writer.py); the field keeps the
    # sender's bytes for the flow record.
    pytest.param(
        with_cl(b" 010", b"0123456789"),
        ok(cl_head(b"010", 10), BodyData(b"0123456789"), EOM),
        id="row-04-leading-zero",
    ),
    pytest.param(
        with_cl(b" 000000000000000000000000005", b"hello"),
        ok(cl_head(b"000000000000000000000000005", 5), BodyData(b"hello"), EOM),
        id="row-04-many-leading-zeros",
    ),
    # 5: final coding not chunked: 400 (§6.3 (4)).
    pytest.param(with_te(b" gzip"), rejected(), id="row-05-gzip"),
    pytest.param(with_te(b" chunked, gzip"), rejected(), id="row-05-chunked-then-gzip"),
    pytest.param(with_te(b" deflate"), rejected(), id="row-05-deflate"),
    # ... and a chunked-final list with a coding we don't implement: 501 (§6.1).
    pytest.param(with_te(b" gzip, chunked"), rejected(501), id="row-05-gzip-then-chunked-501"),
    # 6: unknown codings. The table allows 501 or 400: an unknown *final*
    # coding means the length cannot be determined, so §6.3 (4)'s 400 wins.
    pytest.param(with_te(b" xchunked"), rejected(400), id="row-06-xchunked"),
    pytest.param(with_te(b" chunk"), rejected(400), id="row-06-chunk"),
    pytest.param(with_te(b" identity"), rejected(400), id="row-06-identity"),
    pytest.param(with_te(b" chunkedx"), rejected(400), id="row-06-chunkedx"),
    pytest.param(with_te(b" x, chunked"), rejected(501), id="row-06-unknown-then-chunked-501"),
    # 7: obfuscated Transfer-Encoding values.
    pytest.param(with_te(b"  chunked"), rejected(), id="row-07-extra-leading-space"),
    pytest.param(with_te(b"\t chunked"), rejected(), id="row-07-tab-then-space"),
    pytest.param(with_te(b" chunked\t\t"), rejected(), id="row-07-two-trailing-tabs"),
    pytest.param(with_te(b" chunked  "), rejected(), id="row-07-two-trailing-spaces"),
    # Unlike Content-Length, no OWS but one leading SP: the table refuses these.
    pytest.param(with_te(b"\tchunked"), rejected(), id="row-07-leading-tab"),
    pytest.param(with_te(b" chunked\t"), rejected(), id="row-07-trailing-tab"),
    pytest.param(with_te(b" chunked "), rejected(), id="row-07-trailing-space"),
    pytest.param(with_te(b"\tchunked\t"), rejected(), id="row-07-tabs-both-sides"),
    pytest.param(with_te(b" \x0bchunked"), rejected(), id="row-07-vertical-tab"),
    pytest.param(with_te(b" \x0cchunked"), rejected(), id="row-07-form-feed"),
    pytest.param(with_te(b' "chunked"'), rejected(), id="row-07-quoted"),
    pytest.param(with_te(b" chun\xe2\x84\xaaed"), rejected(), id="row-07-kelvin-sign"),
    pytest.param(with_te(b" ch\xc3\xbcnked"), rejected(), id="row-07-non-ascii"),
    pytest.param(with_te(b" chunked\xa0"), rejected(), id="row-07-nbsp"),
    pytest.param(with_te(b" c hunked"), rejected(), id="row-07-inner-space"),
    pytest.param(with_te(b" chunked;q=1"), rejected(), id="row-07-parameter"),
    # 8: chunked twice.
    pytest.param(with_te(b" chunked, chunked"), rejected(), id="row-08-chunked-chunked"),
    pytest.param(with_te(b" chunked,chunked"), rejected(), id="row-08-no-space"),
    pytest.param(
        post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
        rejected(),
        id="row-08-two-lines",
    ),
    pytest.param(
        post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity", body=b"0\r\n\r\n"),
        rejected(),
        id="row-08-two-lines-different",
    ),
    # 9: TE in HTTP/1.0, with or without CL.
    pytest.param(
        post(b"Transfer-Encoding: chunked", body=b"0\r\n\r\n", version=b"1.0"),
        rejected(),
        id="row-09-http-1.0",
    ),
    pytest.param(
        post(b"Transfer-Encoding: chunked", b"Content-Length: 5", body=b"hello", version=b"1.0"),
        rejected(),
        id="row-09-http-1.0-with-cl",
    ),
    # 10: empty list elements are dropped; the framing is plain chunked (the
    # writer re-emits "Transfer-Encoding: chunked", never this value).
    pytest.param(
        with_te(b" ,chunked"), ok(chunked_head(b",chunked"), EOM), id="row-10-leading-comma"
    ),
    pytest.param(
        with_te(b" , chunked"), ok(chunked_head(b", chunked"), EOM), id="row-10-comma-space"
    ),
    pytest.param(
        with_te(b" ,,chunked"), ok(chunked_head(b",,chunked"), EOM), id="row-10-two-commas"
    ),
    # A trailing comma is refused (strict; §5.6.1 would allow it).
    pytest.param(with_te(b" chunked,"), rejected(), id="row-10-trailing-comma-refused"),
    pytest.param(with_te(b" ,"), rejected(), id="row-10-only-comma"),
    # 11: whitespace between field name and colon.
    pytest.param(
        post(b"Transfer-Encoding : chunked", body=b"0\r\n\r\n"), rejected(), id="row-11-te-space"
    ),
    pytest.param(
        post(b"Transfer-Encoding\t: chunked", body=b"0\r\n\r\n"), rejected(), id="row-11-te-tab"
    ),
    pytest.param(post(b"Content-Length : 5", body=b"hello"), rejected(), id="row-11-cl-space"),
    pytest.param(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", rejected(), id="row-11-host-space"),
    # 12: obs-fold, or whitespace before the first field line: rejected.
    pytest.param(post(b"X-A: 1", b" folded"), rejected(), id="row-12-obs-fold-space"),
    pytest.param(post(b"X-A: 1", b"\tfolded"), rejected(), id="row-12-obs-fold-tab"),
    pytest.param(
        post(b"Transfer-Encoding: gzip", b" ,chunked", body=b"0\r\n\r\n"),
        rejected(),
        id="row-12-folded-te",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n0\r\n\r\n",
        rejected(),
        id="row-12-space-before-first-field",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", rejected(), id="row-12-tab-before-first-field"
    ),
    # 13: bare CR anywhere in the head.
    pytest.param(b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", rejected(), id="row-13-in-request-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", rejected(), id="row-13-in-value"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n", rejected(), id="row-13-before-crlf"
    ),
    pytest.param(b"GET / HTTP/1.1\rHost: a\r\n\r\n", rejected(), id="row-13-as-line-end"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", rejected(), id="row-13-in-blank-line"),
    pytest.param(
        chunked_post(b"5\r;a\r\nhello\r\n0\r\n\r\n"),
        rejected(400, chunked_head()),
        id="row-13-chunk-line",
    ),
    # 14: bare LF line endings, in the head or in chunk lines.
    pytest.param(b"GET / HTTP/1.1\nHost: a\n\n", rejected(), id="row-14-head-all-lf"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\n\r\n", rejected(), id="row-14-one-field-lf"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\n", rejected(), id="row-14-blank-line-lf"),
    pytest.param(
        b"GET / HTTP/1.1\r\nX: 1\nTransfer-Encoding: chunked\r\nHost: a\r\n\r\n",
        rejected(),
        id="row-14-hidden-field",
    ),
    pytest.param(
        chunked_post(b"5\nhello\r\n0\r\n\r\n"),
        rejected(400, chunked_head()),
        id="row-14-chunk-size-lf",
    ),
    pytest.param(
        chunked_post(b"5\r\nhello\n0\r\n\r\n"),
        rejected(400, chunked_head(), BodyData(b"hello")),
        id="row-14-after-chunk-data-lf",
    ),
    pytest.param(
        chunked_post(b"0\n\r\n"), rejected(400, chunked_head()), id="row-14-last-chunk-lf"
    ),
    pytest.param(
        chunked_post(b"0\r\nX: 1\n\r\n"), rejected(400, chunked_head()), id="row-14-trailer-lf"
    ),
    pytest.param(chunked_post(b"0\r\n\n"), rejected(400, chunked_head()), id="row-14-final-lf"),
    # 15: CR, LF, NUL (and other controls) in a value.
    pytest.param(post(b"X: a\x00b"), rejected(), id="row-15-nul"),
    pytest.param(post(b"X: a\x00"), rejected(), id="row-15-trailing-nul"),
    pytest.param(post(b"X: a\rb"), rejected(), id="row-15-cr"),
    pytest.param(post(b"X: a\nb"), rejected(), id="row-15-lf"),
    pytest.param(post(b"X: a\x01b"), rejected(), id="row-15-soh"),
    pytest.param(post(b"X: a\x7fb"), rejected(), id="row-15-del"),
    pytest.param(post(b"X: a\x1bb"), rejected(), id="row-15-esc"),
    # obs-text (0x80-0xFF) is allowed in values (RFC 9110 §5.5).
    pytest.param(
        post(b"X: \x80\xff"),
        ok(rq(b"POST", fields=(H, (b"X", b"\x80\xff"))), EOM),
        id="row-15-obs-text-ok",
    ),
    # 16: field names that are not tokens.
    pytest.param(post(b"X\x85: 1"), rejected(), id="row-16-nel"),
    pytest.param(post(b"X\xa0Y: 1"), rejected(), id="row-16-nbsp"),
    pytest.param(post(b"\xe2\x84\xaaey: 1"), rejected(), id="row-16-kelvin"),
    pytest.param(post(b": 1"), rejected(), id="row-16-empty-name"),
    pytest.param(post(b"Host a"), rejected(), id="row-16-missing-colon"),
    pytest.param(post(b"X Y: 1"), rejected(), id="row-16-space-in-name"),
    pytest.param(post(b"X(Y): 1"), rejected(), id="row-16-separator"),
    pytest.param(post(b'X"Y: 1'), rejected(), id="row-16-quote"),
    pytest.param(post(b"X/Y: 1"), rejected(), id="row-16-slash"),
    # 17: underscores: an ordinary unknown field, never framing.
    pytest.param(
        post(b"Transfer_Encoding: chunked", b"Content-Length: 5", body=b"hello"),
        ok(
            rq(
                b"POST",
                fields=(H, (b"Transfer_Encoding", b"chunked"), (b"Content-Length", b"5")),
                framing=length(5),
            ),
            BodyData(b"hello"),
            EOM,
        ),
        id="row-17-transfer-underscore-encoding",
    ),
    pytest.param(
        post(b"Content_Length: 5"),
        ok(rq(b"POST", fields=(H, (b"Content_Length", b"5"))), EOM),
        id="row-17-content-underscore-length",
    ),
    # ... so a chunked body behind it is read as the next request: "5" is
    # not a request-line.
    pytest.param(
        post(b"Transfer_Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n"),
        rejected(400, rq(b"POST", fields=(H, (b"Transfer_Encoding", b"chunked"))), EOM),
        id="row-17-body-is-next-request",
    ),
    # 18: bad chunk sizes.
    *[
        pytest.param(
            chunked_post(line + b"\r\nhello\r\n0\r\n\r\n"),
            rejected(400, chunked_head()),
            id=f"row-18-{name}",
        )
        for name, line in [
            ("0x-prefix", b"0x5"),
            ("plus", b"+5"),
            ("minus", b"-5"),
            ("leading-space", b" 5"),
            ("trailing-space", b"5 "),
            ("trailing-tab", b"5\t"),
            ("underscore", b"0_5"),
            ("empty", b""),
            ("non-hex", b"g"),
            ("fullwidth", b"\xef\xbc\x95"),
            ("overflow-16-digits", b"ffffffffffffffff"),
            ("overflow-2-pow-63", b"8000000000000000"),
            ("overflow-17-digits", b"00000000000000005"),
        ]
    ],
    # 19: bad chunk extensions (valid ones are accepted and dropped, see
    # "chunked-extensions-and-trailers" above).
    *[
        pytest.param(
            chunked_post(line + b"\r\nhello\r\n0\r\n\r\n"),
            rejected(400, chunked_head()),
            id=f"row-19-{name}",
        )
        for name, line in [
            ("bare-semicolon", b"5;"),
            ("double-semicolon", b"5;;a"),
            ("nul", b"5;a\x00"),
            ("nul-in-value", b"5;a=b\x00c"),
            ("bad-token", b"5;a@b"),
            ("no-name", b"5;=b"),
            ("empty-value", b"5;a="),
            ("unterminated-quote", b'5;a="b'),
            ("quote-then-junk", b'5;a="b"c'),
            ("non-ascii-name", b"5;\xe2\x84\xaa"),
            ("too-long", b"5;a=" + b"b" * DEFAULT_LIMITS.max_chunk_line),
        ]
    ],
    # 20: chunk data longer or shorter than its size, or no CRLF after it.
    # The data of a chunk is handed out as it arrives (a proxy streams), so a
    # chunk's bytes come before the error; the message never ends.
    pytest.param(
        chunked_post(b"5\r\nhelloXX\r\n0\r\n\r\n"),
        rejected(400, chunked_head(), BodyData(b"hello")),
        id="row-20-data-longer",
    ),
    pytest.param(
        chunked_post(b"5\r\nhel\r\n0\r\n\r\n"),
        rejected(400, chunked_head(), BodyData(b"hel\r\n")),
        id="row-20-data-shorter",
    ),
    pytest.param(
        chunked_post(b"5\r\nhello0\r\n\r\n"),
        rejected(400, chunked_head(), BodyData(b"hello")),
        id="row-20-missing-crlf",
    ),
    pytest.param(
        chunked_post(b"5\r\nhello\r0\r\n\r\n"),
        rejected(400, chunked_head(), BodyData(b"hello")),
        id="row-20-cr-only",
    ),
    # 21: trailer fields carrying framing, routing or credentials are dropped.
    pytest.param(
        chunked_post(
            b"1\r\nx\r\n0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nHost: evil\r\n"
            b"Authorization: Basic eDp5\r\nX-Kept: 1\r\nContent-Type: text/evil\r\n"
            b"Connection: close\r\nX-Also: 2\r\n\r\n"
        ),
        ok(chunked_head(), BodyData(b"x"), EndOfMessage(((b"X-Kept", b"1"), (b"X-Also", b"2")))),
        id="row-21-forbidden-trailers-dropped",
    ),
    pytest.param(
        chunked_post(b"0\r\nhOsT: evil\r\nCONTENT-LENGTH: 0\r\n\r\n"),
        ok(chunked_head(), EOM),
        id="row-21-case-insensitive",
    ),
    pytest.param(
        chunked_post(b"0\r\nX: 1\r\n folded\r\n\r\n"),
        rejected(400, chunked_head()),
        id="row-21-folded",
    ),
    pytest.param(
        chunked_post(b"0\r\nX : 1\r\n\r\n"), rejected(400, chunked_head()), id="row-21-space-colon"
    ),
    pytest.param(
        chunked_post(b"0\r\nX: \x001\r\n\r\n"), rejected(400, chunked_head()), id="row-21-nul"
    ),
    pytest.param(
        chunked_post(b"0\r\nX: " + b"a" * DEFAULT_LIMITS.max_trailer + b"\r\n\r\n"),
        rejected(400, chunked_head()),
        id="row-21-too-large",
    ),
    # 27: malformed request lines: 400; a well-formed other version: 505.
    *[
        pytest.param(line + b"\r\nHost: a\r\n\r\n", rejected(status), id=f"row-27-{name}")
        for name, line, status in [
            ("version-1.32", b"GET / HTTP/1.32", 400),
            ("version-01.1", b"GET / HTTP/01.1", 400),
            ("version-10.0", b"GET / HTTP/10.0", 400),
            ("version-1", b"GET / HTTP/1", 400),
            ("version-lowercase", b"GET / http/1.1", 400),
            ("version-missing", b"GET / ", 400),
            ("space-in-target", b"GET /a b HTTP/1.1", 400),
            ("two-spaces", b"GET  / HTTP/1.1", 400),
            ("trailing-space", b"GET / HTTP/1.1 ", 400),
            ("leading-space", b" GET / HTTP/1.1", 400),
            ("tab-separators", b"GET\t/\tHTTP/1.1", 400),
            ("non-ascii-target", b"GET /\xc3\xa9 HTTP/1.1", 400),
            ("non-token-method", b"G(T / HTTP/1.1", 400),
            ("no-method", b"/ HTTP/1.1", 400),
            ("no-target", b"GET HTTP/1.1", 400),
            ("nul-in-target", b"GET /\x00 HTTP/1.1", 400),
            ("http-2.0", b"GET / HTTP/2.0", 505),
            ("http-0.9-version", b"GET / HTTP/0.9", 505),
            ("http-3.0", b"GET / HTTP/3.0", 505),
            ("h2-preface", b"PRI * HTTP/2.0", 505),
        ]
    ],
    # HTTP/0.9 has no version and no head: refused as soon as the line ends,
    # without waiting for a blank line that never comes.
    pytest.param(b"GET /\r\n", rejected(), id="row-27-http-0.9-simple-request"),
    pytest.param(b"GET / HTTP/1.32\r\n", rejected(), id="row-27-refused-before-head-ends"),
    # The method's case is kept as sent (methods are case-sensitive).
    pytest.param(
        b"get / HTTP/1.1\r\nHost: a\r\n\r\n", ok(rq(b"get"), EOM), id="row-27-lowercase-method-kept"
    ),
    pytest.param(
        b"GeT / HTTP/1.1\r\nHost: a\r\n\r\n",
        ok(rq(b"GeT"), EOM),
        id="row-27-mixed-case-method-kept",
    ),
    # 28: a GET or HEAD with a Content-Length body: exactly that body is read,
    # and the next request starts right after it.
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        ok(
            rq(fields=(H, (b"Content-Length", b"5")), framing=length(5)),
            BodyData(b"hello"),
            EOM,
            rq(target=b"/2"),
            EOM,
        ),
        id="row-28-get-with-body",
    ),
    pytest.param(
        b"HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        b"HEAD /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        ok(
            rq(b"HEAD", fields=(H, (b"Content-Length", b"3")), framing=length(3)),
            BodyData(b"abc"),
            EOM,
            rq(b"HEAD", b"/2"),
            EOM,
        ),
        id="row-28-head-with-body",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody"
        b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        ok(
            rq(
                b"POST",
                fields=(H, (b"Expect", b"100-continue"), (b"Content-Length", b"4")),
                framing=length(4),
            ),
            BodyData(b"body"),
            EOM,
            rq(target=b"/2"),
            EOM,
        ),
        id="row-28-expect-100-continue",
    ),
]

# A well-formed request pipelined behind each rejected one: it must never be
# parsed, whatever the split.
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.mark.parametrize(("raw", "expected"), HAZARD_REQUESTS)
def test_hazard_request(raw: bytes, expected: Outcome) -> None:
    assert_split_invariant(raw, expected)
    if expected[1] is not None:
        events, status = parse([raw + SMUGGLED])
        assert status == expected[1]
        assert all(not (isinstance(e, RequestHead) and e.target == b"/smuggled") for e in events)


# -- the hazard table, response side ------------------------------------------------------------

HAZARD_RESPONSES = [
    # 29: ambiguous framing from a server: 502 (the session closes upstream).
    *[
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n" + body,
            [b"GET"],
            rejected(502),
            id=f"row-29-{name}",
        )
        for name, fields, body in [
            ("te-and-cl", b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"),
            ("cl-and-te", b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
            ("chunked-chunked", b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
            ("two-te-lines", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b""),
            ("chunked-not-final", b"Transfer-Encoding: chunked, gzip\r\n", b""),
            ("chunked-after-unknown-coding", b"Transfer-Encoding: gzip, chunked\r\n", b""),
            ("te-extra-space", b"Transfer-Encoding:  chunked\r\n", b""),
            ("te-two-tabs", b"Transfer-Encoding:\t\tchunked\r\n", b""),
            ("te-tab", b"Transfer-Encoding:\tchunked\r\n", b""),
            ("cl-two-trailing-tabs", b"Content-Length: 2\t\t\r\n", b"ok"),
            ("cl-plus", b"Content-Length: +5\r\n", b"hello"),
            ("cl-list", b"Content-Length: 1, 2\r\n", b"ab"),
            ("cl-two-lines", b"Content-Length: 1\r\nContent-Length: 2\r\n", b"ab"),
            ("cl-empty", b"Content-Length:\r\n", b""),
            ("cl-huge", b"Content-Length: 99999999999999999999\r\n", b""),
            ("cl-space-before-colon", b"Content-Length : 5\r\n", b"hello"),
            ("obs-fold", b"X: 1\r\n  Content-Length: 5\r\n", b""),
            ("bare-lf", b"Content-Length: 0\n", b""),
            ("nul", b"X: \x00\r\n", b""),
        ]
    ],
    pytest.param(
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        [b"GET"],
        rejected(502),
        id="row-29-te-in-http-1.0",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n",
        [b"GET"],
        rejected(
            502,
            rs(fields=((b"Transfer-Encoding", b"chunked"),), framing=CHUNKED),
            BodyData(b"hello"),
        ),
        id="row-29-chunk-overrun",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        [b"GET"],
        rejected(
            502, rs(fields=((b"Content-Length", b"10"),), framing=length(10)), BodyData(b"short")
        ),
        id="row-29-eof-before-length",
    ),
    *[
        pytest.param(line + b"\r\n\r\n", [b"GET"], rejected(502), id=f"row-29-status-line-{name}")
        for name, line in [
            ("http-0.9", b"<html>"),
            ("http-2", b"HTTP/2 200 OK"),
            ("two-digit-status", b"HTTP/1.1 20 OK"),
            ("four-digit-status", b"HTTP/1.1 2000 OK"),
            ("no-space", b"HTTP/1.1200 OK"),
            ("lowercase", b"http/1.1 200 OK"),
            ("nul-in-reason", b"HTTP/1.1 200 O\x00K"),
        ]
    ],
    # 30: no body for HEAD, 1xx, 204, 304, whatever the fields say.
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        [b"HEAD"],
        ok(rs(fields=((b"Content-Length", b"100"),)), EOM),
        id="row-30-head-with-cl",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        [b"HEAD"],
        ok(rs(fields=((b"Transfer-Encoding", b"chunked"),)), EOM),
        id="row-30-head-with-te",
    ),
    pytest.param(
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        [b"DELETE"],
        ok(rs(204, b"No Content", ((b"Content-Length", b"5"),)), EOM),
        id="row-30-204-with-cl",
    ),
    pytest.param(
        b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        [b"GET"],
        ok(rs(304, b"Not Modified", ((b"Transfer-Encoding", b"chunked"),)), EOM),
        id="row-30-304-with-te",
    ),
    pytest.param(
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
        [b"GET"],
        ok(rs(304, b"Not Modified", ((b"Content-Length", b"7"),)), EOM),
        id="row-30-304-with-cl",
    ),
    pytest.param(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        [b"POST"],
        ok(
            rs(100, b"Continue"),
            rs(103, b"Early Hints", ((b"Link", b"</s.css>; rel=preload"),)),
            rs(fields=((b"Content-Length", b"2"),), framing=length(2)),
            BodyData(b"ok"),
            EOM,
        ),
        id="row-30-1xx-then-final",
    ),
    pytest.param(
        b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        [b"POST"],
        ok(
            rs(100, b"Continue", ((b"Content-Length", b"5"),)),
            rs(fields=((b"Content-Length", b"0"),), framing=length(0)),
            EOM,
        ),
        id="row-30-1xx-with-cl",
    ),
    # The fields of a bodiless response are still checked.
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        [b"HEAD"],
        rejected(502),
        id="row-30-head-with-te-and-cl",
    ),
    pytest.param(
        b"HTTP/1.1 204 No Content\r\nContent-Length: -1\r\n\r\n",
        [b"GET"],
        rejected(502),
        id="row-30-204-bad-cl",
    ),
    # What follows a HEAD response is the next response (here to a pipelined
    # GET), never a body. Bytes while nothing is pending: see below.
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 38\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        [b"HEAD", b"GET"],
        ok(
            rs(fields=((b"Content-Length", b"38"),)),
            EOM,
            rs(fields=((b"Content-Length", b"0"),), framing=length(0)),
            EOM,
        ),
        id="row-30-head-then-pipelined-get",
    ),
    # 31 (server side): an oversized head is a 502.
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * DEFAULT_LIMITS.max_head + b"\r\n\r\n",
        [b"GET"],
        rejected(502),
        id="row-31-response-head-too-large",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * (DEFAULT_LIMITS.max_fields + 1) + b"\r\n",
        [b"GET"],
        rejected(502),
        id="row-31-response-too-many-fields",
    ),
]


@pytest.mark.parametrize(("raw", "methods", "expected"), HAZARD_RESPONSES)
def test_hazard_response(raw: bytes, methods: list[bytes], expected: Outcome) -> None:
    assert_split_invariant(raw, expected, response_to=methods, eof=True)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(b"hello", id="garbage"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil", id="whole-response"),
    ],
)
def test_row_30_bytes_after_a_bodiless_response_are_never_the_next_response(extra: bytes) -> None:
    """A server that sends a body to HEAD (or a second response) has lost sync:
    the next request's answer must not be taken from those bytes."""
    p = ResponseParser()
    p.expect(b"HEAD")
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n" + extra)
    assert isinstance(p.next_event(), ResponseHead)
    assert p.next_event() == EOM
    assert p.next_event() is None
    p.expect(b"GET")
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
    with pytest.raises(ProtocolError) as e:
        p.next_event()
    assert e.value.status == 502


def test_row_30_bytes_while_idle_are_unsolicited() -> None:
    p = ResponseParser()
    p.expect(b"GET")
    p.feed(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert isinstance(p.next_event(), ResponseHead)
    assert p.next_event() == EOM
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")  # nothing was asked
    p.expect(b"GET")
    with pytest.raises(ProtocolError) as e:
        p.next_event()
    assert e.value.status == 502


# -- limits (row 31) --------------------------------------------------------------------------

SMALL = Limits(max_head=120, max_line=40, max_fields=4, max_chunk_line=12, max_trailer=30)


def head_of(size: int, fields: int = 1, line: bytes = b"GET / HTTP/1.1") -> bytes:
    """A request head of exactly ``size`` bytes (before the blank line)."""
    lines = [line, b"Host: a"] + [b"X: 1"] * (fields - 1)
    head = b"\r\n".join(lines)
    pad = size - len(head)
    assert pad >= 0
    return head + b"x" * pad


def line_of(size: int) -> bytes:
    """A request-line of exactly ``size`` bytes."""
    return b"GET /" + b"a" * (size - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"


LIMIT_CASES = [
    # 31: the head (request-line plus fields) is bounded: 431.
    pytest.param(head_of(SMALL.max_head) + b"\r\n\r\n", SMALL, None, id="row-31-head-at-limit"),
    pytest.param(
        head_of(SMALL.max_head + 1) + b"\r\n\r\n", SMALL, 431, id="row-31-head-over-limit"
    ),
    # Unfinished: the last three bytes might be the start of the blank line.
    pytest.param(head_of(SMALL.max_head + 3), SMALL, None, id="row-31-head-unfinished-undecided"),
    pytest.param(head_of(SMALL.max_head + 4), SMALL, 431, id="row-31-head-over-limit-unfinished"),
    pytest.param(
        head_of(60, fields=SMALL.max_fields) + b"\r\n\r\n", SMALL, None, id="row-31-fields-at-limit"
    ),
    pytest.param(
        head_of(60, fields=SMALL.max_fields + 1) + b"\r\n\r\n",
        SMALL,
        431,
        id="row-31-too-many-fields",
    ),
    # A request-line over max_line is 414, judged as soon as it is known.
    pytest.param(
        line_of(SMALL.max_line) + b"\r\nHost: a\r\n\r\n", SMALL, None, id="row-31-line-at-limit"
    ),
    pytest.param(
        line_of(SMALL.max_line + 1) + b"\r\nHost: a\r\n\r\n",
        SMALL,
        414,
        id="row-31-line-over-limit",
    ),
    # Unfinished: max_line bytes and a CR might still be a whole line.
    pytest.param(line_of(SMALL.max_line + 1), SMALL, None, id="row-31-line-unfinished-undecided"),
    pytest.param(line_of(SMALL.max_line + 2), SMALL, 414, id="row-31-line-over-limit-unfinished"),
    pytest.param(
        line_of(SMALL.max_head + 10) + b"\r\n\r\n",
        SMALL,
        414,
        id="row-31-line-over-head-limit-is-414",
    ),
    # The same at the default limits (64 KiB head, 16 KiB line, 200 fields).
    pytest.param(
        head_of(DEFAULT_LIMITS.max_head + 1, fields=20) + b"\r\n\r\n",
        DEFAULT_LIMITS,
        431,
        id="row-31-default-head",
    ),
    pytest.param(
        head_of(DEFAULT_LIMITS.max_head, fields=20) + b"\r\n\r\n",
        DEFAULT_LIMITS,
        None,
        id="row-31-default-head-ok",
    ),
    pytest.param(
        head_of(5000, fields=DEFAULT_LIMITS.max_fields + 1) + b"\r\n\r\n",
        DEFAULT_LIMITS,
        431,
        id="row-31-default-fields",
    ),
    pytest.param(
        head_of(5000, fields=DEFAULT_LIMITS.max_fields) + b"\r\n\r\n",
        DEFAULT_LIMITS,
        None,
        id="row-31-default-fields-ok",
    ),
    pytest.param(
        line_of(DEFAULT_LIMITS.max_line + 1) + b"\r\nHost: a\r\n\r\n",
        DEFAULT_LIMITS,
        414,
        id="row-31-default-line",
    ),
    pytest.param(
        line_of(DEFAULT_LIMITS.max_line) + b"\r\nHost: a\r\n\r\n",
        DEFAULT_LIMITS,
        None,
        id="row-31-default-line-ok",
    ),
]


@pytest.mark.parametrize(("raw", "limits", "status"), LIMIT_CASES)
def test_limits(raw: bytes, limits: Limits, status: int | None) -> None:
    events, got = parse([raw], limits=limits)
    assert got == status
    if status is None:
        assert [type(e) for e in events] in ([RequestHead, EndOfMessage], [])
    else:
        assert events == []
    # Judged on the head alone: the same for any split, and with a big
    # pipelined request behind it.
    if len(raw) < 2000:
        assert parse(bytewise(raw), limits=limits)[1] == status
    for i in range(len(raw) - 4, len(raw) + 1):
        assert parse([raw[:i], raw[i:]], limits=limits)[1] == status, i
    if raw.endswith(b"\r\n\r\n"):
        behind = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\n" + b"z" * 70000
        assert parse([raw + behind], limits=limits)[1] == status


def chunk_ext(size: int) -> bytes:
    """A chunked body whose first chunk-size line is ``size`` bytes long."""
    return b"5;a=" + b"b" * (size - 4) + b"\r\nhello\r\n0\r\n\r\n"


def trailer_of(size: int) -> bytes:
    """A last-chunk and a trailer section of ``size`` bytes (before the blank line)."""
    return b"0\r\nX: " + b"a" * (size - 3) + b"\r\n\r\n"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(chunk_ext(SMALL.max_chunk_line), None, id="chunk-line-at-limit"),
        pytest.param(chunk_ext(SMALL.max_chunk_line + 1), 400, id="chunk-line-over-limit"),
        pytest.param(trailer_of(SMALL.max_trailer), None, id="trailers-at-limit"),
        pytest.param(trailer_of(SMALL.max_trailer + 1), 400, id="trailers-over-limit"),
        pytest.param(
            b"0\r\n" + b"Y: 2\r\n" * (SMALL.max_fields + 2) + b"\r\n", 400, id="too-many-trailers"
        ),
    ],
)
def test_body_limits(body: bytes, status: int | None) -> None:
    raw = chunked_post(body)
    assert parse([raw], limits=SMALL)[1] == status
    assert parse(bytewise(raw), limits=SMALL)[1] == status
    # A small trailer section followed by a big pipelined request is fine.
    behind = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"z" * 1000
    assert parse([raw + behind], limits=SMALL)[1] == status


def test_small_trailer_then_big_pipelined_request_at_default_limits() -> None:
    behind = b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 20000\r\n\r\n" + b"z" * 20000
    events, status = parse([chunked_post(b"1\r\nx\r\n0\r\nX-T: 1\r\n\r\n") + behind])
    assert status is None
    assert events[-2:] == [BodyData(b"z" * 20000), EOM]


# -- properties -------------------------------------------------------------------------


def raw_of(params: list[Any]) -> list[bytes]:
    """The raw bytes of table rows (their first value)."""
    return [bytes(p.values[0]) for p in params]


SAMPLES = raw_of(VALID_REQUESTS + HAZARD_REQUESTS)
RESPONSE_SAMPLES = raw_of(VALID_RESPONSES + HAZARD_RESPONSES)
# Bytes that matter to the grammar, for mutations.
INTERESTING = b'\r\n\t :;,="\\\x00\x0b\x0c\x7f\x80\xff0159aAfFxX-_+'
METHODS = [b"GET", b"HEAD", b"POST", b"CONNECT"]


@st.composite
def split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.sets(st.integers(0, len(data)), max_size=8)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@st.composite
def mutated(draw: st.DrawFn, samples: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "dup"]))
        byte = draw(st.sampled_from(INTERESTING))
        if op == "insert" or not data:
            data[pos:pos] = bytes([byte])
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 3))]
        elif op == "replace":
            data[min(pos, len(data) - 1)] = byte
        else:
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


def inputs(samples: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), mutated(samples), st.sampled_from(samples))


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed_all(
    parser: RequestParser | ResponseParser, pieces: list[bytes], eof: bool
) -> tuple[list[Event], int | None]:
    """Only events or ProtocolError may come out; any other exception fails."""
    events: list[Event] = []
    try:
        for piece in pieces:
            parser.feed(piece)
            drain(parser, events)
        if eof:
            parser.feed_eof()
            drain(parser, events)
    except ProtocolError as e:
        assert e.status in (400, 414, 431, 501, 505, 502), e
        return merge(events), e.status
    return merge(events), None


@PROPERTY
@given(data=st.data(), raw=inputs(SAMPLES), eof=st.booleans())
def test_property_request_parser_only_events_or_protocol_error(
    data: st.DataObject, raw: bytes, eof: bool
) -> None:
    pieces = data.draw(split(raw))
    outcome = feed_all(
        RequestParser(SMALL if data.draw(st.booleans()) else DEFAULT_LIMITS), pieces, eof
    )
    if outcome[1] is not None:
        assert outcome[1] != 502


@PROPERTY
@given(data=st.data(), raw=inputs(RESPONSE_SAMPLES), eof=st.booleans())
def test_property_response_parser_only_events_or_protocol_error(
    data: st.DataObject, raw: bytes, eof: bool
) -> None:
    p = ResponseParser(SMALL if data.draw(st.booleans()) else DEFAULT_LIMITS)
    for method in data.draw(st.lists(st.sampled_from(METHODS), min_size=1, max_size=3)):
        p.expect(method)
    _, status = feed_all(p, data.draw(split(raw)), eof)
    assert status in (None, 502)


@PROPERTY
@given(data=st.data(), raw=inputs(SAMPLES))
def test_property_request_outcome_does_not_depend_on_reads(data: st.DataObject, raw: bytes) -> None:
    """Accepted or refused, and with which events, never depends on the split.

    (When a message breaks several rules at once the *status* may be that of
    whichever rule is seen first, so only acceptance and events are compared.)
    """
    whole_events, whole_status = feed_all(RequestParser(SMALL), [raw], eof=False)
    events, status = feed_all(RequestParser(SMALL), data.draw(split(raw)), eof=False)
    assert (status is None) == (whole_status is None)
    if status is None:
        assert events == whole_events
    else:  # the events before the error are the same, save a partial body
        n = min(len(events), len(whole_events)) - 1
        assert events[:n] == whole_events[:n]


@pytest.mark.parametrize(
    ("head", "bare"),
    [
        (b"", False),
        (b"GET / HTTP/1.1\r\nHost: a", False),
        (b"a\r\nb\r\nc", False),
        (b"a\rb", True),
        (b"a\nb", True),
        (b"a\r\r\nb", True),  # the first CR is bare
        (b"a\r\n\nb", True),  # the second LF is bare
        (b"a\n\rb", True),
        (b"a\r", True),
        (b"\nb", True),
    ],
)
def test_bare_cr_or_lf_by_counting(head: bytes, bare: bool) -> None:
    """The counting check agrees with the definition (RFC 9112 §2.2)."""
    assert _has_bare_cr_or_lf(head) is bare
    assert _bare_by_definition(head) is bare


def _bare_by_definition(head: bytes) -> bool:
    return any(
        (c == 0x0D and head[i + 1 : i + 2] != b"\n") or (c == 0x0A and head[i - 1 : i] != b"\r")
        for i, c in enumerate(head)
    )


@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b":"]), max_size=30))
def test_bare_cr_or_lf_counting_matches_the_definition(parts: list[bytes]) -> None:
    head = b"".join(parts)
    assert _has_bare_cr_or_lf(head) is _bare_by_definition(head)
