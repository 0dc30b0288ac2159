"""Where a request goes: request-target forms and Host (RFC 9112 §3.2).

The proxy decides the upstream from its own parse of the request-target and
makes ``Host`` agree with it, so the server can never see a request whose
Host names a different origin than the one we connected to (hazard 23).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.http1 import ProtocolError, RequestHead
from proxy.http1.fields import index_of, indexed_values
from proxy.session.config import SessionConfig

_HOST = rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+;=]+)"
_AUTHORITY = re.compile(_HOST + rb"(?::([0-9]{0,5}))?")
_ABSOLUTE = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)([^#]*)")
DEFAULT_PORTS = {"http": 80, "https": 443}
_WS_SCHEMES = {"ws": "http", "wss": "https"}


@dataclass(frozen=True, slots=True)
class Target:
    """The upstream a request is for and the path to send it."""

    scheme: str  # "http" or "https"
    host: str  # without brackets for IPv6
    port: int
    path: bytes  # origin-form: path and query, or "*" for OPTIONS

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if DEFAULT_PORTS.get(self.scheme) == self.port:
            return host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        path = self.path.decode("latin-1")
        return f"{self.scheme}://{self.authority}{'' if path == '*' else path}"


_authorities: dict[tuple[bytes, int | None], tuple[str, int]] = {}


def parse_authority(raw: bytes, default_port: int | None) -> tuple[str, int]:
    """``host[:port]`` into a pair; userinfo, lists and bad ports are errors.

    Hot path: clients name the same few authorities again and again, so
    results are memoised (a bounded table, emptied when full).
    """
    key = (raw, default_port)
    cached = _authorities.get(key)
    if cached is not None:
        return cached
    result = _parse_authority(raw, default_port)
    if len(_authorities) >= 4096:
        _authorities.clear()
    _authorities[key] = result
    return result


def _parse_authority(raw: bytes, default_port: int | None) -> tuple[str, int]:
    if b"@" in raw:
        raise ProtocolError(400, "userinfo in authority")  # RFC 9110 §4.2.4
    m = _AUTHORITY.fullmatch(raw)
    if m is None:
        raise ProtocolError(400, f"invalid authority {raw[:60]!r}")
    host = m.group(1).decode("ascii")
    if host.startswith("["):
        host = host[1:-1]
    port_raw = m.group(2)
    if port_raw:
        port = int(port_raw)
        if not 0 < port < 65536:
            raise ProtocolError(400, f"invalid port in {raw[:60]!r}")
    elif default_port is None:
        raise ProtocolError(400, f"authority without a port {raw[:60]!r}")
    else:
        port = default_port
    return host.lower(), port


def host_field(head: RequestHead) -> bytes | None:
    """The single Host value; several, or a list, is an error (RFC 9112 §3.2)."""
    hosts = indexed_values(index_of(head), b"host")
    if len(hosts) > 1:
        raise ProtocolError(400, "more than one Host field")
    if not hosts:
        if head.version == b"1.1":
            raise ProtocolError(400, "missing Host field")
        return None
    if b"," in hosts[0]:
        raise ProtocolError(400, "Host field is a list")
    return hosts[0]


def connect_target(head: RequestHead) -> tuple[str, int]:
    """The ``host:port`` of a CONNECT request (RFC 9112 §3.2.3)."""
    if head.framing.kind.value != "none":
        raise ProtocolError(400, "CONNECT request with a body")  # RFC 9110 §9.3.6
    host, port = parse_authority(head.target, None)
    # RFC 9112 §3.2 holds for CONNECT too: exactly one valid Host (HTTP/1.0
    # may omit it; hazard 22), even though the tunnel goes where the target says.
    host_value = host_field(head)
    if host_value is not None:
        parse_authority(host_value, port)
    return host, port


def forward_target(head: RequestHead) -> Target:
    """Target of a request sent to a forward proxy: absolute-form required."""
    host_value = host_field(head)
    m = _ABSOLUTE.fullmatch(head.target)
    if m is None:
        if head.target.startswith(b"/") or head.target == b"*":
            raise ProtocolError(400, "this is a proxy: send the absolute URL as request target")
        raise ProtocolError(400, f"invalid request target {head.target[:80]!r}")
    scheme = m.group(1).decode("ascii").lower()
    # Some clients (aiohttp, websocket-client) send ws:// URLs in absolute
    # form; the handshake itself is plain HTTP/1.1 (RFC 6455 §4.1).
    scheme = _WS_SCHEMES.get(scheme, scheme)
    if scheme not in ("http", "https"):
        raise ProtocolError(400, f"unsupported scheme {scheme!r}")
    host, port = parse_authority(m.group(2), DEFAULT_PORTS[scheme])
    if not host:
        raise ProtocolError(400, "empty host in request target")
    if host_value is not None and host_value != m.group(2):
        parse_authority(host_value, DEFAULT_PORTS[scheme])  # must at least be valid
    # RFC 9112 §3.2.4: an empty path is "/", except for OPTIONS, where it is "*".
    path = m.group(3) or (b"*" if head.method == b"OPTIONS" else b"/")
    if path.startswith(b"?"):
        path = b"/" + path
    return Target(scheme, host, port, path)


def origin_target(head: RequestHead, scheme: str, host: str, port: int) -> Target:
    """Target of a request to a reverse proxy: origin-form (or absolute-form)."""
    host_value = host_field(head)
    if host_value is not None:
        parse_authority(host_value, DEFAULT_PORTS.get(scheme, 80))
    target = head.target
    if target.startswith(b"/") or (target == b"*" and head.method == b"OPTIONS"):
        return Target(scheme, host, port, target)
    m = _ABSOLUTE.fullmatch(target)
    if m is None or b"@" in m.group(2):
        raise ProtocolError(400, f"invalid request target {target[:80]!r}")
    return Target(scheme, host, port, m.group(3) or b"/")


def route(head: RequestHead, config: SessionConfig) -> Target:
    """Where a request goes: its CONNECT authority, its absolute URL (forward
    mode) or the reverse upstream; never the proxy itself (508, a loop)."""
    up = config.upstream
    if head.method == b"CONNECT":
        if up is not None:
            raise ProtocolError(405, "CONNECT is not accepted by a reverse proxy")
        host, port = connect_target(head)
        target = Target("tunnel", host, port, b"")
    elif up is None:
        target = forward_target(head)
    else:
        target = origin_target(head, up.scheme, up.host, up.port)
    if (target.host, target.port) in config.own_addresses:
        raise ProtocolError(
            508, f"request addressed to the proxy itself ({target.host}:{target.port})"
        )
    return target
