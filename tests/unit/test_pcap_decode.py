"""proxy.pcap.decode: every link type, IPv4/IPv6, fragments, and what is skipped."""

from __future__ import annotations

import struct

import pytest

from proxy.pcap.decode import DecodedPacket, Decoder
from proxy.pcap.fragments import FragmentTable
from proxy.pcap.reader import Packet
from tests.unit.test_pcap_builders import (
    ACK,
    PSH,
    ether,
    ipv4,
    ipv6,
    null,
    packed,
    sll,
    sll2,
    tcp,
    udp,
)

PAYLOAD = b"GET / HTTP/1.1\r\n\r\n"
SEG = tcp(40000, 80, seq=1000, ack=2000, flags=PSH | ACK, payload=PAYLOAD)
V4 = ipv4("10.0.0.1", "10.0.0.2", SEG)
V6 = ipv6("fd00::1", "fd00::2", SEG)


def decode(
    linktype: int, data: bytes, decoder: Decoder | None = None, ts: float = 1.0
) -> DecodedPacket | None:
    return (decoder or Decoder()).decode(Packet(ts, linktype, data, 0))


def check_tcp(d: DecodedPacket | None, version: int = 4) -> None:
    assert d is not None
    assert (d.version, d.proto, d.sport, d.dport) == (version, 6, 40000, 80)
    assert (d.seq, d.ack, d.flags, d.payload) == (1000, 2000, PSH | ACK, PAYLOAD)
    src = "10.0.0.1" if version == 4 else "fd00::1"
    assert d.src == packed(src)


@pytest.mark.parametrize(
    ("linktype", "frame", "version"),
    [
        (1, ether(V4), 4),
        (1, ether(V6, 0x86DD), 6),
        (1, ether(V4, vlans=(0x8100,)), 4),
        (1, ether(V6, 0x86DD, vlans=(0x88A8, 0x8100)), 6),  # QinQ
        (113, sll(V4), 4),
        (113, sll(V6, 0x86DD), 6),
        (276, sll2(V4), 4),
        (276, sll2(V6, 0x86DD), 6),
        (101, V4, 4),
        (101, V6, 6),
        (12, V4, 4),
        (14, V6, 6),
        (228, V4, 4),
        (229, V6, 6),
        (0, null(V4, 2, "<"), 4),
        (0, null(V4, 2, ">"), 4),
        (0, null(V6, 30, "<"), 6),  # macOS AF_INET6
        (0, null(V6, 24, ">"), 6),  # OpenBSD, big-endian host
        (0, null(V6, 28, "<"), 6),  # FreeBSD
        (0, null(V6, 10, "<"), 6),  # Linux
        (108, null(V4, 2, ">"), 4),
        (108, null(V6, 24, ">"), 6),
    ],
)
def test_link_types(linktype: int, frame: bytes, version: int) -> None:
    check_tcp(decode(linktype, frame), version)


def test_ethernet_padding_is_trimmed_by_ip_length() -> None:
    small = ipv4("10.0.0.1", "10.0.0.2", tcp(1, 2, payload=b"hi"))
    d = decode(1, ether(small) + b"\0" * 10)
    assert d is not None and d.payload == b"hi"


def test_udp() -> None:
    d = decode(1, ether(ipv4("10.0.0.1", "224.0.0.251", udp(5353, 5353, b"mdns"), proto=17)))
    assert d is not None and (d.proto, d.sport, d.dport, d.payload) == (17, 5353, 5353, b"mdns")


def test_unknown_things_are_counted_not_raised() -> None:
    dec = Decoder()
    assert decode(999, V4, dec) is None
    assert decode(1, ether(b"\0" * 28, 0x0806), dec) is None  # ARP
    icmp = decode(1, ether(ipv4("10.0.0.1", "10.0.0.2", b"\x08\0" + b"\0" * 6, proto=1)), dec)
    assert icmp is not None and icmp.proto == 1 and icmp.sport == 0
    assert decode(0, null(V4, 99), dec) is None
    assert dec.stats.skipped == {
        "linktype 999": 1, "ethertype 0x0806": 1, "ip proto 1": 1,
    }  # fmt: skip
    assert dec.stats.malformed == 1  # the unknown NULL family


@pytest.mark.parametrize(
    "frame",
    [
        ether(V4[:19]),  # short IPv4 header
        ether(b"\x44" + V4[1:]),  # IHL < 5
        ether(ipv4("10.0.0.1", "10.0.0.2", SEG[:12] + b"\x40" + SEG[13:])),  # TCP data offset 4
        ether(ipv4("10.0.0.1", "10.0.0.2", b"\0" * 10)),  # TCP header cut
        ether(V6[:30], 0x86DD),
        ether(b"\x50" + V4[1:]),  # version 5
        b"\x02\x00",  # runt Ethernet
    ],
)
def test_malformed_is_counted(frame: bytes) -> None:
    dec = Decoder()
    assert decode(1, frame, dec) is None
    assert dec.stats.malformed == 1


def test_snaplen_truncation_is_counted_and_payload_cut() -> None:
    dec = Decoder()
    d = decode(1, ether(V4)[:-4], dec)
    assert d is not None and d.payload == PAYLOAD[:-4]
    assert dec.stats.truncated == 1


def fragments4(payload: bytes, sizes: list[int], ident: int = 7) -> list[bytes]:
    out, offset = [], 0
    for i, size in enumerate(sizes):
        more = 0x2000 if i < len(sizes) - 1 else 0
        piece = payload[offset : offset + size]
        out.append(ipv4("10.0.0.1", "10.0.0.2", piece, ident=ident, frag=more | offset // 8))
        offset += size
    return out


def test_ipv4_fragments_reassemble_in_any_order() -> None:
    body = tcp(40000, 80, seq=5, flags=ACK, payload=bytes(range(256)) * 8)
    frags = fragments4(body, [512, 1024, len(body) - 1536])
    dec = Decoder()
    assert decode(101, frags[2], dec) is None
    assert decode(101, frags[0], dec) is None
    d = decode(101, frags[1], dec)
    assert d is not None and d.payload == bytes(range(256)) * 8 and d.seq == 5
    assert dec.fragments.stats.reassembled == 1 and len(dec.fragments) == 0


def test_fragment_timeout_and_bound() -> None:
    body = tcp(1, 2, payload=b"x" * 64)
    first, last = fragments4(body, [40, len(body) - 40])
    dec = Decoder(FragmentTable(max_entries=2, timeout=30.0))
    assert decode(101, first, dec, ts=0.0) is None
    assert decode(101, last, dec, ts=31.0) is None  # the first fragment expired
    assert dec.fragments.stats.expired == 1
    for ident in range(5):
        decode(101, fragments4(body, [40, 200], ident=100 + ident)[0], dec, ts=32.0)
    assert len(dec.fragments) <= 2


def test_oversized_fragment_is_dropped() -> None:
    frag = ipv4("10.0.0.1", "10.0.0.2", b"x" * 64, frag=0x1FFF)  # offset 65528
    dec = Decoder()
    assert decode(101, frag, dec) is None
    assert dec.fragments.stats.oversized == 1


def ext(nh: int, body_len8: int = 0) -> bytes:
    return bytes([nh, body_len8]) + b"\0" * (6 + 8 * body_len8)


def test_ipv6_extension_headers_are_skipped() -> None:
    chain = bytes([60, 0]) + b"\0" * 6  # hop-by-hop -> destination options
    chain += bytes([51, 1]) + b"\0" * 14  # destination options (16 bytes) -> AH
    chain += bytes([6, 1]) + b"\0" * 10  # AH: (1 + 2) * 4 = 12 bytes -> TCP
    check_tcp(decode(101, ipv6("fd00::1", "fd00::2", chain + SEG, nh=0)), 6)


def test_ipv6_fragments() -> None:
    body = SEG + b"z" * 100
    a, b = body[:64], body[64:]
    f1 = struct.pack(">BBHI", 6, 0, 0 | 1, 99) + a
    f2 = struct.pack(">BBHI", 6, 0, 64, 99) + b
    dec = Decoder()
    assert decode(101, ipv6("fd00::1", "fd00::2", f2, nh=44), dec) is None
    d = decode(101, ipv6("fd00::1", "fd00::2", f1, nh=44), dec)
    assert d is not None and d.payload == PAYLOAD + b"z" * 100


def test_ipv6_no_next_header_and_jumbo_length() -> None:
    dec = Decoder()
    assert decode(101, ipv6("fd00::1", "fd00::2", b"", nh=59), dec) is None
    check_tcp(decode(101, ipv6("fd00::1", "fd00::2", SEG, plen=0), dec), 6)
