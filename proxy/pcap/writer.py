"""Write synthetic TCP conversations as a pcapng file.

The proxy sees byte streams, not packets. To let Wireshark, tshark or any
pcap tool open what it relayed, ``PcapngWriter`` turns each conversation
into the packets a real TCP connection would have carried: the three-way
handshake, data in segments of at most one MSS (1460 bytes over IPv4, 1440
over IPv6) with correct sequence and acknowledgement numbers (RFC 9293
§3.4), an ACK from the receiver after each burst (and every 16 segments
within one, so no more than a window's worth is ever unacknowledged), then
FIN / FIN-ACK / ACK or a RST. IPv4 header checksums (RFC 791) and TCP
checksums over the pseudo-header (RFC 9293 §3.1; RFC 8200 §8.1 for IPv6) are
computed, so analysers report no bad checksums.

The first packet of each conversation carries an ``opt_comment`` with the
caller's text (the flow id), so a packet can be traced back to its record.

Writing is incremental: each call writes its packets straight to the file
object and keeps only a few integers per conversation, so the live proxy can
call it while traffic flows with bounded memory. With ``ordered=True`` the
packets are held instead and ``release`` writes them in time order (stable
for equal times): the live tap learns some bytes' flow id only later, so it
writes those after packets of other connections that happened after them, and
pcap readers expect non-decreasing timestamps (tshark shows negative
``frame.time_delta`` otherwise). The file layout follows
draft-ietf-opsawg-pcapng: one Section Header Block, one Interface
Description Block (Ethernet or raw IP link type, microsecond timestamps),
then one Enhanced Packet Block per packet, all little-endian.
"""

from __future__ import annotations

import heapq
import ipaddress
import struct
import zlib
from typing import Protocol

from proxy.pcap.decode import LINKTYPE_ETHERNET, LINKTYPE_RAW
from proxy.pcap.tcp import ACK, FIN, PSH, RST, SYN

MSS_V4 = 1460
MSS_V6 = 1440
_ACK_EVERY = 16  # segments in one burst before the receiver acknowledges
_WINDOW = 65535
_CLIENT_MAC = bytes.fromhex("020000000001")
_SERVER_MAC = bytes.fromhex("020000000002")

_TCP = struct.Struct(">HHIIBBHHH")
_IPV4 = struct.Struct(">BBHHHBBH4s4s")
_IPV6 = struct.Struct(">IHBB16s16s")
_EPB_HEAD = struct.Struct("<IIIIIII")
_U32 = struct.Struct("<I")

Address = tuple[str, int]


class BinaryWriter(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


def internet_checksum(data: bytes) -> int:
    """The 16-bit one's-complement checksum of RFC 1071.

    The one's-complement sum of the 16-bit words equals the whole buffer, read
    as one big-endian integer, modulo 0xFFFF (since 2**16 = 1 mod 0xFFFF), so
    one big-integer operation replaces a Python loop over words.
    """
    if len(data) % 2:
        data += b"\0"
    rest = int.from_bytes(data, "big") % 0xFFFF
    if rest:
        return 0xFFFF - rest
    return 0 if data.strip(b"\0") else 0xFFFF  # a sum of 0xFFFF, or of nothing


def _option(code: int, value: bytes) -> bytes:
    """A pcapng option (§3.5): code, length, value padded to 32 bits."""
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


class PcapngWriter:
    """A pcapng file of synthetic TCP conversations, written as they happen."""

    def __init__(
        self,
        f: BinaryWriter,
        linktype: int = LINKTYPE_ETHERNET,
        application: str = "tapproxy",
        *,
        ordered: bool = False,
        header: bool = True,
    ) -> None:
        if linktype not in (LINKTYPE_ETHERNET, LINKTYPE_RAW):
            raise ValueError(f"link type {linktype} not supported (use Ethernet or raw IP)")
        self._f = f
        self.linktype = linktype
        self.packets = 0
        self._conversations = 0
        self._ordered = ordered
        self._held: list[tuple[int, int, bytes]] = []  # heap of (time units, number, block)
        if header:  # without: appending to a file whose header another writer wrote
            self._f.write(section_header(linktype, application))

    @staticmethod
    def header_bytes(linktype: int = LINKTYPE_ETHERNET, application: str = "tapproxy") -> bytes:
        """The Section Header and Interface Description blocks a file starts with."""
        return section_header(linktype, application)

    def open_conversation(
        self, client: Address, server: Address, ts: float, comment: str | None = None
    ) -> Conversation:
        """Start a connection: writes SYN, SYN-ACK and ACK at ``ts``."""
        self._conversations += 1
        return Conversation(self, client, server, ts, comment, self._conversations)

    @property
    def held(self) -> int:
        """Packets waiting for ``release`` (``ordered`` writers only)."""
        return len(self._held)

    def release(self, until: float | None = None) -> int:
        """Write the held packets stamped at or before ``until`` (all with None),
        in time order; returns how many. If the write fails they are gone."""
        limit = None if until is None else round(until * 1_000_000)
        out: list[bytes] = []
        held = self._held
        while held and (limit is None or held[0][0] <= limit):
            out.append(heapq.heappop(held)[2])
        if out:
            self._f.write(b"".join(out))
        return len(out)

    def flush(self) -> None:
        self.release()
        self._f.flush()

    def write_frame(self, ts: float, frame: bytes, comment: str | None = None) -> None:
        """One Enhanced Packet Block (§4.3) on interface 0, microsecond time."""
        units = round(ts * 1_000_000)
        caplen = len(frame)
        options = b""
        if comment:
            options = _option(1, comment.encode()) + _option(0, b"")  # opt_comment
        blen = 32 + caplen + (-caplen % 4) + len(options)
        head = _EPB_HEAD.pack(6, blen, 0, units >> 32, units & 0xFFFFFFFF, caplen, caplen)
        pad = b"\0" * (-caplen % 4)
        block = b"".join((head, frame, pad, options, _U32.pack(blen)))
        if self._ordered:
            heapq.heappush(self._held, (units, self.packets, block))
        else:
            self._f.write(block)
        self.packets += 1


class Conversation:
    """One synthetic TCP connection; created by ``PcapngWriter.open_conversation``."""

    def __init__(
        self, writer: PcapngWriter, client: Address, server: Address, ts: float,
        comment: str | None, number: int,
    ) -> None:  # fmt: skip
        c_ip, s_ip = ipaddress.ip_address(client[0]), ipaddress.ip_address(server[0])
        if c_ip.version != s_ip.version:
            raise ValueError("client and server addresses must both be IPv4 or both IPv6")
        self._w = writer
        self.version = c_ip.version
        self.mss = MSS_V4 if self.version == 4 else MSS_V6
        self._ports = {True: (client[1], server[1]), False: (server[1], client[1])}
        self._ips = {True: (c_ip.packed, s_ip.packed), False: (s_ip.packed, c_ip.packed)}
        self._macs = {True: _SERVER_MAC + _CLIENT_MAC, False: _CLIENT_MAC + _SERVER_MAC}
        seed = f"{client}|{server}|{number}".encode()
        # next sequence number each side will send, and IPv4 identification
        self._seq = {True: zlib.crc32(seed), False: zlib.crc32(seed[::-1])}
        self._ip_id = {True: number * 7 & 0xFFFF, False: number * 13 & 0xFFFF}
        self.closed = False
        mss = struct.pack(">BBH", 2, 4, self.mss)  # MSS option (RFC 9293 §3.2)
        self._send(ts, True, SYN, b"", mss, comment, ack=False)
        self._send(ts, False, SYN | ACK, b"", mss)
        self._send(ts, True, ACK, b"")

    def data(self, ts: float, from_client: bool, data: bytes, comment: str | None = None) -> None:
        """Bytes sent by one side at ``ts``: MSS-sized segments, then the peer's ACK.

        ``comment`` goes on the first segment (the live proxy puts a flow id there).
        """
        if self.closed:
            raise ValueError("conversation already closed")
        if not data:
            return
        mss = self.mss
        view = memoryview(data)
        last = len(data) - 1
        for n, i in enumerate(range(0, len(data), mss), 1):
            final = i + mss > last
            flags = ACK | (PSH if final else 0)
            self._send(ts, from_client, flags, bytes(view[i : i + mss]), comment=comment)
            comment = None
            if n % _ACK_EVERY == 0 and not final:
                self._send(ts, not from_client, ACK, b"")
        self._send(ts, not from_client, ACK, b"")

    def close(self, ts: float, rst: bool = False, from_client: bool = True) -> None:
        """End the connection: FIN, FIN-ACK, ACK (or a RST) started by one side."""
        if self.closed:
            return
        self.closed = True
        if rst:
            self._send(ts, from_client, RST | ACK, b"")
            return
        self._send(ts, from_client, FIN | ACK, b"")
        self._send(ts, not from_client, FIN | ACK, b"")
        self._send(ts, from_client, ACK, b"")

    def _send(
        self, ts: float, from_client: bool, flags: int, payload: bytes,
        options: bytes = b"", comment: str | None = None, ack: bool = True,
    ) -> None:  # fmt: skip
        seq, peer_next = self._seq[from_client], self._seq[not from_client]
        sport, dport = self._ports[from_client]
        src, dst = self._ips[from_client]
        doff = (20 + len(options)) // 4 << 4
        tcp = _TCP.pack(sport, dport, seq, peer_next if ack else 0, doff, flags, _WINDOW, 0, 0)
        segment = tcp + options + payload
        if self.version == 4:
            pseudo = src + dst + struct.pack(">HH", 6, len(segment))
        else:
            pseudo = src + dst + struct.pack(">IxxxB", len(segment), 6)
        csum = internet_checksum(pseudo + segment)
        segment = segment[:16] + struct.pack(">H", csum) + segment[18:]
        frame = self._ip(from_client, src, dst, segment)
        if self._w.linktype == LINKTYPE_ETHERNET:
            ethertype = b"\x08\x00" if self.version == 4 else b"\x86\xdd"
            frame = self._macs[from_client] + ethertype + frame
        self._w.write_frame(ts, frame, comment)
        self._seq[from_client] = (seq + len(payload) + bool(flags & (SYN | FIN))) & 0xFFFFFFFF

    def _ip(self, from_client: bool, src: bytes, dst: bytes, segment: bytes) -> bytes:
        if self.version == 6:
            return _IPV6.pack(0x60000000, len(segment), 6, 64, src, dst) + segment
        ident = self._ip_id[from_client]
        self._ip_id[from_client] = (ident + 1) & 0xFFFF
        head = _IPV4.pack(0x45, 0, 20 + len(segment), ident, 0x4000, 64, 6, 0, src, dst)
        csum = internet_checksum(head)
        return head[:10] + struct.pack(">H", csum) + head[12:] + segment


def _block_bytes(btype: int, body: bytes) -> bytes:
    blen = 12 + len(body)
    return _U32.pack(btype) + _U32.pack(blen) + body + _U32.pack(blen)


def section_header(linktype: int, application: str) -> bytes:
    """A Section Header Block (§4.1) and one Interface Description Block (§4.2)."""
    shb_body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)  # BOM, v1.0, length unknown
    shb_body += _option(4, application.encode()) + _option(0, b"")  # shb_userappl
    idb_body = struct.pack("<HHI", linktype, 0, 262144) + _option(0, b"")
    return _block_bytes(0x0A0D0D0A, shb_body) + _block_bytes(0x00000001, idb_body)
