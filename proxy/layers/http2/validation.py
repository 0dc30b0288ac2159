"""h2's inbound header validation, with a fast path that decides nothing on its own.

h2 checks every header block it receives (RFC 9113 §8.2-8.3: field name and
value characters, connection-specific fields, ``te``, pseudo-headers,
``:authority``/``host``, an empty ``:path``) through a chain of seven
generators, two of them walking names and values one byte at a time in
Python: ~5% of the proxy's CPU per HTTP/2 request in scenario h, on both
legs.

``validate_headers`` answers in one pass, with C-level scans, for the
blocks that are plainly well formed: lowercase token names, values free of
NUL/CR/LF and surrounding whitespace, no connection-specific field, ``te``
exactly ``trailers``, the pseudo-headers a request (non-CONNECT), a
response or trailers must have and no others, in front, once each, and for
a request a non-empty ``:path``, one ``host`` at most that equals
``:authority``. Every such block is one h2 accepts (``fast_ok`` implies
h2's verdict, a property test holds it to that). Anything else, however
slightly unusual, goes to h2's own ``validate_headers`` unchanged, so what
is refused, with which message, is exactly what h2 refuses: the check is as
strict as before by construction, only cheaper.

``install()`` puts it in h2's stream module where h2 calls its own, and
only when that is still h2's original (another h2 version without the name
keeps its own, slower validation).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import h2.stream
import h2.utilities
from h2.utilities import CONNECTION_HEADERS, HeaderValidationFlags
from hpack.struct import Header  # a pair of bytes, as h2 hands header blocks around

ORIGINAL = h2.utilities.validate_headers
_STREAM_MODULE = vars(h2.stream)  # where h2 looks the function up when it validates
# RFC 9110 §5.6.2 token characters, lowercase (RFC 9113 §8.2.1): no byte h2 refuses.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
# RFC 9113 §8.2.1: NUL, CR or LF anywhere, SP or HTAB first or last.
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
_REQUEST = frozenset({b":method", b":scheme", b":path"})
_REQUEST_AUTHORITY = _REQUEST | {b":authority"}
_STATUS = frozenset({b":status"})


def fast_ok(headers: list[Header], flags: HeaderValidationFlags) -> bool:
    """True only for a block h2 accepts; False: let h2 decide."""
    if flags.is_push_promise:
        return False
    seen: set[bytes] = set()
    regular = False
    hosts: list[bytes] = []
    method = authority = path = None
    for header in headers:
        name, value = header[0], header[1]
        if _BAD_VALUE.search(value) is not None:
            return False
        if name[:1] == b":":
            if regular or name in seen:
                return False
            seen.add(name)
            if name == b":method":
                method = value
            elif name == b":authority":
                authority = value
            elif name == b":path":
                path = value
            continue
        regular = True
        if _TOKEN.fullmatch(name) is None or name in CONNECTION_HEADERS:
            return False
        if name == b"te" and value != b"trailers":
            return False
        if name == b"host":
            hosts.append(value)
    if flags.is_trailer:  # h2: no pseudo-header at all, and :status if also a response
        return not seen and not flags.is_response_header
    if flags.is_response_header:
        return seen == _STATUS
    if seen != _REQUEST and seen != _REQUEST_AUTHORITY:
        return False
    if method == b"CONNECT" or not path or len(hosts) > 1:
        return False
    if authority is None:
        return bool(hosts)
    return not hosts or hosts[0] == authority


def validate_headers(headers: Iterable[Header], flags: HeaderValidationFlags) -> Iterable[Header]:
    """h2's ``validate_headers``: the same headers back, or h2's own ProtocolError."""
    block = headers if isinstance(headers, list) else list(headers)
    if fast_ok(block, flags):
        return block
    return ORIGINAL(block, flags)


def install() -> None:
    """Have h2 call ``validate_headers`` for inbound blocks (idempotent)."""
    if _STREAM_MODULE.get("validate_headers") is ORIGINAL:
        _STREAM_MODULE["validate_headers"] = validate_headers
