"""proxy.pcap.reader: libpcap and pcapng, both byte orders, corrupt input."""

from __future__ import annotations

import dataclasses
import io
import struct

import pytest

from proxy.pcap.reader import CaptureError, Packet, read_packets
from tests.unit.test_pcap_builders import block, epb, idb, option, pcap_file, shb, spb

FRAMES = [(1700000000.25, b"A" * 60), (1700000001.5, b"B" * 1514), (1700000002.0, b"C")]


def packets(data: bytes, block_size: int = 1 << 20) -> list[Packet]:
    return list(read_packets(io.BytesIO(data), block_size))


def read_until_error(data: bytes, block_size: int = 1 << 20) -> tuple[list[Packet], CaptureError]:
    got: list[Packet] = []
    with pytest.raises(CaptureError) as info:
        for p in read_packets(io.BytesIO(data), block_size):
            got.append(p)
    return got, info.value


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_both_byte_orders_and_resolutions(order: str, nano: bool) -> None:
    got = packets(pcap_file(FRAMES, linktype=113, order=order, nano=nano))
    assert [p.data for p in got] == [d for _, d in FRAMES]
    assert [p.ts for p in got] == pytest.approx([t for t, _ in FRAMES], abs=1e-9)
    assert {p.linktype for p in got} == {113}
    assert [p.offset for p in got] == [24, 24 + 16 + 60, 24 + 32 + 60 + 1514]


def test_pcap_nanosecond_precision_is_kept() -> None:
    data = pcap_file([(0, b"x")], nano=True)
    data = data[:24] + struct.pack("<II", 5, 123456789) + data[32:]
    assert packets(data)[0].ts == pytest.approx(5.123456789, abs=1e-12)


def test_pcap_linktype_fcs_bits_are_masked() -> None:
    data = bytearray(pcap_file(FRAMES[:1], linktype=1))
    data[20:24] = struct.pack("<I", 1 | 0x14000000)  # FCS present, 4 bytes
    assert packets(bytes(data))[0].linktype == 1


@pytest.mark.parametrize("block_size", [64, 100, 1500, 1 << 20])
def test_small_blocks_give_the_same_packets(block_size: int) -> None:
    frames = [(i + 0.5, bytes([i % 251]) * (i * 37 % 1600)) for i in range(200)]
    for data in (
        pcap_file(frames),
        shb() + idb() + b"".join(epb(d, int(t * 1e6)) for t, d in frames),
    ):
        got = packets(data, block_size)
        assert [p.data for p in got] == [d for _, d in frames]


class CountingReader(io.BytesIO):
    """Records every read size, to prove the reader streams."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int] = []

    def read(self, size: int | None = -1, /) -> bytes:
        self.sizes.append(-1 if size is None else size)
        return super().read(size)


def test_reader_never_reads_the_whole_file_at_once() -> None:
    frames = [(float(i), b"z" * 1000) for i in range(3000)]  # ~3 MB
    src = CountingReader(pcap_file(frames))
    assert sum(1 for _ in read_packets(src, block_size=65536)) == 3000
    assert max(src.sizes) <= 65536 and -1 not in src.sizes


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_epb_default_microseconds(order: str) -> None:
    data = (
        shb(order) + idb(1, order) + b"".join(epb(d, int(t * 1e6), order=order) for t, d in FRAMES)
    )
    got = packets(data)
    assert [p.data for p in got] == [d for _, d in FRAMES]
    assert [p.ts for p in got] == pytest.approx([t for t, _ in FRAMES])
    first = len(shb(order)) + len(idb(1, order))
    assert got[0].offset == first


def test_pcapng_tsresol_and_tsoffset() -> None:
    nano = idb(1, options=option(9, b"\x09"))
    pow2 = idb(101, options=option(9, b"\x8a") + option(14, struct.pack("<q", 1000)))
    data = shb() + nano + pow2 + epb(b"n", 1_500_000_000, ifid=0) + epb(b"p", 2048, ifid=1)
    a, b = packets(data)
    assert (a.linktype, a.ts) == (1, pytest.approx(1.5))
    assert (b.linktype, b.ts) == (101, pytest.approx(1002.0))


def test_pcapng_simple_and_obsolete_packet_blocks() -> None:
    opb_body = struct.pack("<HHIIII", 0, 0, 0, 3_000_000, 4, 4) + b"obso"
    data = shb() + idb(1, snaplen=5) + spb(b"0123456789") + block(2, opb_body)
    s, o = packets(data)
    assert (s.data, s.ts, s.linktype) == (b"01234", 0.0, 1)  # cut to the snap length
    assert (o.data, o.ts) == (b"obso", pytest.approx(3.0))


def test_pcapng_unknown_blocks_are_skipped() -> None:
    data = (
        shb()
        + block(4, b"\0" * 8)
        + idb()
        + block(0x0BAD, b"custom")
        + epb(b"x", 1)
        + block(5, b"")
    )
    assert [p.data for p in packets(data)] == [b"x"]


def test_pcapng_new_section_changes_byte_order_and_interfaces() -> None:
    data = shb("<") + idb(1, "<") + epb(b"le", 1, order="<")
    data += shb(">") + idb(113, ">") + epb(b"be", 2, order=">")
    got = packets(data)
    assert [(p.data, p.linktype) for p in got] == [(b"le", 1), (b"be", 113)]


def test_truncated_pcap_record_after_good_packets() -> None:
    data = pcap_file(FRAMES)
    got, err = read_until_error(data[:-1])
    assert [p.data for p in got] == [d for _, d in FRAMES[:2]]
    assert err.offset == 24 + 32 + 60 + 1514  # the record that is cut
    assert "truncated" in str(err) and str(err.offset) in str(err)


def test_truncated_pcap_record_header() -> None:
    got, err = read_until_error(pcap_file(FRAMES) + b"\0" * 7, block_size=64)
    assert len(got) == 3 and "record header" in err.message


def test_implausible_pcap_length_is_corrupt() -> None:
    data = pcap_file(FRAMES[:1]) + struct.pack("<IIII", 0, 0, 0x7FFFFFFF, 1)
    got, err = read_until_error(data)
    assert len(got) == 1 and err.offset == 24 + 16 + 60


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (struct.pack("<II", 6, 30) + b"\0" * 22, "invalid block length"),
        (struct.pack("<II", 6, 400) + b"\0" * 20, "truncated block"),
        (block(6, b"\0" * 24)[:-4] + struct.pack("<I", 99), "differ"),
        (epb(b"x", 1, ifid=3), "undescribed interface"),
        (block(6, struct.pack("<IIIII", 0, 0, 0, 500, 500)), "overruns"),
        (b"\x06\0\0", "truncated block header"),
    ],
)
def test_corrupt_pcapng_blocks(tail: bytes, message: str) -> None:
    good = shb() + idb() + epb(b"ok", 1)
    got, err = read_until_error(good + tail)
    assert [p.data for p in got] == [b"ok"]
    assert message in err.message
    assert err.offset == len(good)


def test_not_a_capture() -> None:
    with pytest.raises(CaptureError) as info:
        packets(b"GIF89a........................")
    assert info.value.offset == 0
    with pytest.raises(CaptureError):
        packets(b"")
    with pytest.raises(CaptureError):
        packets(pcap_file([])[:10])


def test_packet_is_frozen_and_slotted() -> None:
    p = packets(pcap_file(FRAMES[:1]))[0]
    assert not hasattr(p, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.ts = 0.0  # type: ignore[misc]
