"""The ``tcp:`` section: connection-level rules with Toxiproxy-style toxics.

A TCP rule matches a connection by host, port, listener mode and client
address, applies to one or both directions (``upstream`` is client to
server, ``downstream`` server to client) and, with ``percent``, to that
share of connections (Toxiproxy's "toxicity", drawn once per connection).

A rule may instead (or also) choose the route of connections to a host:
``route: {via: "socks5://127.0.0.1:9050"}`` or ``route: {via: direct}``
(``proxy.session.routing``). A route is chosen per host, port and mode when
a server connection opens, so such a rule may not match on ``client`` or
use ``percent``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from yaml.nodes import Node

from proxy.rules import tcp
from proxy.rules.model import Source
from proxy.rules.patterns import patterns
from proxy.rules.textmatch import StrPred, check_regex, check_template
from proxy.rules.yamlnodes import (
    Doc,
    Entries,
    check_keys,
    integer,
    items,
    mapping,
    nonempty,
    number,
    string,
)
from proxy.via import DIRECT, parse_via

TOXICS = (
    "replace",
    "limit_data",
    "slicer",
    "bandwidth",
    "latency",
    "slow_close",
    "timeout",
    "reset_peer",
)
TCP_RULE_KEYS = ("name", "match", "route", *TOXICS)
TCP_MATCH_KEYS = ("host", "port", "direction", "mode", "client", "percent")
DIRECTIONS = ("upstream", "downstream", "both")
StageFactory = Callable[[tcp.Random], tcp.Stage]


@dataclass(frozen=True, slots=True)
class TcpRule:
    order: int
    name: str
    source: Source
    host: StrPred | None
    ports: frozenset[int]
    modes: frozenset[str]
    clients: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    directions: frozenset[str]
    percent: float | None
    stages: tuple[tuple[str, StageFactory], ...]  # (toxic name, factory), in pipeline order
    route: str | None = None  # "direct" or a next proxy's URL (proxy.via)

    def matches(self, host: str, port: int, mode: str, client_ip: str) -> bool:
        if self.host is not None and not self.host(host.lower()):
            return False
        if self.ports and port not in self.ports:
            return False
        if self.modes and mode not in self.modes:
            return False
        if self.clients:
            try:
                ip = ipaddress.ip_address(client_ip)
            except ValueError:
                return False
            return any(ip in n for n in self.clients)
        return True


def parse_tcp_rule(doc: Doc, node: Node, path: str, order: int, name: str) -> TcpRule | None:
    entries = mapping(doc, node, path, "a TCP rule mapping")
    if entries is None or not check_keys(doc, entries, node, path, TCP_RULE_KEYS):
        return None
    before = len(doc.errors)
    stages = [(k, f) for k in TOXICS if k in entries if (f := _toxic(doc, entries, k, path))]
    if not any(k in entries for k in ("route", *TOXICS)):
        doc.error(node, path, f"a TCP rule needs at least one of {', '.join(TOXICS)}, or route")
    route = _route(doc, entries, path) if "route" in entries else None
    rule = _tcp_match(doc, entries, path)
    if rule is None or len(doc.errors) > before:
        return None
    host, ports, modes, clients, directions, percent = rule
    if route is not None and (clients or percent is not None):
        what = "match.client" if clients else "match.percent"
        why = f"a route is chosen per host, port and mode: it cannot be combined with {what}"
        doc.error(entries["route"][1], f"{path}.route", why)
        return None
    source = Source(doc.file, node.start_mark.line + 1)
    return TcpRule(
        order, name, source, host, ports, modes, clients, directions, percent, tuple(stages), route
    )


def _route(doc: Doc, entries: Entries, path: str) -> str | None:
    """``route: {via: URL}`` or ``route: {via: direct}``."""
    node, sub = entries["route"][1], f"{path}.route"
    m = mapping(doc, node, sub)
    if m is None or not check_keys(doc, m, node, sub, ("via",), ("via",)):
        return None
    via = nonempty(doc, m["via"][1], f"{sub}.via")
    if via is None or via == DIRECT:
        return via
    try:
        parse_via(via)
    except ValueError as e:
        doc.error(m["via"][1], f"{sub}.via", f"{e}, or direct")
        return None
    return via


def _tcp_match(
    doc: Doc, entries: Entries, path: str
) -> (
    tuple[
        StrPred | None,
        frozenset[int],
        frozenset[str],
        tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
        frozenset[str],
        float | None,
    ]
    | None
):
    if "match" not in entries:
        return None, frozenset(), frozenset(), (), frozenset(("upstream", "downstream")), None
    node, path = entries["match"][1], f"{path}.match"
    m = mapping(doc, node, path)
    if m is None or not check_keys(doc, m, node, path, TCP_MATCH_KEYS, what="matcher"):
        return None
    host = None
    if "host" in m:
        pats = patterns(doc, m["host"][1], f"{path}.host", ("exact", "glob", "regex"), fold=True)
        host = StrPred(pats, ignore_case=True) if pats else None
    ports = (
        {integer(doc, n, p, 1, 65535) for n, p in items(m["port"][1], f"{path}.port")}
        if "port" in m
        else set()
    )
    modes = (
        {string(doc, n, p) for n, p in items(m["mode"][1], f"{path}.mode")}
        if "mode" in m
        else set()
    )
    clients = []
    for n, p in items(m["client"][1], f"{path}.client") if "client" in m else []:
        try:
            clients.append(ipaddress.ip_network(nonempty(doc, n, p) or "", strict=False))
        except ValueError as e:
            doc.error(n, p, f"invalid network: {e}")
    direction = string(doc, m["direction"][1], f"{path}.direction") if "direction" in m else "both"
    if direction not in DIRECTIONS:
        doc.error(
            m["direction"][1], f"{path}.direction", f"expected one of {', '.join(DIRECTIONS)}"
        )
    directions = (
        frozenset(("upstream", "downstream"))
        if direction == "both"
        else frozenset((str(direction),))
    )
    percent = number(doc, m["percent"][1], f"{path}.percent", 0, 100) if "percent" in m else None
    return (
        host,
        frozenset(p for p in ports if p is not None),
        frozenset(x for x in modes if x is not None),
        tuple(clients),
        directions,
        percent,
    )


_PARAMS: dict[str, dict[str, tuple[bool, float, float | None]]] = {
    # toxic: {parameter: (required, min, max)}
    "latency": {"ms": (True, 0, None), "jitter_ms": (False, 0, None)},
    "bandwidth": {"bytes_per_second": (True, 1, None)},
    "slicer": {
        "average_size": (True, 1, None),
        "size_variation": (False, 0, None),
        "delay_ms": (False, 0, None),
    },
    "limit_data": {"bytes": (True, 0, None)},
    "slow_close": {"delay_ms": (True, 0, None)},
    "timeout": {"ms": (True, 0, None)},
    "reset_peer": {"timeout_ms": (False, 0, None)},
    "replace": {"window": (False, 1, 1 << 20), "flush_ms": (False, 0, 60_000)},
}


_INTEGERS = ("bytes", "bytes_per_second", "average_size", "size_variation", "window")


def _toxic(doc: Doc, entries: Entries, key: str, path: str) -> StageFactory | None:
    node, sub = entries[key][1], f"{path}.{key}"
    m = mapping(doc, node, sub)
    spec = _PARAMS[key]
    allowed = [*spec, "regex", "literal", "with"] if key == "replace" else list(spec)
    required = [k for k, (req, _, _) in spec.items() if req] + (
        ["with"] if key == "replace" else []
    )
    if m is None or not check_keys(doc, m, node, sub, allowed, required):
        return None
    v: dict[str, float] = {}
    for name, (_, lo, hi) in spec.items():
        if name not in m:
            continue
        vnode, vpath = m[name][1], f"{sub}.{name}"
        if name in _INTEGERS:
            x: float | None = integer(doc, vnode, vpath, int(lo), None if hi is None else int(hi))
        else:
            x = number(doc, vnode, vpath, lo, hi)
        if x is not None:
            v[name] = x
    if any(name not in v for name in required if name != "with"):
        return None  # a required value was invalid: already reported
    if key == "replace":
        return _replace(doc, m, node, sub, int(v.get("window", 4096)), v.get("flush_ms", 20.0))
    if key == "slicer" and v.get("size_variation", 0) >= v.get("average_size", 1):
        doc.error(node, sub, "size_variation must be smaller than average_size")
        return None
    return _factory(key, v)


def _factory(key: str, v: dict[str, float]) -> StageFactory:
    if key == "latency":
        return lambda rng: tcp.Latency(v["ms"], v.get("jitter_ms", 0.0), rng)
    if key == "bandwidth":
        return lambda rng: tcp.Bandwidth(int(v["bytes_per_second"]))
    if key == "slicer":
        avg, var, delay = (
            int(v["average_size"]),
            int(v.get("size_variation", 0)),
            v.get("delay_ms", 0.0),
        )
        return lambda rng: tcp.Slicer(avg, var, delay, rng)
    if key == "limit_data":
        return lambda rng: tcp.LimitData(int(v["bytes"]))
    if key == "slow_close":
        return lambda rng: tcp.SlowClose(v["delay_ms"])
    if key == "timeout":
        return lambda rng: tcp.Timeout(v["ms"])
    return lambda rng: tcp.ResetPeer(v.get("timeout_ms", 0.0))


def _replace(
    doc: Doc, m: Entries, node: Node, path: str, window: int, flush_ms: float
) -> StageFactory | None:
    if ("regex" in m) == ("literal" in m):
        doc.error(node, path, "expected exactly one of regex, literal")
        return None
    kind = "regex" if "regex" in m else "literal"
    text = string(doc, m[kind][1], f"{path}.{kind}")
    template = string(doc, m["with"][1], f"{path}.with")
    if text is None or template is None:
        return None
    if kind == "literal":
        text, template = re.escape(text), template.replace("\\", "\\\\")
    elif (error := check_regex(text, as_bytes=True)) is not None:
        doc.error(m[kind][1], f"{path}.{kind}", error)
        return None
    regex = re.compile(text.encode())
    if (error := check_template(template, regex)) is not None:
        doc.error(m["with"][1], f"{path}.with", error)
        return None
    data = template.encode()
    return lambda rng: tcp.Replace(regex, data, window, flush_ms)
