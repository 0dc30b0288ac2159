"""What a decoded HTTP/2 header list says: the pseudo-header fields (RFC 9113 §8.3).

A request's method, target and URL come from ``:method``, ``:scheme``,
``:authority`` and ``:path`` (§8.3.1; ``Host`` stands in for a missing
``:authority``, §8.3.1 allows either), a response's status from
``:status`` (§8.3.2). The records keep the regular fields only: the
pseudo-header fields are what the method, URL and status already say.
"""

from __future__ import annotations

from proxy.pcap.records import Pairs, text_pairs

Headers = list[tuple[bytes, bytes]]


def request_line(headers: Headers, scheme: str) -> tuple[str | None, str | None, str | None]:
    """Method, target and URL; ``scheme`` is used when ``:scheme`` is missing."""
    pseudo: dict[bytes, bytes] = {}
    host = None
    for name, value in headers:
        if name.startswith(b":"):
            pseudo.setdefault(name, value)
        elif name == b"host" and host is None:
            host = value
    method, path = pseudo.get(b":method"), pseudo.get(b":path")
    authority = pseudo.get(b":authority") or host
    url = _text(path)
    if method == b"CONNECT" and path is None:
        url = _text(authority)  # §8.5: authority-form
    elif path is not None and path.startswith(b"/") and authority:
        scheme_b = pseudo.get(b":scheme") or scheme.encode()
        url = f"{scheme_b.decode('latin-1')}://{authority.decode('latin-1')}{_text(path)}"
    return _text(method), _text(path) or _text(authority), url


def response_status(headers: Headers) -> int | None:
    """The ``:status`` as a number, None if missing or not three digits (§8.3.2)."""
    for name, value in headers:
        if name == b":status":
            return int(value) if len(value) == 3 and value.isdigit() else None
    return None


def regular(headers: Headers) -> Pairs:
    """The fields that are not pseudo-header fields, as text."""
    return text_pairs(tuple((k, v) for k, v in headers if not k.startswith(b":")))


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
