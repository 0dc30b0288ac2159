"""Compile tcpdump-style capture filters into Python predicates.

The accepted language is the part of pcap-filter(7) that matters for
HTTP/TCP analysis:

    expr      := and ( ("or" | "||") and )*
    and       := unary ( ("and" | "&&") unary )*
    unary     := ("not" | "!") unary | "(" expr ")" | primitive
    primitive := [proto] [dir] [type] ID [ "mask" MASK ] | proto
    proto     := "ip" | "ip6" | "tcp" | "udp"
    dir       := "src" | "dst" | "src or dst" | "src and dst"
    type      := "host" | "net" | "port" | "portrange"

with pcap-filter's conveniences: a missing type means ``host``; an ID with
no qualifier at all reuses the qualifiers of the previous primitive
(``port 80 or 443``, ``host a and not b``); ``net`` takes CIDR
(``10.0.0.0/8``), a dotted prefix (``10.1`` = ``10.1.0.0/16``) or ``mask``;
ports may be numbers or service names. Host names are not resolved (offline
analysis should not depend on DNS); use addresses.

``parse_filter`` turns an expression into a small tree of frozen nodes
(``Node``); ``compile_filter`` parses once and returns a closure tree over
``DecodedPacket``, where evaluating it is a handful of attribute compares per
packet. ``proxy.pcap.bpf`` compiles the same tree to classic BPF for the
kernel, so both back ends agree on one parse. Errors raise ``FilterError``
with the character position.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from operator import attrgetter
from typing import TypeVar

from proxy.pcap.decode import IPPROTO_TCP, IPPROTO_UDP, DecodedPacket

Predicate = Callable[[DecodedPacket], bool]
T = TypeVar("T")

_TOKEN = re.compile(r"\s*(?:(\(|\)|&&|\|\||!)|([A-Za-z0-9_.:/\-]+))")
_PROTOS = frozenset({"ip", "ip6", "tcp", "udp"})
_DIRS = frozenset({"src", "dst"})
_TYPES = frozenset({"host", "net", "port", "portrange"})
_KEYWORDS = _PROTOS | _DIRS | _TYPES | {"and", "or", "not", "mask"}
_OPERATORS = frozenset({"(", ")", "!", "&&", "||"})
_UNSUPPORTED = frozenset(
    {
        "ether", "arp", "rarp", "icmp", "icmp6", "sctp", "vlan", "mpls", "len", "less",
        "greater", "gateway", "broadcast", "multicast", "proto", "inbound", "outbound",
        "ifname", "igmp", "pim", "vrrp", "decnet",
    }
)  # fmt: skip


class FilterError(ValueError):
    """A filter expression that does not parse; ``position`` is 0-based."""

    def __init__(self, message: str, position: int, expression: str) -> None:
        caret = " " * position + "^"
        super().__init__(f"{message} (at position {position})\n  {expression}\n  {caret}")
        self.message = message
        self.position = position
        self.expression = expression


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    pos: int


@dataclass(frozen=True, slots=True)
class _Quals:
    proto: str | None
    dir: Dir
    type: str


class Dir(Enum):
    """Which address or port of a packet a primitive looks at."""

    SRC = "src"
    DST = "dst"
    EITHER = "src or dst"
    BOTH = "src and dst"


class Proto(Enum):
    IP = "ip"
    IP6 = "ip6"
    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True, slots=True)
class ProtoTest:
    """``ip``, ``ip6``: the IP version; ``tcp``, ``udp``: the transport protocol."""

    proto: Proto


@dataclass(frozen=True, slots=True)
class AddrTest:
    """``host`` (an all-ones mask) or ``net``: ``addr & mask == net``, 4 or 16 bytes."""

    net: bytes
    mask: bytes
    dir: Dir


@dataclass(frozen=True, slots=True)
class PortTest:
    """``port`` (low == high) or ``portrange``, of TCP or UDP."""

    low: int
    high: int
    dir: Dir


@dataclass(frozen=True, slots=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


Node = ProtoTest | AddrTest | PortTest | And | Or | Not


def parse_filter(expression: str) -> Node:
    """Parse ``expression`` into a tree; raise ``FilterError`` if invalid."""
    return _Parser(expression).parse()


def compile_filter(expression: str) -> Predicate:
    """Compile ``expression`` into a predicate; raise ``FilterError`` if invalid."""
    return to_predicate(parse_filter(expression))


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].isspace():
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            bad = len(text) - len(text[pos:].lstrip())
            raise FilterError(f"unexpected character {text[bad]!r}", bad, text)
        group = 1 if m.group(1) else 2
        tokens.append(_Token(m.group(group), m.start(group)))
        pos = m.end()
    return tokens


class _Parser:
    """Recursive descent over the token list; builds closures as it goes."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.last: _Quals | None = None

    # -- helpers -----------------------------------------------------------
    def peek(self, ahead: int = 0) -> str | None:
        j = self.i + ahead
        return self.tokens[j].text.lower() if j < len(self.tokens) else None

    def pos(self) -> int:
        return self.tokens[self.i].pos if self.i < len(self.tokens) else len(self.text)

    def error(self, message: str, pos: int | None = None) -> FilterError:
        return FilterError(message, self.pos() if pos is None else pos, self.text)

    def is_id(self) -> bool:
        tok = self.peek()
        return tok is not None and tok not in _KEYWORDS and tok not in _OPERATORS

    # -- grammar -------------------------------------------------------------
    def parse(self) -> Node:
        if not self.tokens:
            raise self.error("empty filter expression")
        node = self.expr()
        if self.i < len(self.tokens):
            raise self.error(f"unexpected {self.tokens[self.i].text!r}")
        return node

    def expr(self) -> Node:
        left = self.conj()
        while self.peek() in ("or", "||"):
            self.i += 1
            left = Or(left, self.conj())
        return left

    def conj(self) -> Node:
        left = self.unary()
        while self.peek() in ("and", "&&"):
            self.i += 1
            left = And(left, self.unary())
        return left

    def unary(self) -> Node:
        tok = self.peek()
        if tok in ("not", "!"):
            self.i += 1
            return Not(self.unary())
        if tok == "(":
            self.i += 1
            inner = self.expr()
            if self.peek() != ")":
                raise self.error("expected ')'")
            self.i += 1
            return inner
        return self.primitive()

    def primitive(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise self.error("expected a primitive, found the end of the expression")
        if tok in _UNSUPPORTED:
            raise self.error(f"{tok!r} is not supported by this filter subset")
        if self.is_id():
            if self.last is None:  # a bare address: type "host" (pcap-filter(7))
                self.last = _Quals(None, Dir.EITHER, "host")
            return self.value(self.last)
        proto = None
        if tok in _PROTOS:
            proto = tok
            self.i += 1
            if self.peek() not in _DIRS | _TYPES and not self.is_id():
                return ProtoTest(Proto(proto))
        quals = _Quals(proto, self.direction(), self.qual_type())
        if not self.is_id():
            raise self.error(f"expected an address, network or port after {quals.type!r}")
        self.last = quals
        return self.value(quals)

    def direction(self) -> Dir:
        tok = self.peek()
        if tok not in _DIRS:
            return Dir.EITHER
        self.i += 1
        if self.peek() in ("or", "and") and self.peek(1) in _DIRS and self.peek(1) != tok:
            combined = Dir(f"src {self.peek()} dst")
            self.i += 2
            return combined
        return Dir(tok)

    def qual_type(self) -> str:
        tok = self.peek()
        if tok in _TYPES:
            self.i += 1
            return str(tok)
        return "host"

    def value(self, q: _Quals) -> Node:
        tok = self.tokens[self.i]
        self.i += 1
        node: Node
        if q.type == "host":
            node = self.host(tok, q.dir)
        elif q.type == "net":
            node = self.net(tok, q.dir)
        elif q.type == "port":
            port = self.port(tok.text, tok.pos)
            node = PortTest(port, port, q.dir)
        else:
            node = self.portrange(tok, q.dir)
        return And(ProtoTest(Proto(q.proto)), node) if q.proto else node

    # -- values ----------------------------------------------------------------
    def host(self, tok: _Token, direction: Dir) -> Node:
        if "/" in tok.text:
            raise self.error("mask syntax is for networks only (use 'net')", tok.pos)
        try:
            addr = ipaddress.ip_address(tok.text).packed
        except ValueError:
            raise self.error(
                f"{tok.text!r} is not an IP address (names are not resolved)", tok.pos
            ) from None
        return AddrTest(addr, b"\xff" * len(addr), direction)

    def net(self, tok: _Token, direction: Dir) -> Node:
        text = tok.text
        if self.peek() == "mask":
            self.i += 1
            if not self.is_id():
                raise self.error("expected a mask after 'mask'")
            text = f"{text}/{self.tokens[self.i].text}"
            self.i += 1
        elif "/" not in text and ":" not in text and text.count(".") < 3:
            octets = text.rstrip(".").split(".")
            text = ".".join(octets + ["0"] * (4 - len(octets))) + f"/{8 * len(octets)}"
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise self.error(f"invalid network {tok.text!r}: {exc}", tok.pos) from None
        return AddrTest(network.network_address.packed, network.netmask.packed, direction)

    def port(self, text: str, pos: int) -> int:
        if text.isdigit():
            port = int(text)
            if port > 65535:
                raise self.error(f"port {port} out of range", pos)
            return port
        try:
            return socket.getservbyname(text)
        except OSError:
            raise self.error(f"unknown port name {text!r}", pos) from None

    def portrange(self, tok: _Token, direction: Dir) -> Node:
        low, sep, high = tok.text.partition("-")
        if not sep:
            raise self.error("a port range is written LOW-HIGH", tok.pos)
        a, b = self.port(low, tok.pos), self.port(high, tok.pos + len(low) + 1)
        return PortTest(min(a, b), max(a, b), direction)


# -- the Python back end -------------------------------------------------------
def to_predicate(node: Node) -> Predicate:
    """A closure tree evaluating ``node`` on a ``DecodedPacket``."""
    if isinstance(node, And):
        a, b = to_predicate(node.left), to_predicate(node.right)
        return lambda p: a(p) and b(p)
    if isinstance(node, Or):
        a, b = to_predicate(node.left), to_predicate(node.right)
        return lambda p: a(p) or b(p)
    if isinstance(node, Not):
        a = to_predicate(node.operand)
        return lambda p: not a(p)
    if isinstance(node, ProtoTest):
        return _proto(node.proto)
    if isinstance(node, AddrTest):
        return _addresses(node)
    return _ports(node)


def _proto(proto: Proto) -> Predicate:
    if proto is Proto.IP:
        return lambda p: p.version == 4
    if proto is Proto.IP6:
        return lambda p: p.version == 6
    number = IPPROTO_TCP if proto is Proto.TCP else IPPROTO_UDP
    return lambda p: p.proto == number


def _addresses(node: AddrTest) -> Predicate:
    size, net = len(node.net), int.from_bytes(node.net, "big")
    mask = int.from_bytes(node.mask, "big")
    if mask == (1 << 8 * size) - 1:
        addr = node.net

        def test(a: bytes) -> bool:
            return a == addr
    else:

        def test(a: bytes) -> bool:
            return len(a) == size and int.from_bytes(a, "big") & mask == net

    return _either(test, node.dir, attrgetter("src"), attrgetter("dst"))


def _ports(node: PortTest) -> Predicate:
    low, high, ports = node.low, node.high, (IPPROTO_TCP, IPPROTO_UDP)

    def test(port: int) -> bool:
        return low <= port <= high

    inner = _either(test, node.dir, attrgetter("sport"), attrgetter("dport"))
    return lambda p: p.proto in ports and inner(p)


def _either(
    test: Callable[[T], bool], direction: Dir,
    src: Callable[[DecodedPacket], T], dst: Callable[[DecodedPacket], T],
) -> Predicate:  # fmt: skip
    """``test`` applied to the source, the destination, either or both."""
    if direction is Dir.SRC:
        return lambda p: test(src(p))
    if direction is Dir.DST:
        return lambda p: test(dst(p))
    if direction is Dir.BOTH:
        return lambda p: test(src(p)) and test(dst(p))
    return lambda p: test(src(p)) or test(dst(p))
