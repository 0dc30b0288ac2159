"""The edges of issue 21, item 3, end to end: capture bytes in, HTTP records out.

Each case wraps one HTTP/1.1 exchange in an awkward encapsulation or delivery
(VLAN tags, Linux cooked headers, IPv6 extension headers, IPv4 and IPv6
fragments, jumbo and GSO-sized frames, Linux BIG TCP's zero IPv4 length,
retransmitted, reordered and overlapping segments) and checks that
``analyze`` reports the same request and response as for the plain capture.
The unit tests of ``decode``, ``fragments`` and ``tcp`` check each mechanism;
these check that they compose.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import pytest

from proxy.pcap.analyze import AnalyzeOptions, analyze
from proxy.pcap.records import CapturedExchange
from tests.unit.test_pcap_builders import (
    ACK,
    FIN,
    PSH,
    SYN,
    ether,
    ipv4,
    ipv6,
    pcap_file,
    sll,
    sll2,
    tcp,
)

BODY = bytes(range(256)) * 64  # 16 KiB
REQUEST = b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY

Segment = tuple[bool, int, int, bytes]  # from client, seq, flags, payload
Wrap = Callable[[bool, bytes], list[bytes]]  # TCP segment -> frames


def segments(mss: int = 1460, response: bytes = RESPONSE) -> list[Segment]:
    """The exchange as the two sides' TCP segments, in order."""
    out: list[Segment] = [(True, 99, SYN, b""), (False, 499, SYN | ACK, b"")]
    for i in range(0, len(REQUEST), mss):
        out.append((True, 100 + i, ACK | PSH, REQUEST[i : i + mss]))
    for i in range(0, len(response), mss):
        out.append((False, 500 + i, ACK | PSH, response[i : i + mss]))
    out.append((True, 100 + len(REQUEST), FIN | ACK, b""))
    out.append((False, 500 + len(response), FIN | ACK, b""))
    return out


def tcp_bytes(seg: Segment) -> bytes:
    from_client, seq, flags, payload = seg
    ports = (40000, 80) if from_client else (80, 40000)
    return tcp(*ports, seq=seq, ack=1, flags=flags, payload=payload)


def addrs(from_client: bool, v6: bool) -> tuple[str, str]:
    a, b = ("fd00::1", "fd00::2") if v6 else ("10.0.0.1", "10.0.0.2")
    return (a, b) if from_client else (b, a)


def run(frames: list[bytes], linktype: int = 1, preview: int = len(BODY)) -> list[CapturedExchange]:
    capture = pcap_file([(1.0 + i / 1000, f) for i, f in enumerate(frames)], linktype)
    out: list[CapturedExchange] = []
    analyze(io.BytesIO(capture), out.append, AnalyzeOptions(preview=preview))
    return out


def check(records: list[CapturedExchange]) -> None:
    (r,) = records
    assert (r.method, r.target, r.status) == ("POST", "/up", 200)
    assert r.request_body_preview == b"hello"
    assert r.response_body_preview == BODY
    assert r.errors == ()


def v4_frames(link: Callable[[bytes], bytes] = ether, mss: int = 1460) -> list[bytes]:
    return [link(ipv4(*addrs(s[0], False), tcp_bytes(s))) for s in segments(mss)]


@pytest.mark.parametrize(
    ("link", "linktype"),
    [
        (ether, 1),
        (lambda ip: ether(ip, vlans=(0x8100,)), 1),
        (lambda ip: ether(ip, vlans=(0x88A8, 0x8100)), 1),  # QinQ
        (sll, 113),
        (sll2, 276),
    ],
    ids=["ethernet", "vlan", "qinq", "sll", "sll2"],
)
def test_link_layers(link: Callable[[bytes], bytes], linktype: int) -> None:
    check(run(v4_frames(link), linktype))


def test_ipv6_with_extension_headers() -> None:
    chain = bytes([60, 0]) + b"\0" * 6 + bytes([6, 0]) + b"\0" * 6  # hop-by-hop, dest options
    frames = [
        ether(ipv6(*addrs(s[0], True), chain + tcp_bytes(s), nh=0), 0x86DD) for s in segments()
    ]
    check(run(frames))


def test_jumbo_frames() -> None:
    """9000-byte MTU segments, and 64 KiB GSO super-frames as a capture on the host sees them."""
    check(run(v4_frames(mss=8960)))
    check(run(v4_frames(mss=65000)))


def test_big_tcp_ipv4_total_length_zero() -> None:
    """Linux BIG TCP (6.3+) passes packets over 64 KiB up with an IPv4 total length of 0."""
    body = bytes(range(256)) * 400  # 100 KiB in one segment
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    frames = [
        ether(ipv4(*addrs(s[0], False), tcp_bytes(s), total=0 if len(s[3]) > 0xFFFF else None))
        for s in segments(mss=1 << 20, response=response)
    ]
    (r,) = run(frames, preview=len(body))
    assert (r.status, r.response_body_preview, r.errors) == (200, body, ())


def fragment_v4(src: str, dst: str, segment: bytes, size: int, ident: int) -> list[bytes]:
    out = []
    for off in range(0, len(segment), size):
        more = 0x2000 if off + size < len(segment) else 0
        out.append(ipv4(src, dst, segment[off : off + size], ident=ident, frag=more | off // 8))
    return out


def test_ipv4_fragments_reordered() -> None:
    frames = []
    for n, seg in enumerate(segments()):
        pieces = fragment_v4(*addrs(seg[0], False), tcp_bytes(seg), 512, ident=n)
        frames += [ether(p) for p in reversed(pieces)]
    check(run(frames))


def test_ipv6_fragments() -> None:
    frames = []
    for n, seg in enumerate(segments()):
        data = tcp_bytes(seg)
        for off in range(0, len(data), 512):
            more = 1 if off + 512 < len(data) else 0
            head = struct.pack(">BBHI", 6, 0, off | more, n)
            ip = ipv6(*addrs(seg[0], True), head + data[off : off + 512], nh=44)
            frames.append(ether(ip, 0x86DD))
    check(run(frames))


def test_retransmitted_reordered_and_overlapping_segments() -> None:
    segs = segments(mss=700)
    head, data, tail = segs[:2], segs[2:-2], segs[-2:]
    shuffled = data[1::2] + data[0::2]  # every other segment late
    dup = data[3]
    # An overlapping resend: the bytes of two segments in one, seen after both.
    over = (dup[0], dup[1], dup[2], dup[3] + data[4][3])
    order = head + shuffled + [dup, over] + tail
    check(run([ether(ipv4(*addrs(s[0], False), tcp_bytes(s))) for s in order]))


def test_overlapping_ipv4_fragments_lower_offset_wins() -> None:
    """Overlaps (RFC 5722 forbids them in IPv6): the piece that starts first wins."""
    from proxy.pcap.fragments import FragmentTable

    table = FragmentTable()
    key = (4, b"\x0a\0\0\x01", b"\x0a\0\0\x02", 6, 9)
    assert table.add(key, 0.0, 8, True, b"BBBBBBBB") is None
    assert table.add(key, 0.0, 0, True, b"AAAAAAAAAAAA") is None  # overlaps 8..12
    assert table.add(key, 0.0, 16, False, b"CCCC") == b"AAAAAAAAAAAABBBBCCCC"
