"""Message body framing: RFC 9112 §6.3, applied strictly.

The rules are written out once here and used for both directions. The only
accepted framing headers are a single ``Content-Length: 1*DIGIT`` or a single
``Transfer-Encoding: chunked`` (empty list elements aside). Everything a
lenient parser might read differently from a strict one is an error, because
a proxy that guesses can be desynchronised from the server behind it.
"""

from __future__ import annotations

import re

from proxy.http1.errors import ProtocolError
from proxy.http1.events import (
    CHUNKED,
    KIND_LENGTH,
    NO_BODY,
    TUNNEL,
    UNTIL_CLOSE,
    FieldIndex,
    Framing,
)
from proxy.http1.fields import TOKEN_RE

# A field value's leading and trailing whitespace is OWS, SP or HTAB alike
# (RFC 9110 §5.5, §5.6.3), so "Content-Length:\t81\t" is a valid 81: at most
# one OWS octet on each side, since real clients send "Content-Length: 12"
# and a run of whitespace is how smuggling payloads hide (hazard 3), so
# "Content-Length:  3" stays refused. Transfer-Encoding is stricter on
# purpose: obfuscated codings are the classic smuggling vector, and the
# team's hazard table (row 7) refuses "chunked\t" and its kin, so there only
# one leading SP is taken, and SP around the list commas (RFC 9110 §5.6.1).
# Anything else (VT, FF, NBSP) is never whitespace here.
_CL_VALUE = re.compile(rb"[ \t]?([0-9]+)[ \t]?")
_TE_VALUE = re.compile(rb" ?(?! )([!#$%&'*+\-.^_`|~0-9A-Za-z, ]*[!#$%&'*+\-.^_`|~0-9A-Za-z])")
MAX_CONTENT_LENGTH = 2**63 - 1
_DIGITS_MAX = len(str(MAX_CONTENT_LENGTH))
# The Transfer-Encoding values nearly every sender uses, lower-cased: read as
# plain chunked without the regex (the slow path gives the same answer).
_PLAIN_CHUNKED = frozenset({b"chunked", b" chunked"})


def _length_digits(value: bytes) -> bytes | None:
    """The digits of a Content-Length value, or None if it is not one.

    Hot path: " 615" and "615" (what senders write) are read with
    ``bytes.isdigit``, which is true only for a non-empty run of ASCII
    digits; anything else goes through ``_CL_VALUE``.
    """
    digits = value[1:] if value[:1] == b" " else value
    if digits.isdigit():
        return digits
    m = _CL_VALUE.fullmatch(value)
    return None if m is None else m.group(1)


def _content_length(values: list[bytes], status: int) -> int | None:
    if not values:
        return None
    if len(values) > 1:
        # §6.3 (5): several Content-Length lines are ambiguous unless all
        # agree; we refuse them all, identical or not.
        raise ProtocolError(status, "more than one Content-Length field")
    digits = _length_digits(values[0])
    if digits is None:
        raise ProtocolError(status, f"invalid Content-Length {values[0][:40]!r}")
    digits = digits.lstrip(b"0") or b"0"  # "010" is ten (RFC 9110 §8.6)
    if len(digits) > _DIGITS_MAX or int(digits) > MAX_CONTENT_LENGTH:
        raise ProtocolError(status, "Content-Length too large")
    return int(digits)


def _is_chunked(values: list[bytes], status: int, is_request: bool) -> bool:
    """True for plain chunked; False for a response coding ending elsewhere."""
    if len(values) > 1:
        raise ProtocolError(status, "more than one Transfer-Encoding field")
    if values[0].lower() in _PLAIN_CHUNKED:
        return True
    m = _TE_VALUE.fullmatch(values[0])
    if m is None:
        raise ProtocolError(status, f"invalid Transfer-Encoding {values[0][:40]!r}")
    codings = [c.strip(b" ") for c in m.group(1).split(b",")]
    codings = [c for c in codings if c]  # ",chunked" is "chunked" (RFC 9110 §5.6.1)
    if not codings or any(TOKEN_RE.fullmatch(c) is None for c in codings):
        raise ProtocolError(status, f"invalid Transfer-Encoding {values[0][:40]!r}")
    lowered = [c.lower() for c in codings]
    if lowered.count(b"chunked") > 1:
        raise ProtocolError(status, "chunked applied more than once")
    if lowered == [b"chunked"]:
        return True
    if b"chunked" in lowered[:-1]:
        raise ProtocolError(status, "chunked is not the final transfer coding")
    if is_request:
        # §6.3 (4): a request whose final coding is not chunked has no
        # reliable length. Other codings we do not implement at all (§6.1).
        if lowered[-1] != b"chunked":
            raise ProtocolError(400, "final transfer coding of a request must be chunked")
        raise ProtocolError(501, f"unsupported transfer coding {values[0][:40]!r}")
    if lowered[-1] == b"chunked":
        raise ProtocolError(status, f"unsupported transfer coding {values[0][:40]!r}")
    return False  # §6.3 (4): response read until close


def request_framing(index: FieldIndex, version: bytes) -> Framing:
    """Body framing of a request from its raw field lines (§6.3)."""
    te = index.get(b"transfer-encoding", [])
    cl = index.get(b"content-length", [])
    if te:
        if version == b"1.0":
            raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if cl:
            raise ProtocolError(400, "both Content-Length and Transfer-Encoding")
        _is_chunked(te, 400, True)
        return CHUNKED
    length = _content_length(cl, 400)
    if length is None:
        return NO_BODY
    # A zero length is kept as LENGTH(0): it is forwarded as
    # "Content-Length: 0", which some servers require on POST.
    return Framing(KIND_LENGTH, length)


def response_framing(
    index: FieldIndex, version: bytes, status: int, request_method: bytes
) -> Framing:
    """Body framing of a response to ``request_method`` (§6.3 rules 1-7)."""
    if request_method == b"CONNECT" and 200 <= status < 300:
        return TUNNEL
    if status == 101:
        return TUNNEL
    te = index.get(b"transfer-encoding", [])
    cl = index.get(b"content-length", [])
    if request_method == b"HEAD" or status < 200 or status in (204, 304):
        # No body whatever the fields say; they are still checked so that a
        # malformed response is not passed on.
        if te and cl:
            raise ProtocolError(502, "both Content-Length and Transfer-Encoding")
        _content_length(cl, 502)
        return NO_BODY
    if te:
        if cl:
            raise ProtocolError(502, "both Content-Length and Transfer-Encoding")
        if version == b"1.0":
            raise ProtocolError(502, "Transfer-Encoding in an HTTP/1.0 response")
        return CHUNKED if _is_chunked(te, 502, False) else UNTIL_CLOSE
    length = _content_length(cl, 502)
    if length is None:
        return UNTIL_CLOSE
    return Framing(KIND_LENGTH, length)


def canonical_framing(index: FieldIndex) -> bool:
    """Whether the framing fields of a head that passed the checks above, with
    canonical field lines, are written as the writer would write them.

    ``Content-Length`` without leading zeros ("010" goes out as "10", hazard
    4) and ``Transfer-Encoding`` exactly "chunked" (not "Chunked", ",chunked"
    nor another coding: hazards 7 and 10). Values in the index are raw, so
    a canonical line's value is " " and the value.
    """
    cl = index.get(b"content-length")
    if cl is not None and (len(cl) > 1 or (cl[0][1:2] == b"0" and cl[0] != b" 0")):
        return False
    te = index.get(b"transfer-encoding")
    return te is None or (len(te) == 1 and te[0] == b" chunked")
