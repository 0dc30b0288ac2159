"""The HTTP/1 codec's cheap checks equal their definitions (issue 22 item 3).

Each check that replaced a regex scan (proxy/http1/scan.py) or gained a fast
path (proxy/http1/framing.py) is compared here, on generated and exhaustive
inputs, with two references: the rule as the RFC states it, written out octet
by octet, and the regex the parser used before (copied below as it was), so
that "cheaper" can never mean "accepts something new" or "refuses something
it used to pass". The writer's field block, rewritten for speed, is held to
the expression it replaced.
"""

from __future__ import annotations

import itertools
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.http1 import ProtocolError
from proxy.http1.fields import TOKEN
from proxy.http1.framing import _PLAIN_CHUNKED, _is_chunked, _length_digits
from proxy.http1.scan import CONTROL_CHARS, chunk_size, has_bare_cr_or_lf, head_fault
from proxy.http1.writer import _fields_block

# -- the references --------------------------------------------------------------

# The regexes these checks replaced, as they were before issue 22.
OLD_CONTROL_CHARS = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_OLD_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_OLD_CHUNK_EXT = (
    rb"(?:[ \t]*;[ \t]*" + TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + TOKEN + rb"|" + _OLD_QUOTED + rb"))?)*"
)
OLD_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})" + _OLD_CHUNK_EXT)
OLD_CL_VALUE = re.compile(rb"[ \t]?([0-9]+)[ \t]?")


def old_has_bare_cr_or_lf(head: bytes) -> bool:
    """The counting check the parser used before."""
    pairs = head.count(b"\r\n")
    return pairs != head.count(b"\r") or pairs != head.count(b"\n")


def bare_by_definition(head: bytes) -> bool:
    """RFC 9112 §2.2: a CR not followed by LF, or an LF not preceded by CR."""
    return any(
        (c == 0x0D and head[i + 1 : i + 2] != b"\n") or (c == 0x0A and head[i - 1 : i] != b"\r")
        for i, c in enumerate(head)
    )


def control_by_definition(head: bytes) -> bool:
    """RFC 9110 §5.5: CTL (%x00-1F / %x7F) other than HTAB; CR and LF are line ends."""
    return any((c < 0x20 or c == 0x7F) and c not in (0x09, 0x0D, 0x0A) for c in head)


def fault_by_definition(head: bytes) -> str | None:
    """What the parser refuses a complete head for first: bare CR/LF, then CTL."""
    if bare_by_definition(head):
        return "bare CR or LF"
    if control_by_definition(head):
        return "control character"
    return None


def old_fault(head: bytes) -> str | None:
    if old_has_bare_cr_or_lf(head):
        return "bare CR or LF"
    if OLD_CONTROL_CHARS.search(head):
        return "control character"
    return None


HEXDIG = frozenset(b"0123456789abcdefABCDEF")


def chunk_size_by_definition(line: bytes) -> int | None:
    """chunk-size = 1*HEXDIG (RFC 9112 §7.1), at most 16 digits, for a line
    without chunk-ext (a ';' starts one; those go to the regex either way)."""
    if 0 < len(line) <= 16 and all(c in HEXDIG for c in line):
        return int(line.decode("ascii"), 16)
    return None


def old_chunk_size(line: bytes) -> int | None:
    m = OLD_CHUNK_LINE.fullmatch(line)
    return None if m is None else int(m.group(1), 16)


def old_length_digits(value: bytes) -> bytes | None:
    m = OLD_CL_VALUE.fullmatch(value)
    return None if m is None else m.group(1)


def length_digits_by_definition(value: bytes) -> bytes | None:
    """Content-Length = 1*DIGIT (RFC 9110 §8.6) with at most one SP or HTAB
    of OWS on each side (RFC 9110 §5.5, §5.6.3; hazard 3)."""
    start = 1 if value[:1] in (b" ", b"\t") else 0
    end = len(value) - 1 if len(value) > start and value[-1:] in (b" ", b"\t") else len(value)
    digits = value[start:end]
    if digits and all(0x30 <= c <= 0x39 for c in digits):
        return digits
    return None


# -- inputs -----------------------------------------------------------------------

# Octets that matter to these checks, each likely to be drawn, then any octet.
SPECIAL = b'\r\n\t \x00\x01\x0b\x0c\x1f\x7f\x80\xff:;="\\,0aFgx+-_.'
octet = st.one_of(st.sampled_from(list(SPECIAL)), st.integers(0, 255))
pieces = st.one_of(
    st.sampled_from([b"\r\n", b"\r\n\r\n", b"\r\r\n", b"\n\r", b"chunked", b"Host: a"]),
    octet.map(lambda c: bytes([c])),
)
heads = st.lists(pieces, max_size=40).map(b"".join)
PROPS = settings(max_examples=400, deadline=None)


def random_inputs(seed: int, n: int, parts: list[bytes], max_parts: int) -> list[bytes]:
    """``n`` inputs of up to ``max_parts`` pieces, half of them from ``parts``
    and half single octets, from a fixed seed (a sweep wider than hypothesis')."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(0, max_parts)
        out.append(
            b"".join(rng.choice(parts) if rng.random() < 0.5 else bytes([rng.randrange(256)])
                     for _ in range(k))
        )  # fmt: skip
    return out


HEAD_PARTS = [bytes([c]) for c in SPECIAL] + [b"\r\n", b"\r\n\r\n", b"\r\r\n", b"\n\r", b"Host: a"]


# -- head_fault and has_bare_cr_or_lf -----------------------------------------


@PROPS
@given(heads)
def test_head_fault_is_the_definition_and_the_old_scans(head: bytes) -> None:
    want = fault_by_definition(head)
    assert head_fault(head.split(b"\r\n")) == want
    assert old_fault(head) == want
    assert has_bare_cr_or_lf(head) is bare_by_definition(head) is old_has_bare_cr_or_lf(head)


def test_head_fault_random_sweep() -> None:
    for head in random_inputs(9110, 20000, HEAD_PARTS, 30):
        assert head_fault(head.split(b"\r\n")) == fault_by_definition(head) == old_fault(head)


@PROPS
@given(st.binary(max_size=200))
def test_head_fault_on_any_bytes(head: bytes) -> None:
    assert head_fault(head.split(b"\r\n")) == fault_by_definition(head) == old_fault(head)


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_head_fault_every_octet_in_every_place(where: str) -> None:
    """All 256 octets alone, and next to CR and LF, at the start, middle and end."""
    line = b"GET / HTTP/1.1\r\nHost: example.com"
    at = {"start": 0, "middle": 18, "end": len(line)}[where]
    for c in range(256):
        for ins in (bytes([c]), bytes([c]) + b"\r", b"\n" + bytes([c]), b"\r" + bytes([c])):
            head = line[:at] + ins + line[at:]
            assert head_fault(head.split(b"\r\n")) == fault_by_definition(head) == old_fault(head)


def test_head_fault_exhaustive_short_heads() -> None:
    """Every head of up to 4 octets over CR, LF, HTAB, a CTL, DEL, a letter."""
    alphabet = [b"\r", b"\n", b"\t", b"\x00", b"\x7f", b"a"]
    for n in range(5):
        for parts in itertools.product(alphabet, repeat=n):
            head = b"".join(parts)
            assert head_fault(head.split(b"\r\n")) == fault_by_definition(head), head
            assert has_bare_cr_or_lf(head) is bare_by_definition(head), head


def test_control_chars_table_is_ctl_without_htab_cr_lf() -> None:
    want = bytes(c for c in range(256) if (c < 0x20 or c == 0x7F) and c not in (9, 10, 13))
    assert want == CONTROL_CHARS


# -- chunk_size -----------------------------------------------------------------

chunk_lines = st.lists(
    st.one_of(
        st.sampled_from([b"0", b"a", b"F", b"1f", b";", b"=", b'"', b" ", b"\t", b"x", b"+"]),
        octet.map(lambda c: bytes([c])),
    ),
    max_size=24,
).map(b"".join)


@PROPS
@given(chunk_lines)
def test_chunk_size_is_the_old_regex(line: bytes) -> None:
    assert chunk_size(line) == old_chunk_size(line)
    if b";" not in line:
        assert chunk_size(line) == chunk_size_by_definition(line)


def test_chunk_size_random_sweep() -> None:
    parts = [bytes([c]) for c in b'0aF;=" \tx+'] + [b"1f", b"ffffffff"]
    for line in random_inputs(9112, 20000, parts, 20):
        assert chunk_size(line) == old_chunk_size(line)
        if b";" not in line:
            assert chunk_size(line) == chunk_size_by_definition(line)


def test_chunk_size_exhaustive_one_and_two_octets() -> None:
    for n in (0, 1, 2):
        for t in itertools.product(range(256), repeat=n):
            line = bytes(t)
            assert chunk_size(line) == old_chunk_size(line) == chunk_size_by_definition(line)


def test_chunk_size_digit_counts_and_int_leniencies() -> None:
    """16 digits is the most; what int(x, 16) alone would take is refused (hazard 18)."""
    rng = random.Random(22)
    for n in range(0, 20):
        line = bytes(rng.choice(b"0123456789abcdefABCDEF") for _ in range(n))
        assert chunk_size(line) == old_chunk_size(line) == chunk_size_by_definition(line)
    for line in (b"0x5", b"+5", b" 5", b"5 ", b"1_0", b"-0", b"\xd9\xa1", b"5\x00", b"0" * 17):
        assert chunk_size(line) is None
        assert old_chunk_size(line) is None


# -- Content-Length and Transfer-Encoding fast paths ----------------------------

cl_values = st.lists(
    st.one_of(
        st.sampled_from([b"0", b"1", b"9", b" ", b"\t", b"+", b"-", b"_", b".", b"x", b"\xb2"]),
        octet.map(lambda c: bytes([c])),
    ),
    max_size=12,
).map(b"".join)


@PROPS
@given(cl_values)
def test_length_digits_is_the_old_regex_and_the_definition(value: bytes) -> None:
    assert _length_digits(value) == old_length_digits(value) == length_digits_by_definition(value)


def test_length_digits_random_sweep() -> None:
    parts = [bytes([c]) for c in b"0199 \t+-_.x"]
    for value in random_inputs(8, 20000, parts, 10):
        assert _length_digits(value) == old_length_digits(value)
        assert _length_digits(value) == length_digits_by_definition(value)


def test_length_digits_exhaustive_short_values() -> None:
    """Every value of up to 2 octets, and every octet around a digit."""
    values = [bytes(t) for n in (0, 1, 2) for t in itertools.product(range(256), repeat=n)]
    values += [bytes([c]) + b"5" + bytes([d]) for c in range(256) for d in (0x20, 0x09, 0x35)]
    for value in values:
        assert _length_digits(value) == old_length_digits(value)
        assert _length_digits(value) == length_digits_by_definition(value)


def _te_outcome(value: bytes, is_request: bool) -> bool | tuple[int, str]:
    try:
        return _is_chunked([value], 400 if is_request else 502, is_request)
    except ProtocolError as e:
        return (e.status, e.message)


@pytest.mark.parametrize("is_request", [True, False])
def test_plain_chunked_fast_path_is_what_the_rules_say(is_request: bool) -> None:
    """Every value the fast path takes (each case of "chunked", with and without
    one leading SP) is plain chunked by the full rules (RFC 9112 §6.1), and no
    other spelling is: one more SP, an HTAB, VT, a quote, a Kelvin sign stay refused."""
    taken = 0
    for bits in range(2**7):
        word = bytes(c - 32 * (bits >> i & 1) for i, c in enumerate(b"chunked"))
        for value in (word, b" " + word):
            assert value.lower() in _PLAIN_CHUNKED
            taken += 1
            assert _te_outcome(value, is_request) is True
            # The same value through the slow path alone (a comma is an
            # empty list element, RFC 9110 §5.6.1): also plain chunked.
            assert _te_outcome(b"," + value, is_request) is True
    assert taken == 256
    for value in (b"  chunked", b"\tchunked", b"chunked\t", b"\x0bchunked", b'"chunked"',
                  b"chun\xe2\x84\xaaed", b"chunked ", b"xchunked", b"chunk"):  # fmt: skip
        assert value.lower() not in _PLAIN_CHUNKED
        assert _te_outcome(value, is_request) is not True


# -- the writer's field block -------------------------------------------------------


def old_fields_block(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join([k + b": " + v + b"\r\n" for k, v in fields])


@PROPS
@given(st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=8)), max_size=12))
def test_fields_block_is_one_line_per_field(fields: list[tuple[bytes, bytes]]) -> None:
    """field-line = field-name ":" OWS field-value OWS, each ended by CRLF
    (RFC 9112 §5, §2.1); we write one SP of OWS, as before."""
    assert _fields_block(fields) == old_fields_block(fields)
    assert _fields_block(tuple(fields)) == old_fields_block(fields)
