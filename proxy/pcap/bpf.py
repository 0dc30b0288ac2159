"""Compile a parsed capture filter (``proxy.pcap.filter.Node``) to classic BPF.

The program is what ``SO_ATTACH_FILTER`` takes (socket(7), "SO_ATTACH_FILTER";
the instruction set is Documentation/networking/filter.rst in the Linux
tree): an array of ``struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }``
run by the kernel on every packet before it is queued to the socket. It
returns the number of bytes to keep: the snap length to accept, 0 to drop.
So packets the filter rejects are never copied to user space.

Why our own compiler and not libpcap's (``pcap_compile`` through a binding):
the filter language is already ours (``proxy.pcap.filter``, the subset that
``analyze`` accepts), and the user-space predicate must give the same
verdicts; compiling our own parse tree guarantees both back ends read one
expression the same way, where libpcap would parse it a second time with its
own grammar (names resolved through DNS, a larger language). It also avoids a
native dependency for a few hundred instructions' worth of code generation.

Layouts, by link type:

* ``Link.ETHERNET``: the frame as a ``SOCK_RAW`` packet socket sees it on an
  Ethernet or loopback device; EtherType at byte 12, IP header at 14.
* ``Link.COOKED``: a ``SOCK_DGRAM`` packet socket (``-i any``): the data starts
  at the IP header and the EtherType is the ancillary load
  ``SKF_AD_OFF + SKF_AD_PROTOCOL`` (skb->protocol), as libpcap does for its
  cooked captures.

Semantics follow pcap-filter(7) where they can and otherwise never reject a
packet the user-space predicate would accept (the kernel program is a
superset; ``proxy.pcap.live`` keeps the predicate as the exact test):

* A port test matches TCP or UDP, and for IPv4 only the first fragment
  (fragment offset 0), as libpcap does: later fragments carry no ports.
* IPv6 packets whose next header is an extension header, and frames with an
  in-band 802.1Q/802.1ad tag, are accepted whole when the expression looks
  at the transport or the frame could not be judged; the predicate decides
  after ``proxy.pcap.decode`` has walked the headers.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from enum import Enum

from proxy.pcap.filter import AddrTest, And, Dir, Node, Not, Or, PortTest, Proto, ProtoTest

# Instruction classes and fields (linux/filter.h, linux/bpf_common.h).
LD, LDX, ST, STX, ALU, JMP, RET, MISC = range(8)
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM, LEN, MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
K, X = 0x00, 0x08
SKF_AD_PROTOCOL = 0xFFFFF000  # SKF_AD_OFF (-0x1000) + SKF_AD_PROTOCOL (0)
SKF_AD_PKTTYPE = 0xFFFFF004  # SKF_AD_OFF + 4: sockaddr_ll's sll_pkttype
SKF_AD_IFINDEX = 0xFFFFF008  # SKF_AD_OFF + 8
PACKET_OUTGOING = 4
BPF_MAXINSNS = 4096

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
# IPv6 extension headers (RFC 8200 §4; 44 Fragment, 51 AH, 135/139/140 share the layout).
_V6_EXT = (0, 43, 44, 51, 60, 135, 139, 140, 253, 254)
_TCP, _UDP = 6, 17


class Link(Enum):
    ETHERNET = 14  # the value is the length of the link header
    COOKED = 0


class BpfError(ValueError):
    """The expression compiles to a program the kernel would refuse."""


@dataclass(frozen=True, slots=True)
class Insn:
    """One ``struct sock_filter``."""

    code: int
    jt: int
    jf: int
    k: int


class _Label:
    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = -1


@dataclass(slots=True)
class _Pending:
    code: int
    k: int
    jt: _Label | None = None
    jf: _Label | None = None


class _Emitter:
    """Instructions with symbolic, forward-only jump targets."""

    def __init__(self) -> None:
        self.code: list[_Pending] = []

    def op(self, code: int, k: int = 0) -> None:
        self.code.append(_Pending(code, k & 0xFFFFFFFF))

    def jump(self, code: int, k: int, jt: _Label, jf: _Label) -> None:
        self.code.append(_Pending(code, k & 0xFFFFFFFF, jt, jf))

    def goto(self, target: _Label) -> None:
        self.code.append(_Pending(JMP | JA, 0, target, target))

    def place(self, label: _Label) -> None:
        label.at = len(self.code)

    def resolve(self) -> list[Insn]:
        out: list[Insn] = []
        for i, p in enumerate(self.code):
            if p.jt is None or p.jf is None:
                out.append(Insn(p.code, 0, 0, p.k))
                continue
            jt, jf = p.jt.at - i - 1, p.jf.at - i - 1
            if p.code == JMP | JA:
                out.append(Insn(p.code, 0, 0, jt))
            elif not (0 <= jt <= 255 and 0 <= jf <= 255):
                raise BpfError("filter too complex: a jump is longer than 255 instructions")
            else:
                out.append(Insn(p.code, jt, jf, p.k))
        if len(out) > BPF_MAXINSNS:
            raise BpfError(f"filter too complex: {len(out)} instructions")
        return out


def compile_bpf(
    node: Node | None, link: Link, snaplen: int = 262144, loopback: int | None = None
) -> list[Insn]:
    """The classic BPF program that accepts what ``node`` matches (a superset, see above).

    ``node`` None accepts everything (truncated to ``snaplen``). ``loopback``
    is the loopback device's index: its outgoing copy of each packet is
    rejected, as libpcap does, so each packet is seen once, as it arrives.
    """
    g = _Gen(link)
    accept, reject = _Label(), _Label()
    if loopback is not None:
        g.skip_loopback_outgoing(loopback, reject)
    if node is None:
        g.e.goto(accept)
    else:
        g.prologue(node, accept)
        g.gen(node, accept, reject)
    g.e.place(accept)
    g.e.op(RET | K, snaplen)
    g.e.place(reject)
    g.e.op(RET | K, 0)
    return g.e.resolve()


def reject_all() -> list[Insn]:
    """A program that drops everything (installed while a socket is being set up)."""
    return [Insn(RET | K, 0, 0, 0)]


def pack(program: list[Insn]) -> bytes:
    """The program as the array of ``struct sock_filter`` the kernel reads."""
    return b"".join(struct.pack("=HBBI", i.code, i.jt, i.jf, i.k) for i in program)


def sock_fprog(program: list[Insn]) -> tuple[bytes, ctypes.Array[ctypes.c_char]]:
    """``struct sock_fprog { unsigned short len; struct sock_filter *filter; }``.

    Returns the packed struct and the buffer it points into; keep the buffer
    alive until ``setsockopt`` has returned.
    """
    buf = ctypes.create_string_buffer(pack(program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    return fprog, buf


def dump(program: list[Insn]) -> str:
    """One ``code jt jf k`` line per instruction, as ``tcpdump -ddd`` prints them."""
    return "\n".join(f"{i.code} {i.jt} {i.jf} {i.k}" for i in program)


def _uses_transport(node: Node) -> bool:
    if isinstance(node, And | Or):
        return _uses_transport(node.left) or _uses_transport(node.right)
    if isinstance(node, Not):
        return _uses_transport(node.operand)
    if isinstance(node, PortTest):
        return True
    return isinstance(node, ProtoTest) and node.proto in (Proto.TCP, Proto.UDP)


class _Gen:
    """Code generation: each primitive jumps to ``t`` when it holds, else ``f``."""

    def __init__(self, link: Link) -> None:
        self.e = _Emitter()
        self.link = link
        self.nh = link.value  # offset of the network header

    def ethertype(self) -> None:
        if self.link is Link.ETHERNET:
            self.e.op(LD | H | ABS, 12)
        else:
            self.e.op(LD | W | ABS, SKF_AD_PROTOCOL)

    def skip_loopback_outgoing(self, ifindex: int, reject: _Label) -> None:
        e = self.e
        outgoing, go = _Label(), _Label()
        e.op(LD | W | ABS, SKF_AD_PKTTYPE)
        e.jump(JMP | JEQ | K, PACKET_OUTGOING, outgoing, go)
        e.place(outgoing)
        e.op(LD | W | ABS, SKF_AD_IFINDEX)
        e.jump(JMP | JEQ | K, ifindex, reject, go)
        e.place(go)

    def prologue(self, node: Node, accept: _Label) -> None:
        """Pass up what the program cannot judge: in-band VLAN tags, IPv6 extension headers."""
        e = self.e
        go = _Label()
        if self.link is Link.ETHERNET:
            self.ethertype()
            for tag in _VLAN_TAGS:
                nxt = _Label()
                e.jump(JMP | JEQ | K, tag, accept, nxt)
                e.place(nxt)
        if not _uses_transport(node):
            e.place(go)
            return
        v6 = _Label()
        self.ethertype()
        e.jump(JMP | JEQ | K, ETH_IPV6, v6, go)
        e.place(v6)
        e.op(LD | B | ABS, self.nh + 6)
        for nh in _V6_EXT:
            nxt = _Label()
            e.jump(JMP | JEQ | K, nh, accept, nxt)
            e.place(nxt)
        e.place(go)

    def gen(self, node: Node, t: _Label, f: _Label) -> None:
        mid = _Label()
        if isinstance(node, And):
            self.gen(node.left, mid, f)
            self.e.place(mid)
            self.gen(node.right, t, f)
        elif isinstance(node, Or):
            self.gen(node.left, t, mid)
            self.e.place(mid)
            self.gen(node.right, t, f)
        elif isinstance(node, Not):
            self.gen(node.operand, f, t)
        elif isinstance(node, ProtoTest):
            self.proto(node.proto, t, f)
        elif isinstance(node, AddrTest):
            self.address(node, t, f)
        else:
            self.ports(node, t, f)

    def proto(self, proto: Proto, t: _Label, f: _Label) -> None:
        e = self.e
        self.ethertype()
        if proto is Proto.IP:
            e.jump(JMP | JEQ | K, ETH_IPV4, t, f)
            return
        if proto is Proto.IP6:
            e.jump(JMP | JEQ | K, ETH_IPV6, t, f)
            return
        number = _TCP if proto is Proto.TCP else _UDP
        v4, not4, v6 = _Label(), _Label(), _Label()
        e.jump(JMP | JEQ | K, ETH_IPV4, v4, not4)
        e.place(v4)
        e.op(LD | B | ABS, self.nh + 9)
        e.jump(JMP | JEQ | K, number, t, f)
        e.place(not4)
        e.jump(JMP | JEQ | K, ETH_IPV6, v6, f)
        e.place(v6)
        e.op(LD | B | ABS, self.nh + 6)
        e.jump(JMP | JEQ | K, number, t, f)

    def address(self, node: AddrTest, t: _Label, f: _Label) -> None:
        """IPv4 source at 12, destination at 16; IPv6 at 8 and 24 (RFC 791, RFC 8200)."""
        e = self.e
        v4 = len(node.net) == 4
        ok = _Label()
        self.ethertype()
        e.jump(JMP | JEQ | K, ETH_IPV4 if v4 else ETH_IPV6, ok, f)
        e.place(ok)
        src, dst = (12, 16) if v4 else (8, 24)
        if node.dir is Dir.SRC:
            self.words(node, src, t, f)
        elif node.dir is Dir.DST:
            self.words(node, dst, t, f)
        elif node.dir is Dir.BOTH:
            mid = _Label()
            self.words(node, src, mid, f)
            e.place(mid)
            self.words(node, dst, t, f)
        else:
            mid = _Label()
            self.words(node, src, t, mid)
            e.place(mid)
            self.words(node, dst, t, f)

    def words(self, node: AddrTest, offset: int, t: _Label, f: _Label) -> None:
        """Compare the address at ``offset`` word by word, under the mask."""
        e = self.e
        checks = []
        for i in range(0, len(node.net), 4):
            mask = int.from_bytes(node.mask[i : i + 4], "big")
            if mask:
                checks.append((i, mask, int.from_bytes(node.net[i : i + 4], "big")))
        if not checks:  # a /0 network: every address of the family
            e.goto(t)
            return
        for n, (i, mask, value) in enumerate(checks):
            e.op(LD | W | ABS, self.nh + offset + i)
            if mask != 0xFFFFFFFF:
                e.op(ALU | 0x50 | K, mask)  # BPF_AND
            nxt = t if n == len(checks) - 1 else _Label()
            e.jump(JMP | JEQ | K, value, nxt, f)
            if nxt is not t:
                e.place(nxt)

    def ports(self, node: PortTest, t: _Label, f: _Label) -> None:
        """TCP/UDP ports; for IPv4 only in the first fragment (RFC 791: offset field)."""
        e = self.e
        v4, first, not4, v6, ports6 = _Label(), _Label(), _Label(), _Label(), _Label()
        self.ethertype()
        e.jump(JMP | JEQ | K, ETH_IPV4, v4, not4)
        e.place(v4)
        e.op(LD | B | ABS, self.nh + 9)
        self.tcp_or_udp(first, f)
        e.place(first)
        e.op(LD | H | ABS, self.nh + 6)
        frag_ok = _Label()
        e.jump(JMP | JSET | K, 0x1FFF, f, frag_ok)
        e.place(frag_ok)
        e.op(LDX | B | MSH, self.nh)  # X = 4 * (IHL)
        self.port_compare(node, IND, self.nh, t, f)
        e.place(not4)
        e.jump(JMP | JEQ | K, ETH_IPV6, v6, f)
        e.place(v6)
        e.op(LD | B | ABS, self.nh + 6)
        self.tcp_or_udp(ports6, f)
        e.place(ports6)
        self.port_compare(node, ABS, self.nh + 40, t, f)

    def tcp_or_udp(self, t: _Label, f: _Label) -> None:
        mid = _Label()
        self.e.jump(JMP | JEQ | K, _TCP, t, mid)
        self.e.place(mid)
        self.e.jump(JMP | JEQ | K, _UDP, t, f)

    def port_compare(self, node: PortTest, mode: int, base: int, t: _Label, f: _Label) -> None:
        """Source port at ``base``, destination at ``base + 2`` (RFC 9293 §3.1, RFC 768)."""
        e = self.e
        sides = {Dir.SRC: (0,), Dir.DST: (2,), Dir.EITHER: (0, 2), Dir.BOTH: (0, 2)}[node.dir]
        for n, at in enumerate(sides):
            last = n == len(sides) - 1
            nxt = _Label()
            if node.dir is Dir.BOTH:
                yes, no = (t if last else nxt), f
            else:
                yes, no = t, (f if last else nxt)
            e.op(LD | H | mode, base + at)
            self.in_range(node.low, node.high, yes, no)
            if not last:
                e.place(nxt)

    def in_range(self, low: int, high: int, t: _Label, f: _Label) -> None:
        e = self.e
        if low == high:
            e.jump(JMP | JEQ | K, low, t, f)
            return
        ge = _Label()
        e.jump(JMP | JGE | K, low, ge, f)
        e.place(ge)
        e.jump(JMP | JGT | K, high, f, t)
