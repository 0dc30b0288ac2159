"""An HTTP/2 request's header block, checked and turned into our request head.

``h2`` already rejects (as a connection error) what it knows to be
malformed: duplicate, unknown or misplaced pseudo-headers, connection
headers, ``te`` other than ``trailers``, empty names, CR/LF/NUL. What a
downgrade to HTTP/1.1 additionally needs is checked here, each from RFC 9113
§8.2-8.3, so that the head we build can be framed onto an HTTP/1.1
connection one way only: names lowercase tokens, values without surrounding
whitespace, ``:method`` a token, ``:path`` origin-form (``*`` only for
OPTIONS) with nothing that would split a request line, ``:authority``
without userinfo and agreeing with ``host``, ``content-length`` one number.

The head: ``:method``, a target (absolute-form for a forward proxy, else
the path), version ``2.0``, the regular fields in order with ``host`` from
``:authority`` when the client sent none and ``cookie`` fields joined
(RFC 9113 §8.2.3), and framing from ``content-length`` or the stream's end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.http1 import NO_BODY, Framing, FramingKind, RequestHead
from proxy.http1.fields import build_index

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
_LENGTH = FramingKind.LENGTH
_EDGE_WS = b" \t"  # what a value may not start or end with (RFC 9113 §8.2.1)
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})


class MalformedRequest(Exception):
    """The header block is malformed (RFC 9113 §8.1.1): a stream error."""


@dataclass(frozen=True, slots=True)
class Pseudo:
    method: bytes
    scheme: bytes
    authority: bytes
    path: bytes


def split_block(headers: list[tuple[bytes, bytes]]) -> tuple[Pseudo, list[tuple[bytes, bytes]]]:
    """The pseudo-headers and the regular fields of a request block, checked."""
    pseudo: dict[bytes, bytes] = {}
    fields: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        # RFC 9113 §8.2.1: no NUL, CR or LF; no leading or trailing SP or HTAB.
        if value and (
            b"\0" in value
            or b"\r" in value
            or b"\n" in value
            or value[0] in _EDGE_WS
            or value[-1] in _EDGE_WS
        ):
            raise MalformedRequest(f"invalid characters in the value of {name!r}")
        if name[:1] == b":":
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
    if not pseudo.keys() <= _REQUEST_PSEUDO:
        unknown = set(pseudo) - _REQUEST_PSEUDO
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


def _framing(lengths: list[bytes] | None, ended: bool) -> Framing:
    """From the values of the block's ``content-length`` fields (None: there is none)."""
    if lengths is None:
        return NO_BODY if ended else _CHUNKED
    if len(lengths) > 1 and len(set(lengths)) > 1:
        raise MalformedRequest("content-length fields disagree")
    value = lengths[0]
    if not value.isdigit() or len(value) > 18:
        raise MalformedRequest(f"invalid content-length {value[:20]!r}")
    length = int(value)
    if ended and length:
        raise MalformedRequest("content-length without the DATA it announces")
    return Framing(_LENGTH, length)


def request_head(
    headers: list[tuple[bytes, bytes]], ended: bool, absolute: bool
) -> tuple[RequestHead, Pseudo]:
    """The request head for a stream's header block; ``ended``: END_STREAM came
    with it; ``absolute``: a forward proxy's target (scheme://authority/path).

    The field index (``host``, ``content-length``... by name) is built once,
    from the checked fields, and read for the host and the framing; cookie
    fields are not indexed, and the ``host`` put in from ``:authority`` is
    added to it.
    """
    pseudo, fields = split_block(headers)
    index = build_index(fields)  # type: ignore[arg-type]
    hosts = index.get(b"host")
    authority = pseudo.authority
    if hosts is not None and (len(hosts) > 1 or (authority and hosts[0] != authority)):
        raise MalformedRequest(":authority and host disagree (RFC 9113 §8.3.1)")
    if not authority and hosts:
        authority = hosts[0]
    cookies = [v for k, v in fields if k == b"cookie"]
    if len(cookies) > 1:  # RFC 9113 §8.2.3: one field again for HTTP/1.1
        fields = [(k, v) for k, v in fields if k != b"cookie"]
        fields.append((b"cookie", b"; ".join(cookies)))
    if hosts is None and authority:
        fields.insert(0, (b"host", authority))
        index[b"host"] = [authority]
    method = pseudo.method
    if method == b"CONNECT":
        target = authority
    elif absolute:  # OPTIONS *: the authority alone (RFC 9112 §3.2.4)
        path = b"" if pseudo.path == b"*" else pseudo.path
        target = pseudo.scheme + b"://" + authority + path
    else:
        target = pseudo.path
    framing = _framing(index.get(b"content-length"), ended)
    head = RequestHead(method, target, b"2.0", tuple(fields), framing, index)
    if authority is pseudo.authority:
        return head, pseudo
    return head, Pseudo(method, pseudo.scheme, authority, pseudo.path)
