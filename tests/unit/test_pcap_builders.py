"""Hand-made capture bytes for the pcap tests, and checks of the builders.

Everything here is written from the format documents independently of
``proxy.pcap`` (checksums by a plain word loop, blocks by struct), so the
reader and decoder are tested against a second implementation, not against
themselves.
"""

from __future__ import annotations

import ipaddress
import struct

from proxy.pcap.decode import DecodedPacket

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def checksum(data: bytes) -> int:
    """RFC 1071, the obvious way (tests only)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def packed(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed


# -- transport and IP ---------------------------------------------------------------
def tcp(
    sport: int, dport: int, seq: int = 0, ack: int = 0, flags: int = ACK,
    payload: bytes = b"", options: bytes = b"",
) -> bytes:  # fmt: skip
    doff = (20 + len(options)) // 4 << 4
    return (
        struct.pack(">HHIIBBHHH", sport, dport, seq, ack, doff, flags, 65535, 0, 0)
        + options
        + payload
    )


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(
    src: str, dst: str, payload: bytes, proto: int = 6, ident: int = 1,
    frag: int = 0, total: int | None = None,
) -> bytes:  # fmt: skip
    length = 20 + len(payload) if total is None else total
    head = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, length, ident, frag, 64, proto, 0, packed(src), packed(dst)
    )
    head = head[:10] + struct.pack(">H", checksum(head)) + head[12:]
    return head + payload


def ipv6(src: str, dst: str, payload: bytes, nh: int = 6, plen: int | None = None) -> bytes:
    length = len(payload) if plen is None else plen
    return (
        struct.pack(">IHBB16s16s", 0x60000000, length, nh, 64, packed(src), packed(dst)) + payload
    )


# -- link layers ---------------------------------------------------------------------
def ether(payload: bytes, etype: int = 0x0800, vlans: tuple[int, ...] = ()) -> bytes:
    head = bytes.fromhex("020000000002020000000001")
    for tpid in vlans:
        head += struct.pack(">HH", tpid, 42)
    return head + struct.pack(">H", etype) + payload


def sll(payload: bytes, proto: int = 0x0800) -> bytes:
    return struct.pack(">HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\0\0", proto) + payload


def sll2(payload: bytes, proto: int = 0x0800) -> bytes:
    return struct.pack(">HHIHBB8s", proto, 0, 1, 1, 0, 6, b"\x02" * 8) + payload


def null(payload: bytes, family: int = 2, order: str = "<") -> bytes:
    return struct.pack(order + "I", family) + payload


# -- files ------------------------------------------------------------------------------
def pcap_file(
    packets: list[tuple[float, bytes]], linktype: int = 1, order: str = "<", nano: bool = False
) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    scale = 1_000_000_000 if nano else 1_000_000
    for ts, data in packets:
        sec = int(ts)
        frac = round((ts - sec) * scale)
        out += struct.pack(order + "IIII", sec, frac, len(data), len(data)) + data
    return out


def block(btype: int, body: bytes, order: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def option(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(order: str = "<") -> bytes:
    return block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)


def idb(linktype: int = 1, order: str = "<", snaplen: int = 0, options: bytes = b"") -> bytes:
    if options:
        options += option(0, b"", order)
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + options, order)


def epb(data: bytes, ts_units: int, ifid: int = 0, order: str = "<", options: bytes = b"") -> bytes:
    head = struct.pack(
        order + "IIIII", ifid, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), len(data)
    )
    return block(6, head + data + b"\0" * (-len(data) % 4) + options, order)


def spb(data: bytes, order: str = "<") -> bytes:
    return block(3, struct.pack(order + "I", len(data)) + data, order)


# -- decoded packets for reassembly tests ---------------------------------------------
def seg(
    ts: float, src: tuple[str, int], dst: tuple[str, int], seq: int, flags: int = ACK,
    payload: bytes = b"", ack: int = 0,
) -> DecodedPacket:  # fmt: skip
    a, b = packed(src[0]), packed(dst[0])
    version = 4 if len(a) == 4 else 6
    return DecodedPacket(ts, 0, version, a, b, 6, src[1], dst[1], flags, seq, ack, payload)


def test_checksum_matches_rfc1071_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2, checksum 220d.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_ipv4_builder_checksum_verifies() -> None:
    head = ipv4("10.0.0.1", "10.0.0.2", b"")[:20]
    assert checksum(head) == 0


def test_pcapng_block_is_padded_and_framed() -> None:
    b = block(0x99, b"abc")
    assert len(b) == 16 and b[4:8] == b[-4:]
