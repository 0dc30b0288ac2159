"""The fast path of inbound header validation decides exactly as h2 does.

``fast_ok`` may only say yes to a block h2's own ``validate_headers``
accepts; every other block goes to h2's function, so ``validate_headers``
must give h2's result (the same list, or a ProtocolError with h2's
message) for any block and any kind (request, response, trailers, push).
Hypothesis builds blocks from names and values chosen to hit each rule of
RFC 9113 §8.2-8.3 (and arbitrary bytes).
"""

from __future__ import annotations

import h2.stream
import pytest
from h2.exceptions import ProtocolError
from h2.utilities import HeaderValidationFlags
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.layers.http2 import validation
from proxy.layers.http2.link import connection

NAMES = [
    b":method", b":scheme", b":path", b":authority", b":status", b":protocol", b":bogus",
    b"host", b"te", b"connection", b"keep-alive", b"transfer-encoding", b"upgrade",
    b"proxy-connection", b"content-length", b"cookie", b"x-a", b"X-Upper", b"bad name",
    b"a:b", b"", b"\x7f", b"a\x00", b"(paren)", b'"q"', b"\xc3\xa9", b"::", b":",
]  # fmt: skip
VALUES = [
    b"", b"GET", b"CONNECT", b"OPTIONS", b"http", b"https", b"/", b"/x?y", b"*",
    b"a.example", b"b.example", b"trailers", b"TRAILERS", b"gzip", b" x", b"x ", b"x\t",
    b"\tx", b"a\rb", b"a\nb", b"a\x00b", b"200", b"websocket", b"a b", b"\x80\xff",
]  # fmt: skip

name = st.one_of(st.sampled_from(NAMES), st.binary(max_size=6))
value = st.one_of(st.sampled_from(VALUES), st.binary(max_size=6))
blocks = st.lists(st.tuples(name, value), max_size=8)
flags = st.builds(HeaderValidationFlags, st.booleans(), st.booleans(), st.booleans(), st.booleans())
PREFIX = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")]


def h2_verdict(block: list[tuple[bytes, bytes]], f: HeaderValidationFlags) -> object:
    try:
        return list(validation.ORIGINAL(list(block), f))
    except ProtocolError as e:
        return ("refused", str(e))


def our_verdict(block: list[tuple[bytes, bytes]], f: HeaderValidationFlags) -> object:
    try:
        return list(validation.validate_headers(list(block), f))
    except ProtocolError as e:
        return ("refused", str(e))


@settings(max_examples=3000, deadline=None)
@given(blocks, flags)
def test_fast_path_accepts_only_what_h2_accepts(
    block: list[tuple[bytes, bytes]], f: HeaderValidationFlags
) -> None:
    if validation.fast_ok(block, f):
        assert h2_verdict(block, f) == block
    assert our_verdict(block, f) == h2_verdict(block, f)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.tuples(name, value), max_size=5), flags)
def test_same_verdict_on_near_valid_requests(
    tail: list[tuple[bytes, bytes]], f: HeaderValidationFlags
) -> None:
    """Blocks that start as a valid request, so the later rules are reached too."""
    block = [*PREFIX, (b":authority", b"a.example"), *tail]
    if validation.fast_ok(block, f):
        assert h2_verdict(block, f) == block
    assert our_verdict(block, f) == h2_verdict(block, f)


REQUEST = HeaderValidationFlags(False, False, False, False)
RESPONSE = HeaderValidationFlags(True, False, True, False)
TRAILERS = HeaderValidationFlags(False, True, False, False)


@pytest.mark.parametrize(
    ("block", "f"),
    [
        (
            [*PREFIX, (b":authority", b"a.example"), (b"user-agent", b"h2load nghttp2/1.52.0")],
            REQUEST,
        ),
        ([*PREFIX, (b"host", b"a.example"), (b"te", b"trailers"), (b"accept", b"*/*")], REQUEST),
        ([(b":status", b"200"), (b"server", b"nghttpd"), (b"content-length", b"100")], RESPONSE),
        ([(b":status", b"103"), (b"link", b"</a.css>; rel=preload")], RESPONSE),
        ([(b"grpc-status", b"0"), (b"grpc-message", b"")], TRAILERS),
    ],
)
def test_well_formed_blocks_take_the_fast_path(
    block: list[tuple[bytes, bytes]], f: HeaderValidationFlags
) -> None:
    assert validation.fast_ok(block, f)
    assert validation.validate_headers(block, f) is block


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ([*PREFIX, (b":authority", b"a"), (b"Upper", b"x")], "uppercase header name"),
        ([*PREFIX, (b":authority", b"a"), (b"x", b" pad")], "surrounded by whitespace"),
        ([*PREFIX, (b":authority", b"a"), (b"connection", b"close")], "Connection-specific"),
        ([*PREFIX, (b":authority", b"a"), (b"host", b"b")], "mismatched :authority"),
        ([(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"")], "empty :path"),
    ],
)
def test_refusals_are_h2s_own(block: list[tuple[bytes, bytes]], message: str) -> None:
    assert not validation.fast_ok(block, REQUEST)
    with pytest.raises(ProtocolError, match=message):
        list(validation.validate_headers(block, REQUEST))


def test_installed_where_h2_validates() -> None:
    connection(client_side=False)
    assert vars(h2.stream)["validate_headers"] is validation.validate_headers
