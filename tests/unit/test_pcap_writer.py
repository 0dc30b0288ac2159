"""proxy.pcap.writer: synthetic conversations, read back through our own reader."""

from __future__ import annotations

import io
import random
import struct

import pytest

from proxy.pcap.decode import DecodedPacket, Decoder
from proxy.pcap.reader import read_packets
from proxy.pcap.writer import MSS_V4, MSS_V6, PcapngWriter, internet_checksum
from tests.unit.test_pcap_builders import ACK, FIN, PSH, RST, SYN, checksum

C4, S4 = ("10.0.0.1", 40000), ("10.0.0.2", 80)
C6, S6 = ("fd00::1", 40000), ("fd00::2", 443)


def write(
    client: tuple[str, int], server: tuple[str, int], linktype: int = 1, rst: bool = False
) -> bytes:
    f = io.BytesIO()
    w = PcapngWriter(f, linktype)
    conv = w.open_conversation(client, server, 100.0, "flow-42")
    conv.data(100.5, True, b"GET / HTTP/1.1\r\n\r\n")
    conv.data(101.0, False, bytes(range(256)) * 40)  # 10240 bytes
    conv.close(102.0, rst=rst)
    w.flush()
    return f.getvalue()


def decoded(data: bytes) -> list[DecodedPacket]:
    dec = Decoder()
    out = [dec.decode(p) for p in read_packets(io.BytesIO(data))]
    assert all(d is not None for d in out)
    return [d for d in out if d is not None]


@pytest.mark.parametrize(
    ("client", "server", "linktype", "mss"),
    [(C4, S4, 1, MSS_V4), (C4, S4, 101, MSS_V4), (C6, S6, 1, MSS_V6), (C6, S6, 101, MSS_V6)],
)
def test_round_trip(
    client: tuple[str, int], server: tuple[str, int], linktype: int, mss: int
) -> None:
    pkts = decoded(write(client, server, linktype))
    flags = [p.flags for p in pkts]
    assert flags[:3] == [SYN, SYN | ACK, ACK]
    assert flags[-3:] == [FIN | ACK, FIN | ACK, ACK]
    c_isn, s_isn = pkts[0].seq, pkts[1].seq
    assert pkts[1].ack == c_isn + 1 and pkts[2].ack == s_isn + 1
    up = b"".join(p.payload for p in pkts if p.sport == client[1])
    down = b"".join(p.payload for p in pkts if p.sport == server[1])
    assert up == b"GET / HTTP/1.1\r\n\r\n" and down == bytes(range(256)) * 40
    sizes = [len(p.payload) for p in pkts if p.sport == server[1] and p.payload]
    assert max(sizes) == mss and sum(sizes) == 10240
    # every data segment continues the sequence space; every ACK acknowledges what was sent
    expected = {client[1]: c_isn + 1, server[1]: s_isn + 1}
    for p in pkts[2:]:
        assert p.seq == expected[p.sport]
        expected[p.sport] += len(p.payload) + bool(p.flags & FIN)
        assert p.ack == expected[p.dport]
    data_flags = [p.flags for p in pkts if p.payload]
    assert all(f & ACK for f in data_flags) and data_flags[-1] & PSH


def test_checksums_verify() -> None:
    for raw in read_packets(io.BytesIO(write(C4, S4))):
        ip = raw.data[14:]
        assert checksum(ip[:20]) == 0
        segment = ip[20:]
        pseudo = ip[12:20] + struct.pack(">HH", 6, len(segment))
        assert checksum(pseudo + segment) == 0
    for raw in read_packets(io.BytesIO(write(C6, S6, 101))):
        segment = raw.data[40:]
        pseudo = raw.data[8:40] + struct.pack(">IxxxB", len(segment), 6)
        assert checksum(pseudo + segment) == 0


def test_internet_checksum_agrees_with_the_plain_loop() -> None:
    rng = random.Random(5)
    samples = [b"", b"\0", b"\0\0\0\0", b"\xff\xff", b"\xff\xff\xff\xff", b"\x01"]
    samples += [rng.randbytes(rng.randint(1, 3000)) for _ in range(200)]
    for data in samples:
        assert internet_checksum(data) == checksum(data), data[:16]


def test_comment_on_the_first_packet_only() -> None:
    data = write(C4, S4)
    blocks, pos = [], 0
    while pos < len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        blocks.append((btype, data[pos : pos + blen]))
        pos += blen
    epbs = [b for t, b in blocks if t == 6]
    caplen = struct.unpack_from("<I", epbs[0], 20)[0]
    options = epbs[0][28 + caplen + (-caplen % 4) : -4]
    code, length = struct.unpack_from("<HH", options, 0)
    assert (code, options[4 : 4 + length]) == (1, b"flow-42")
    for b in epbs[1:]:
        n = struct.unpack_from("<I", b, 20)[0]
        assert len(b) == 32 + n + (-n % 4)  # no options


def test_rst_close_and_close_is_idempotent() -> None:
    pkts = decoded(write(C4, S4, rst=True))
    assert pkts[-1].flags == RST | ACK and pkts[-1].sport == C4[1]


def test_server_initiated_close() -> None:
    f = io.BytesIO()
    conv = PcapngWriter(f).open_conversation(C4, S4, 1.0)
    conv.close(2.0, from_client=False)
    conv.close(3.0)  # no second FIN
    pkts = decoded(f.getvalue())
    assert [(p.sport, p.flags) for p in pkts[3:]] == [
        (80, FIN | ACK),
        (40000, FIN | ACK),
        (80, ACK),
    ]
    with pytest.raises(ValueError):
        conv.data(4.0, True, b"x")


def test_receiver_acks_every_16_segments() -> None:
    f = io.BytesIO()
    conv = PcapngWriter(f).open_conversation(C4, S4, 1.0)
    conv.data(2.0, False, b"x" * (MSS_V4 * 40))
    pkts = decoded(f.getvalue())[3:]
    acks = [i for i, p in enumerate(pkts) if p.sport == C4[1]]
    assert acks == [16, 33, 42]  # after segments 16 and 32, and after the last


def test_writing_is_incremental() -> None:
    f = io.BytesIO()
    w = PcapngWriter(f)
    sizes = [f.tell()]
    conv = w.open_conversation(C4, S4, 1.0)
    sizes.append(f.tell())
    conv.data(1.1, True, b"abc")
    sizes.append(f.tell())
    conv.close(1.2)
    sizes.append(f.tell())
    assert sizes == sorted(set(sizes)) and w.packets == 3 + 2 + 3


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        PcapngWriter(io.BytesIO(), linktype=113)
    with pytest.raises(ValueError):
        PcapngWriter(io.BytesIO()).open_conversation(C4, S6, 0.0)


def test_timestamps_in_microseconds() -> None:
    ts = [p.ts for p in read_packets(io.BytesIO(write(C4, S4)))]
    assert (
        ts[0] == pytest.approx(100.0)
        and ts[3] == pytest.approx(100.5)
        and ts[-1] == pytest.approx(102.0)
    )


def test_ordered_writer_releases_in_time_order() -> None:
    """Packets made out of time order come out sorted (stable for equal times)."""
    f = io.BytesIO()
    w = PcapngWriter(f, ordered=True)
    a = w.open_conversation(C4, S4, 10.0)
    b = w.open_conversation(("10.0.0.3", 40001), S4, 12.0)
    b.data(12.5, True, b"later")
    a.data(11.0, True, b"earlier")  # made after b's packets, but older
    assert w.held == 3 + 3 + 2 + 2 and len(f.getvalue()) == len(PcapngWriter.header_bytes())
    assert w.release(11.0) == 3 + 2  # a's handshake and data, not b's
    w.flush()
    ts = [p.ts for p in read_packets(io.BytesIO(f.getvalue()))]
    assert ts == sorted(ts) and len(ts) == 10 and w.held == 0


def test_writer_without_header_appends_to_a_shared_file() -> None:
    f = io.BytesIO(PcapngWriter.header_bytes())
    f.seek(0, io.SEEK_END)
    w = PcapngWriter(f, header=False)
    w.open_conversation(C4, S4, 1.0).close(2.0)
    assert len(list(read_packets(io.BytesIO(f.getvalue())))) == 6
