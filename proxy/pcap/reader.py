"""Streaming readers for libpcap and pcapng capture files.

``read_packets(fileobj)`` looks at the first four bytes, picks the format and
yields one ``Packet`` per captured frame. The file is read in large blocks
(1 MiB by default) into a sliding window, and each record is cut out of the
window with ``struct.unpack_from``, so memory stays flat however large the
capture is and the per-packet cost is a few C-level calls, never a Python loop
over bytes.

Formats (field layouts are cited where they are decoded):

* libpcap: https://www.tcpdump.org/manpages/pcap-savefile.5.html and
  draft-ietf-opsawg-pcap. Both byte orders; microsecond (0xA1B2C3D4) and
  nanosecond (0xA1B23C4D) magic.
* pcapng: draft-ietf-opsawg-pcapng (sections 4.1-4.4). Section Header Blocks
  in either byte order (a file may hold several sections), Interface
  Description Blocks with a per-interface link type, ``if_tsresol`` and
  ``if_tsoffset``, Enhanced and Simple Packet Blocks and the obsolete Packet
  Block. Every other block type is skipped by its length.

Anything that cannot be a valid record (bad block length, truncated data,
unknown interface) raises ``CaptureError`` carrying the byte offset of the
record. Because this is a generator, every packet before that point has
already been yielded when the error is raised.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

DEFAULT_BLOCK_SIZE = 1 << 20
# No sane capture has a single record this big; a larger length means the
# length field itself is corrupt, and trusting it would mean buffering it.
MAX_RECORD = 64 << 20

_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_BOM = 0x1A2B3C4D

# pcapng block types (draft-ietf-opsawg-pcapng §4, §10.1).
_SHB = 0x0A0D0D0A
_IDB = 0x00000001
_OPB = 0x00000002
_SPB = 0x00000003
_EPB = 0x00000006
# Interface Description Block options (§4.2).
_IF_TSRESOL = 9
_IF_TSOFFSET = 14


class BinaryReader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class CaptureError(Exception):
    """A capture file that is corrupt or truncated at ``offset``."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at byte offset {offset}")
        self.message = message
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Packet:
    """One captured frame: capture time (epoch seconds), link type, bytes, file offset."""

    ts: float
    linktype: int
    data: bytes
    offset: int


class _Window:
    """A sliding window onto the file: ``buf[pos:]`` is what is unread.

    ``base`` is the file offset of ``buf[0]``. ``fill(n)`` makes at least
    ``n`` unread bytes available, reading whole blocks, and keeps only the
    unread tail of the previous block, so at most one block plus one record
    is ever held.
    """

    __slots__ = ("_block", "_eof", "_f", "base", "buf", "pos")

    def __init__(self, f: BinaryReader, block: int) -> None:
        self._f = f
        self._block = block
        self._eof = False
        self.buf = b""
        self.pos = 0
        self.base = 0

    @property
    def offset(self) -> int:
        return self.base + self.pos

    @property
    def avail(self) -> int:
        return len(self.buf) - self.pos

    def fill(self, n: int) -> bool:
        """Ensure ``n`` unread bytes; False if the file ends first."""
        have = len(self.buf) - self.pos
        if have >= n:
            return True
        parts = [self.buf[self.pos :]]
        while have < n and not self._eof:
            chunk = self._f.read(max(self._block, n - have))
            if not chunk:
                self._eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self.base += self.pos
        self.buf = b"".join(parts)
        self.pos = 0
        return have >= n


def read_packets(f: BinaryReader, block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator[Packet]:
    """Yield the packets of a libpcap or pcapng file, reading ``f`` in blocks."""
    win = _Window(f, max(block_size, 64))
    if not win.fill(4):
        raise CaptureError("file too short to be a capture", win.avail)
    magic = win.buf[:4]
    if magic == _PCAPNG_SHB:
        return _read_pcapng(win)
    if magic in _PCAP_MAGIC:
        return _read_pcap(win, *_PCAP_MAGIC[magic])
    raise CaptureError(f"not a pcap or pcapng file (magic {magic.hex()})", 0)


def _read_pcap(win: _Window, endian: str, scale: float) -> Iterator[Packet]:
    """libpcap: a 24-byte file header, then 16-byte record headers + data."""
    if not win.fill(24):
        raise CaptureError("truncated pcap file header", 0)
    _, major, _, _, _, _, network = struct.unpack_from(endian + "IHHiIII", win.buf, 0)
    if major != 2:
        raise CaptureError(f"unsupported pcap version {major}", 4)
    linktype = network & 0xFFFF  # upper bits carry FCS information
    record = struct.Struct(endian + "IIII").unpack_from
    win.pos = 24
    buf, pos = win.buf, win.pos
    while True:
        if len(buf) - pos < 16:
            win.pos = pos
            if not win.fill(16):
                if win.avail:
                    raise CaptureError("truncated packet record header", win.offset)
                return
            buf, pos = win.buf, win.pos
        sec, frac, incl, _ = record(buf, pos)
        if incl > MAX_RECORD:
            raise CaptureError(f"implausible packet length {incl}", win.base + pos)
        end = pos + 16 + incl
        if end > len(buf):
            win.pos = pos
            if not win.fill(16 + incl):
                raise CaptureError("truncated packet data", win.offset)
            buf, pos = win.buf, win.pos
            end = pos + 16 + incl
        yield Packet(sec + frac * scale, linktype, buf[pos + 16 : end], win.base + pos)
        pos = end


@dataclass(frozen=True, slots=True)
class _Interface:
    linktype: int
    snaplen: int
    units: float  # timestamp units per second (if_tsresol)
    tsoffset: int  # seconds added to every timestamp (if_tsoffset)


class _Section:
    """Per-section state: byte order and the interfaces described so far."""

    def __init__(self, endian: str) -> None:
        self.endian = endian
        self.head = struct.Struct(endian + "II").unpack_from
        self.u32 = struct.Struct(endian + "I").unpack_from
        self.epb = struct.Struct(endian + "IIIII").unpack_from
        self.opb = struct.Struct(endian + "HHIIII").unpack_from
        self.interfaces: list[_Interface] = []

    def interface(self, ifid: int, offset: int) -> _Interface:
        try:
            return self.interfaces[ifid]
        except IndexError:
            raise CaptureError(f"packet for undescribed interface {ifid}", offset) from None


def _read_pcapng(win: _Window) -> Iterator[Packet]:
    """Blocks until the end of the file; Enhanced Packet Blocks on the fast path.

    The SHB type 0x0A0D0D0A reads the same in both byte orders, so every
    block header can be read with the current section's byte order and a new
    section recognised from it.
    """
    if not win.fill(12):
        raise CaptureError("truncated section header block", 0)
    section = _section_for(win.buf, 0, 0)
    buf, pos = win.buf, win.pos
    while True:
        if len(buf) - pos < 12:
            win.pos = pos
            if not win.fill(12):
                if win.avail:
                    raise CaptureError("truncated block header", win.offset)
                return
            buf, pos = win.buf, win.pos
        btype, blen = section.head(buf, pos)
        if btype == _SHB:
            section = _section_for(buf, pos, win.base + pos)
            btype, blen = section.head(buf, pos)
        if blen < 12 or blen % 4 or blen > MAX_RECORD:
            raise CaptureError(f"invalid block length {blen}", win.base + pos)
        if len(buf) - pos < blen:
            win.pos = pos
            if not win.fill(blen):
                raise CaptureError("truncated block", win.offset)
            buf, pos = win.buf, win.pos
        offset = win.base + pos
        if section.u32(buf, pos + blen - 4)[0] != blen:
            raise CaptureError("block lengths at both ends differ", offset)
        if btype == _EPB:
            # Enhanced Packet Block (§4.3): interface, 64-bit time, lengths, data.
            if blen < 32:
                raise CaptureError("enhanced packet block too short", offset)
            ifid, high, low, caplen, _ = section.epb(buf, pos + 8)
            if 28 + caplen > blen - 4:
                raise CaptureError("enhanced packet data overruns its block", offset)
            iface = section.interface(ifid, offset)
            ts = ((high << 32) | low) / iface.units + iface.tsoffset
            yield Packet(ts, iface.linktype, buf[pos + 28 : pos + 28 + caplen], offset)
        elif btype == _SPB:
            yield _simple(section, buf, pos, blen, offset)
        elif btype == _OPB:
            yield _obsolete(section, buf, pos, blen, offset)
        elif btype == _IDB:
            section.interfaces.append(_interface(section, buf, pos, blen, offset))
        pos += blen


def _section_for(buf: bytes, pos: int, offset: int) -> _Section:
    """A Section Header Block starts a new section with its own byte order (§4.1)."""
    for endian in "<>":
        if struct.unpack_from(endian + "I", buf, pos + 8)[0] == _BOM:
            return _Section(endian)
    raise CaptureError("section header with an invalid byte-order magic", offset)


def _simple(section: _Section, buf: bytes, pos: int, blen: int, offset: int) -> Packet:
    """Simple Packet Block (§4.4): interface 0, original length, no timestamp.

    The captured length is the smallest of the original length, the block
    body and the interface's snap length. There is no timestamp, so the
    packet carries 0.0 (documented in docs/analyze.md).
    """
    if blen < 16:
        raise CaptureError("simple packet block too short", offset)
    iface = section.interface(0, offset)
    (orig,) = section.u32(buf, pos + 8)
    caplen = min(orig, blen - 16)
    if iface.snaplen:
        caplen = min(caplen, iface.snaplen)
    return Packet(0.0, iface.linktype, buf[pos + 12 : pos + 12 + caplen], offset)


def _obsolete(section: _Section, buf: bytes, pos: int, blen: int, offset: int) -> Packet:
    """Packet Block (obsolete, appendix A): 16-bit interface id, then as the EPB."""
    if blen < 32:
        raise CaptureError("packet block too short", offset)
    ifid, _, high, low, caplen, _ = section.opb(buf, pos + 8)
    if 28 + caplen > blen - 4:
        raise CaptureError("packet data overruns its block", offset)
    iface = section.interface(ifid, offset)
    ts = ((high << 32) | low) / iface.units + iface.tsoffset
    return Packet(ts, iface.linktype, buf[pos + 28 : pos + 28 + caplen], offset)


def _interface(section: _Section, buf: bytes, pos: int, blen: int, offset: int) -> _Interface:
    """Interface Description Block (§4.2): link type, snap length, options."""
    if blen < 20:
        raise CaptureError("interface description block too short", offset)
    e = section.endian
    linktype, _, snaplen = struct.unpack_from(e + "HHI", buf, pos + 8)
    units, tsoffset = 1e6, 0
    for code, value in _options(e, buf, pos + 16, pos + blen - 4, offset):
        if code == _IF_TSRESOL and len(value) >= 1:
            r = value[0]
            units = float(2 ** (r & 0x7F)) if r & 0x80 else float(10**r)
        elif code == _IF_TSOFFSET and len(value) >= 8:
            (tsoffset,) = struct.unpack_from(e + "q", value, 0)
    return _Interface(linktype, snaplen, units, tsoffset)


def _options(
    endian: str, buf: bytes, pos: int, end: int, offset: int
) -> Iterator[tuple[int, bytes]]:
    """Options (§3.5): code, length, value padded to 32 bits, until opt_endofopt."""
    while pos + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, pos)
        if code == 0:
            return
        if pos + 4 + length > end:
            raise CaptureError("option overruns its block", offset)
        yield code, buf[pos + 4 : pos + 4 + length]
        pos += 4 + ((length + 3) & ~3)
