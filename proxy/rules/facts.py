"""What rules may look at for one exchange: ``RequestInfo`` and ``Facts``.

``RequestInfo`` is the frozen description the session fills in. ``Facts``
wraps it for one evaluation and computes derived values (lower-cased
header map, parsed query, client address, decoded bodies, parsed JSON)
once, on first use, so a rule set that never looks at headers never pays for
building the header map.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

from proxy.http1.events import Fields
from proxy.rules import body as codec

if TYPE_CHECKING:
    from proxy.grpc.schema import SchemaRegistry


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """A request as the client sent it (before any rule edits)."""

    scheme: str  # "http" or "https"
    host: str  # without port; case as received
    port: int
    method: str  # case-sensitive (RFC 9110 §9.1)
    path: str  # as on the wire, percent-encoded, without the query
    query: str  # without the "?"; "" when absent
    fields: Fields = ()
    client_ip: str = ""
    mode: str = "regular"
    # gRPC schemas (--proto-path): rules matching message fields decode with them.
    schemas: SchemaRegistry | None = field(default=None, compare=False)

    @property
    def url(self) -> str:
        return make_url(self.scheme, self.host, self.port, self.path, self.query)


DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def make_url(scheme: str, host: str, port: int, path: str, query: str) -> str:
    """``scheme://host[:port]path[?query]``, the port omitted when default."""
    hostport = host if DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    return f"{scheme}://{hostport}{path}{'?' + query if query else ''}"


class Unset(enum.Enum):
    UNSET = 0


UNSET: Final = Unset.UNSET
Body = bytes | None | Unset  # decoded bytes, None (unavailable), or not provided yet

_UNRESERVED_PCT = re.compile(r"%(2[DdEe]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff]|7[Ee])")


def normalize_path(path: str) -> str:
    """Path used for matching: unreserved %-escapes decoded and dot segments removed.

    RFC 3986 §6.2.2.2 and §5.2.4, so ``/%61dmin`` and ``/x/../admin`` cannot
    slip past a rule on ``/admin``. ``//`` is kept: it is a distinct path.
    """
    if "%" in path:
        path = _UNRESERVED_PCT.sub(lambda m: chr(int(m.group(1), 16)), path)
    if "/." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/".join(out) or "/"


def match_host(host: str) -> str:
    """The host as matchers see it: lower case, without a trailing dot."""
    return host.lower().rstrip(".")


class Facts:
    """One evaluation's view of an exchange, with derived values cached."""

    __slots__ = (
        "_client",
        "_headers",
        "_json",
        "_query",
        "_resp_headers",
        "host",
        "info",
        "max_body",
        "path",
        "req_body",
        "resp_body",
        "resp_fields",
        "status",
        "warnings",
    )

    def __init__(self, info: RequestInfo, max_body: int = codec.DEFAULT_LIMIT) -> None:
        self.info = info
        self.host = match_host(info.host)
        self.path = normalize_path(info.path)
        self.max_body = max_body
        self.req_body: Body = UNSET
        self.resp_body: Body = UNSET
        self.status = 0
        self.resp_fields: Fields = ()
        self.warnings: list[str] = []
        self._headers: dict[str, list[str]] | None = None
        self._resp_headers: dict[str, list[str]] | None = None
        self._query: dict[str, list[str]] | None = None
        self._client: ipaddress.IPv4Address | ipaddress.IPv6Address | Unset | None = UNSET
        self._json: dict[bool, Any] = {}

    def copy(self) -> Facts:
        """A copy that a resumed evaluation may change without touching this one."""
        other = Facts.__new__(Facts)
        for name in Facts.__slots__:
            setattr(other, name, getattr(self, name))
        other.warnings = list(self.warnings)
        other._json = dict(self._json)
        return other

    @property
    def headers(self) -> dict[str, list[str]]:
        if self._headers is None:
            self._headers = _header_map(self.info.fields)
        return self._headers

    @property
    def resp_headers(self) -> dict[str, list[str]]:
        if self._resp_headers is None:
            self._resp_headers = _header_map(self.resp_fields)
        return self._resp_headers

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            q: dict[str, list[str]] = {}
            for k, v in parse_qsl(self.info.query, keep_blank_values=True):
                q.setdefault(k, []).append(v)
            self._query = q
        return self._query

    @property
    def client(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        if self._client is UNSET:
            try:
                self._client = ipaddress.ip_address(self.info.client_ip.split("%")[0])
            except ValueError:
                self._client = None
        return self._client

    @property
    def content_type(self) -> str:
        values = self.resp_headers.get("content-type")
        return values[0].split(";")[0].strip().lower() if values else ""

    def set_body(self, response: bool, raw: bytes | None) -> None:
        """Record a buffered body (``None``: over --max-body, not buffered)."""
        fields = self.resp_fields if response else self.info.fields
        side = "response" if response else "request"
        decoded: bytes | None = None
        if raw is None:
            self.warnings.append(f"{side} body over --max-body: body rules skipped")
        else:
            try:
                decoded = codec.decode(raw, codec.codings_of(fields), self.max_body)
            except codec.CodecError as e:
                self.warnings.append(f"{side} body not decoded: {e}")
        if response:
            self.resp_body = decoded
        else:
            self.req_body = decoded

    def body(self, response: bool) -> bytes | None:
        value = self.resp_body if response else self.req_body
        return None if value is UNSET else value

    def json(self, response: bool) -> Any:
        """The body parsed as JSON, or ``UNSET`` when it is not JSON."""
        if response not in self._json:
            data = self.body(response)
            try:
                self._json[response] = UNSET if data is None else json.loads(data)
            except (ValueError, RecursionError):
                self._json[response] = UNSET
        return self._json[response]


def _header_map(fields: Fields) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in fields:
        out.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return out
