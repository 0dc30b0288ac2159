"""An HTTP/2 request block's checks and head as they were at dd1dfba, kept as the reference.

``proxy.layers.http2.request`` was rewritten for speed (issue 22 item 4: fewer
calls per stream); ``tests/unit/test_h2_request_same.py`` holds its verdicts,
error messages and heads to this version's for generated blocks. Do not
edit: it is the definition the faster code must agree with.
"""

from __future__ import annotations

import re

from proxy.http1 import NO_BODY, Framing, FramingKind, RequestHead
from proxy.http1.fields import build_index
from proxy.layers.http2.request import MalformedRequest, Pseudo  # the same types

# RFC 9110 §5.6.2 token characters, lowercase only for HTTP/2 names (RFC 9113 §8.2.1).
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A path as a request line can carry it: visible ASCII (and obs-text), no '#'.
_PATH = re.compile(rb"/[\x21-\x22\x24-\x7e\x80-\xff]*")
_AUTHORITY = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=%\[\]:]+")
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_CHUNKED = Framing(FramingKind.CHUNKED)


def _value_ok(value: bytes) -> bool:
    """RFC 9113 §8.2.1: no NUL, CR or LF; no leading or trailing SP or HTAB."""
    if b"\0" in value or b"\r" in value or b"\n" in value:
        return False
    return not value or (value[0] not in b" \t" and value[-1] not in b" \t")


def split_block(headers: list[tuple[bytes, bytes]]) -> tuple[Pseudo, list[tuple[bytes, bytes]]]:
    """The pseudo-headers and the regular fields of a request block, checked."""
    pseudo: dict[bytes, bytes] = {}
    fields: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if not _value_ok(value):
            raise MalformedRequest(f"invalid characters in the value of {name!r}")
        if name.startswith(b":"):
            if fields or name in pseudo:
                raise MalformedRequest(f"pseudo-header {name!r} misplaced or repeated")
            pseudo[name] = value
            continue
        if not _NAME.fullmatch(name):
            raise MalformedRequest(f"invalid field name {name[:40]!r} (RFC 9113 §8.2.1)")
        if name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
            raise MalformedRequest(f"connection-specific field {name!r} (RFC 9113 §8.2.2)")
        fields.append((name, value))
    return _pseudo(pseudo), fields


def _pseudo(pseudo: dict[bytes, bytes]) -> Pseudo:
    unknown = set(pseudo) - {b":method", b":scheme", b":authority", b":path"}
    if unknown:
        raise MalformedRequest(f"pseudo-header {sorted(unknown)[0]!r} on a request")
    method = pseudo.get(b":method", b"")
    if not _METHOD.fullmatch(method):
        raise MalformedRequest(f"invalid :method {method[:40]!r}")
    authority = pseudo.get(b":authority", b"")
    if authority and (b"@" in authority or not _AUTHORITY.fullmatch(authority)):
        raise MalformedRequest(f"invalid :authority {authority[:60]!r} (RFC 9113 §8.3.1)")
    if method == b"CONNECT":  # RFC 9113 §8.5: authority only
        if b":scheme" in pseudo or b":path" in pseudo or not authority:
            raise MalformedRequest("CONNECT needs :authority and no :scheme or :path")
        return Pseudo(method, b"", authority, b"")
    scheme, path = pseudo.get(b":scheme"), pseudo.get(b":path")
    if scheme is None or path is None:
        raise MalformedRequest("missing :scheme or :path (RFC 9113 §8.3.1)")
    if not (_PATH.fullmatch(path) or (path == b"*" and method == b"OPTIONS")):
        raise MalformedRequest(f"invalid :path {path[:80]!r} (RFC 9113 §8.3.1)")
    if scheme not in (b"http", b"https"):
        raise MalformedRequest(f"unsupported :scheme {scheme[:20]!r}")
    return Pseudo(method, scheme, authority, path)


def _framing(fields: list[tuple[bytes, bytes]], ended: bool) -> Framing:
    lengths = {v for k, v in fields if k == b"content-length"}
    if len(lengths) > 1:
        raise MalformedRequest("content-length fields disagree")
    if lengths:
        value = lengths.pop()
        if not value.isdigit() or len(value) > 18:
            raise MalformedRequest(f"invalid content-length {value[:20]!r}")
        length = int(value)
        if ended and length:
            raise MalformedRequest("content-length without the DATA it announces")
        return Framing(FramingKind.LENGTH, length)
    return NO_BODY if ended else _CHUNKED


def request_head(
    headers: list[tuple[bytes, bytes]], ended: bool, absolute: bool
) -> tuple[RequestHead, Pseudo]:
    """The request head for a stream's header block; ``ended``: END_STREAM came
    with it; ``absolute``: a forward proxy's target (scheme://authority/path)."""
    pseudo, fields = split_block(headers)
    hosts = [v for k, v in fields if k == b"host"]
    authority = pseudo.authority
    if len(hosts) > 1 or (hosts and authority and hosts[0] != authority):
        raise MalformedRequest(":authority and host disagree (RFC 9113 §8.3.1)")
    if not authority and hosts:
        authority = hosts[0]
    cookies = [v for k, v in fields if k == b"cookie"]
    if len(cookies) > 1:  # RFC 9113 §8.2.3: one field again for HTTP/1.1
        fields = [(k, v) for k, v in fields if k != b"cookie"]
        fields.append((b"cookie", b"; ".join(cookies)))
    if not hosts and authority:
        fields.insert(0, (b"host", authority))
    if pseudo.method == b"CONNECT":
        target = authority
    elif absolute:  # OPTIONS *: the authority alone (RFC 9112 §3.2.4)
        path = b"" if pseudo.path == b"*" else pseudo.path
        target = pseudo.scheme + b"://" + authority + path
    else:
        target = pseudo.path
    framing = _framing(fields, ended)
    kept = tuple(fields)
    head = RequestHead(pseudo.method, target, b"2.0", kept, framing, build_index(kept))
    return head, Pseudo(pseudo.method, pseudo.scheme, authority, pseudo.path)
