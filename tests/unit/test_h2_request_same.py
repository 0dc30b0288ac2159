"""An HTTP/2 request block is judged and turned into a head exactly as before.

``proxy.layers.http2.request`` checks every request block against RFC 9113
§8.2-8.3 and builds our head from it; it was rewritten for speed (issue 22
item 4). ``tests/support/h2request_ref.py`` is the version it replaced:
for generated blocks (pseudo-headers present, missing, repeated, unknown or
misplaced; names and values with every character class the checks look at;
several ``host``, ``cookie`` and ``content-length`` fields; ``te``;
END_STREAM or not; forward or reverse) both must refuse with the same
message, or build the same head (fields, framing, target, index) and the
same pseudo-headers.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.layers.http2 import request as fast
from tests.support import h2request_ref as ref

Block = list[tuple[bytes, bytes]]

PSEUDO_NAMES = [b":method", b":scheme", b":authority", b":path", b":protocol", b":status", b":x"]
PSEUDO_VALUES = {
    b":method": [b"GET", b"POST", b"CONNECT", b"OPTIONS", b"G T", b"", b"get"],
    b":scheme": [b"http", b"https", b"ftp", b"", b"HTTP"],
    b":authority": [b"svc", b"svc:80", b"u@svc", b"[::1]:8", b"", b"a b", b"other"],
    b":path": [b"/a", b"*", b"/a b", b"/a#b", b"", b"a", b"/\x80", b"/%20?q=1"],
}
NAMES = [
    b"host", b"cookie", b"content-length", b"te", b"connection", b"upgrade", b"keep-alive",
    b"transfer-encoding", b"user-agent", b"accept", b"X-Up", b"a b", b"", b"x:y", b"\xe9",
]  # fmt: skip
VALUES = [
    b"svc", b"other", b"0", b"10", b"010", b"abc", b" 5", b"5 ", b"trailers", b"gzip", b"a=1",
    b"b=2", b"", b"x\r\ny", b"\x00", b"\t", b"a\tb", b"x\t", b"\tx", b"1" * 19, b"-1", b"\xff",
]  # fmt: skip


@st.composite
def blocks(draw: Any) -> Block:
    names = draw(st.lists(st.sampled_from(PSEUDO_NAMES), max_size=6))
    pseudo = [(n, draw(st.sampled_from(PSEUDO_VALUES.get(n, [b"x", b"websocket"])))) for n in names]
    regular = draw(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=6))
    block = pseudo + regular
    if draw(st.booleans()) and block:  # now and then a pseudo-header out of place
        at = draw(st.integers(0, len(block)))
        block.insert(at, (b":path", b"/late"))
    return block


def outcome(module: Any, block: Block, ended: bool, absolute: bool) -> tuple[Any, ...]:
    try:
        head, pseudo = module.request_head(block, ended, absolute)
    except fast.MalformedRequest as e:
        return ("refused", str(e))
    return ("head", head, head.index, pseudo)


def well_formed(extra: Block) -> Block:
    return [
        (b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"svc"), (b":path", b"/a"),
        *extra,
    ]  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(blocks(), st.booleans(), st.booleans())
def test_any_block_same_verdict_and_head(block: Block, ended: bool, absolute: bool) -> None:
    assert outcome(fast, block, ended, absolute) == outcome(ref, block, ended, absolute)


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=6),
    st.booleans(),
    st.booleans(),
)
def test_well_formed_pseudo_headers_any_fields(extra: Block, ended: bool, absolute: bool) -> None:
    """The pseudo-headers right, the fields anything: the checks of the fields decide."""
    block = well_formed(extra)
    assert outcome(fast, block, ended, absolute) == outcome(ref, block, ended, absolute)


def test_the_checks_still_refuse() -> None:
    """A few refusals by name, so that a reference gone wrong cannot hide one."""
    cases = {
        "invalid characters in the value of b'accept'": [(b"accept", b" x")],
        "connection-specific field b'te' (RFC 9113 §8.2.2)": [(b"te", b"gzip")],
        ":authority and host disagree (RFC 9113 §8.3.1)": [(b"host", b"other")],
        "content-length fields disagree": [(b"content-length", b"1"), (b"content-length", b"2")],
        "invalid field name b'X-Up' (RFC 9113 §8.2.1)": [(b"X-Up", b"1")],
    }
    for message, extra in cases.items():
        for module in (fast, ref):
            assert outcome(module, well_formed(extra), False, False) == ("refused", message)
