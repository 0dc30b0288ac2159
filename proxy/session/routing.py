"""Which way a server connection leaves the proxy: direct, or through a next proxy.

A route is decided per ``host:port`` when a server connection is opened
(``OpenServer.via``), in this order:

1. a connection-level rule with ``route: {via: ...}`` (``tcp:`` section of
   the rules, first match; ``via: direct`` forces a direct connection);
2. the bypass list (``--upstream-bypass``, else the ``NO_PROXY`` environment
   variable): matching hosts go direct;
3. the listener's next proxy (``--mode upstream:URL``), if any.

``via`` is a URL: ``http://[user:pass@]host:port`` (CONNECT tunnels, and
plain requests sent in absolute-form, RFC 9112 §3.2.2) or
``socks5://[user:pass@]host:port`` (RFC 1928, with RFC 1929 credentials).
Records name it without the credentials (``redact``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, replace

from proxy.flow.record import RouteInfo
from proxy.http1 import ProtocolError, RequestHead
from proxy.rules import RuleSet
from proxy.session.config import SessionConfig
from proxy.session.target import Target, host_field, parse_authority
from proxy.via import DIRECT, Bypass, NextProxy, parse_via, redact

__all__ = ["DIRECT", "Bypass", "NextProxy", "Router", "parse_via", "redact"]


@dataclass(frozen=True, slots=True)
class Router:
    """The route for ``host:port`` on one listener (see the module docstring)."""

    mode: str = "regular"
    default: str | None = None  # --mode upstream:URL (with --upstream-auth folded in)
    bypass: Bypass | None = None
    rules: Callable[[], RuleSet | None] | None = None  # the rules in force, if any

    def __call__(self, host: str, port: int) -> str | None:
        get = self.rules
        ruleset = get() if get is not None else None
        if ruleset is not None:
            chosen = ruleset.route_for(host, port, self.mode)
            if chosen is not None:
                return None if chosen == DIRECT else chosen
        if self.default is None:
            return None
        if self.bypass is not None and self.bypass.matches(host, port):
            return None
        return self.default


def via_for(config: SessionConfig, host: str, port: int) -> str | None:
    """The route of a new server connection to ``host:port`` on this listener."""
    route = config.route
    return None if route is None else route(host, port)


def route_info(config: SessionConfig, host: str, port: int) -> RouteInfo:
    """What records say of the route to ``host:port``."""
    return RouteInfo(redact(via_for(config, host, port)), config.original_dst)


def named_url(target: Target, head: RequestHead, config: SessionConfig) -> str:
    """The URL of a transparent flow with the name the client used: the SNI it
    sent (TLS), else its Host; the connection itself goes to the original
    destination's address whatever the name says."""
    up = config.upstream
    name = up.sni if up is not None and up.sni else None
    if name is None:
        try:
            host = host_field(head)
            name = parse_authority(host, target.port)[0] if host else None
        except ProtocolError:
            name = None
    if not name or name == target.host:
        return target.url
    return replace(target, host=name).url


def next_proxy(via: str | None) -> NextProxy | None:
    """The parsed next proxy of a route (None: direct)."""
    return None if via is None else parse_via(via)


def proxy_authorization(proxy: NextProxy) -> list[tuple[bytes, bytes]]:
    """``Proxy-Authorization: Basic`` for the next proxy (RFC 7617), if it has credentials."""
    if proxy.user is None:
        return []
    token = base64.b64encode(f"{proxy.user}:{proxy.password or ''}".encode())
    return [(b"Proxy-Authorization", b"Basic " + token)]


def forwards_plain(via: str | None) -> NextProxy | None:
    """The HTTP next proxy a plain request is sent to in absolute-form, if any."""
    proxy = next_proxy(via)
    return proxy if proxy is not None and proxy.is_http else None
