"""Decode captured frames down to IP and TCP/UDP headers.

``Decoder.decode(packet)`` peels the link layer, the IP header (with its
extension headers and fragments) and the TCP or UDP header, and returns a
``DecodedPacket``: addresses as packed bytes (cheap to compare and hash;
turned into text only when a record is written), ports, TCP sequence
numbers and flags, and the transport payload. Anything it cannot use (a link
type, EtherType or IP protocol it does not know, a truncated or malformed
header) is counted in ``Decoder.stats`` and skipped, never raised: a capture
of a busy link is full of ARP, ICMP and things nobody asked about.

Link types (https://www.tcpdump.org/linktypes.html):
  0 NULL and 108 LOOP (BSD loopback: a 4-byte address family, host order for
  NULL and network order for LOOP), 1 Ethernet (IEEE 802.3, with any number of
  802.1Q / 802.1ad VLAN tags), 12, 14 and 101 raw IP (12 and 14 are the
  OS-dependent DLT_RAW values), 113 Linux cooked SLL, 276 Linux cooked SLL2,
  228 raw IPv4, 229 raw IPv6.

IP: RFC 791 (IPv4; the header checksum is not checked, captures taken with
checksum offload routinely carry wrong ones; a total length of 0 on a frame
over 64 KiB is Linux "BIG TCP" GSO/GRO, whose length is the frame's), RFC 8200 (IPv6 and its
extension headers), fragments through ``proxy.pcap.fragments``. Transport:
RFC 9293 §3.1 (TCP header), RFC 768 (UDP).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.pcap.fragments import FragmentTable
from proxy.pcap.reader import Packet

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
_VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100})
# BSD address families for IPv6 differ by OS: Linux 10, NetBSD/OpenBSD 24,
# FreeBSD 28, macOS 30.
_AF_INET = 2
_AF_INET6 = frozenset({10, 24, 28, 30})

IPPROTO_TCP = 6
IPPROTO_UDP = 17
# IPv6 extension headers skipped on the way to the transport header
# (RFC 8200 §4; 135 Mobility, 139 HIP, 140 Shim6 share the same layout).
_V6_EXT = frozenset({0, 43, 60, 135, 139, 140, 253, 254})
_V6_SKIP = _V6_EXT | {44, 51}  # plus Fragment and Authentication Header
_V6_FRAGMENT = 44
_V6_AH = 51
_V6_NONE = 59

_IPV4_HEAD = struct.Struct(">BxHHHxB").unpack_from
_IPV6_HEAD = struct.Struct(">4xHB").unpack_from
_TCP_HEAD = struct.Struct(">HHIIBB").unpack_from
_PORTS = struct.Struct(">HH").unpack_from
_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from


@dataclass(slots=True)
class DecodedPacket:
    """A packet decoded to its transport header. Ports are 0 unless TCP/UDP."""

    ts: float
    offset: int
    version: int  # 4 or 6
    src: bytes  # packed address, 4 or 16 bytes
    dst: bytes
    proto: int  # IP protocol number of the transport
    sport: int
    dport: int
    flags: int  # TCP flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10)
    seq: int
    ack: int
    payload: bytes


@dataclass(slots=True)
class DecodeStats:
    packets: int = 0
    decoded: int = 0
    truncated: int = 0  # captured shorter than the IP length (snap length)
    malformed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # unknown link/EtherType/proto


# A link-layer decoder returns (EtherType of the payload, its offset).
_LinkDecoder = Callable[[bytes], tuple[int, int]]


def _ethernet(data: bytes) -> tuple[int, int]:
    if len(data) < 14:
        return -1, 0
    off = 12
    (etype,) = _U16(data, off)
    while etype in _VLAN_TAGS and len(data) >= off + 8:
        off += 4
        (etype,) = _U16(data, off)
    return etype, off + 2


def _raw(data: bytes) -> tuple[int, int]:
    if not data:
        return -1, 0
    version = data[0] >> 4
    return (ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else -1), 0


def _bsd_family(family: int, data: bytes) -> tuple[int, int]:
    if family == _AF_INET:
        return ETH_IPV4, 4
    if family in _AF_INET6:
        return ETH_IPV6, 4
    return -1, 0


def _null(data: bytes) -> tuple[int, int]:
    """NULL: the family is in the capturing host's byte order, which we guess."""
    if len(data) < 4:
        return -1, 0
    family = int.from_bytes(data[:4], "little")
    if family > 0xFFFF:
        family = int.from_bytes(data[:4], "big")
    return _bsd_family(family, data)


def _loop(data: bytes) -> tuple[int, int]:
    if len(data) < 4:
        return -1, 0
    return _bsd_family(int.from_bytes(data[:4], "big"), data)


def _sll(data: bytes) -> tuple[int, int]:
    """Linux cooked v1: 16-byte header, protocol at offset 14."""
    return (_U16(data, 14)[0], 16) if len(data) >= 16 else (-1, 0)


def _sll2(data: bytes) -> tuple[int, int]:
    """Linux cooked v2: 20-byte header, protocol at offset 0."""
    return (_U16(data, 0)[0], 20) if len(data) >= 20 else (-1, 0)


LINK_DECODERS: dict[int, _LinkDecoder] = {
    LINKTYPE_NULL: _null,
    LINKTYPE_ETHERNET: _ethernet,
    12: _raw,
    14: _raw,
    LINKTYPE_RAW: _raw,
    LINKTYPE_LOOP: _loop,
    LINKTYPE_LINUX_SLL: _sll,
    LINKTYPE_LINUX_SLL2: _sll2,
    LINKTYPE_IPV4: _raw,
    LINKTYPE_IPV6: _raw,
}


class Decoder:
    """Stateful decoder: holds the fragment table and the statistics."""

    def __init__(self, fragments: FragmentTable | None = None) -> None:
        self.stats = DecodeStats()
        self.fragments = fragments if fragments is not None else FragmentTable()

    def decode(self, pkt: Packet) -> DecodedPacket | None:
        self.stats.packets += 1
        data = pkt.data
        if pkt.linktype == LINKTYPE_ETHERNET and data[12:14] == b"\x08\x00":
            return self._ipv4(pkt, data, 14)  # the common case, without a lookup
        link = LINK_DECODERS.get(pkt.linktype)
        if link is None:
            self.stats.skipped[f"linktype {pkt.linktype}"] += 1
            return None
        etype, off = link(data)
        if etype == ETH_IPV4:
            return self._ipv4(pkt, data, off)
        if etype == ETH_IPV6:
            return self._ipv6(pkt, data, off)
        if etype == -1:
            self.stats.malformed += 1
        else:
            self.stats.skipped[f"ethertype 0x{etype:04x}"] += 1
        return None

    def _ipv4(self, pkt: Packet, data: bytes, off: int) -> DecodedPacket | None:
        if len(data) - off < 20 or data[off] >> 4 != 4:
            self.stats.malformed += 1
            return None
        vihl, total, ident, frag, proto = _IPV4_HEAD(data, off)
        ihl = (vihl & 15) * 4
        if total == 0 and len(data) - off > 0xFFFF:  # Linux BIG TCP: the skb holds the length
            total = len(data) - off
        if ihl < 20 or total < ihl:
            self.stats.malformed += 1
            return None
        end = off + total
        if end > len(data):
            self.stats.truncated += 1
            end = len(data)
        src, dst = data[off + 12 : off + 16], data[off + 16 : off + 20]
        start = off + ihl
        if frag & 0x3FFF:  # More Fragments set or a non-zero offset
            key = (4, src, dst, proto, ident)
            whole = self.fragments.add(
                key, pkt.ts, (frag & 0x1FFF) * 8, bool(frag & 0x2000), data[start:end]
            )
            if whole is None:
                return None
            data, start, end = whole, 0, len(whole)
        elif proto == IPPROTO_TCP and end - start >= 20:  # fast path of _transport
            sport, dport, seq, ack, doff, flags = _TCP_HEAD(data, start)
            hlen = (doff >> 4) * 4
            if hlen >= 20 and start + hlen <= end:
                self.stats.decoded += 1
                payload = data[start + hlen : end]
                return DecodedPacket(
                    pkt.ts, pkt.offset, 4, src, dst, proto, sport, dport, flags, seq, ack, payload
                )
        return self._transport(pkt, 4, src, dst, proto, data, start, end)

    def _ipv6(self, pkt: Packet, data: bytes, off: int) -> DecodedPacket | None:
        if len(data) - off < 40 or data[off] >> 4 != 6:
            self.stats.malformed += 1
            return None
        plen, nh = _IPV6_HEAD(data, off)
        src, dst = data[off + 8 : off + 24], data[off + 24 : off + 40]
        start = off + 40
        end = start + plen if plen else len(data)  # 0: jumbogram (RFC 2675)
        if end > len(data):
            self.stats.truncated += 1
            end = len(data)
        while nh in _V6_SKIP:
            if start + 8 > end:
                self.stats.malformed += 1
                return None
            if nh == _V6_FRAGMENT:
                (fo,) = _U16(data, start + 2)
                nh = data[start]
                key = (6, src, dst, nh, _U32(data, start + 4)[0])
                piece = data[start + 8 : end]
                whole = self.fragments.add(key, pkt.ts, fo & 0xFFF8, bool(fo & 1), piece)
                if whole is None:
                    return None
                data, start, end = whole, 0, len(whole)
                continue
            size = (data[start + 1] + 2) * 4 if nh == _V6_AH else (data[start + 1] + 1) * 8
            nh = data[start]
            start += size
        if start > end:
            self.stats.malformed += 1
            return None
        if nh == _V6_NONE:
            self.stats.skipped["ip proto 59"] += 1
            return None
        return self._transport(pkt, 6, src, dst, nh, data, start, end)

    def _transport(
        self, pkt: Packet, version: int, src: bytes, dst: bytes, proto: int,
        data: bytes, start: int, end: int,
    ) -> DecodedPacket | None:  # fmt: skip
        if proto == IPPROTO_TCP:
            if end - start < 20:
                self.stats.malformed += 1
                return None
            sport, dport, seq, ack, doff, flags = _TCP_HEAD(data, start)
            hlen = (doff >> 4) * 4
            if hlen < 20 or start + hlen > end:
                self.stats.malformed += 1
                return None
            self.stats.decoded += 1
            payload = data[start + hlen : end]
            return DecodedPacket(
                pkt.ts, pkt.offset, version, src, dst, proto, sport, dport, flags, seq, ack, payload
            )
        if proto == IPPROTO_UDP:
            if end - start < 8:
                self.stats.malformed += 1
                return None
            sport, dport = _PORTS(data, start)
            self.stats.decoded += 1
            payload = data[start + 8 : end]
            return DecodedPacket(
                pkt.ts, pkt.offset, version, src, dst, proto, sport, dport, 0, 0, 0, payload
            )
        self.stats.skipped[f"ip proto {proto}"] += 1
        self.stats.decoded += 1
        return DecodedPacket(
            pkt.ts, pkt.offset, version, src, dst, proto, 0, 0, 0, 0, 0, data[start:end]
        )
