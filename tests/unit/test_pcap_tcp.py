"""proxy.pcap.tcp: order, retransmission, overlap, gaps, FIN/RST, bounds."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.pcap.tcp import ConnectionInfo, Reassembler, ReassemblyLimits
from tests.unit.test_pcap_builders import ACK, FIN, RST, SYN, packed, seg

C = ("10.0.0.1", 40000)
S = ("10.0.0.2", 80)
CISN, SISN = 1000, 5000


@dataclass
class Recorder:
    info: ConnectionInfo
    events: list[tuple[object, ...]] = field(default_factory=list)

    def on_data(self, from_client: bool, ts: float, data: bytes) -> None:
        self.events.append(("data", from_client, data))

    def on_gap(self, from_client: bool, ts: float, size: int) -> None:
        self.events.append(("gap", from_client, size))

    def on_fin(self, from_client: bool, ts: float) -> None:
        self.events.append(("fin", from_client))

    def on_close(self, ts: float, reason: str) -> None:
        self.events.append(("close", reason))

    def stream(self, from_client: bool) -> bytes:
        return b"".join(e[2] for e in self.events if e[0] == "data" and e[1] == from_client)  # type: ignore[misc]


class Harness:
    def __init__(self, limits: ReassemblyLimits | None = None) -> None:
        self.recorders: list[Recorder] = []
        self.r = Reassembler(self._new, limits)

    def _new(self, info: ConnectionInfo) -> Recorder:
        rec = Recorder(info)
        self.recorders.append(rec)
        return rec

    @property
    def rec(self) -> Recorder:
        assert len(self.recorders) == 1
        return self.recorders[0]

    def handshake(self, ts: float = 0.0) -> None:
        self.r.add(seg(ts, C, S, CISN, SYN))
        self.r.add(seg(ts, S, C, SISN, SYN | ACK, ack=CISN + 1))
        self.r.add(seg(ts, C, S, CISN + 1, ACK, ack=SISN + 1))

    def client(self, offset: int, data: bytes, ts: float = 1.0, flags: int = ACK) -> None:
        self.r.add(seg(ts, C, S, (CISN + 1 + offset) & 0xFFFFFFFF, flags, data))

    def server(self, offset: int, data: bytes, ts: float = 1.0, flags: int = ACK) -> None:
        self.r.add(seg(ts, S, C, (SISN + 1 + offset) & 0xFFFFFFFF, flags, data))


def test_in_order_with_handshake_and_fins() -> None:
    h = Harness()
    h.handshake()
    h.client(0, b"hello ")
    h.client(6, b"world")
    h.server(0, b"HI")
    h.client(11, b"", flags=FIN | ACK)
    h.server(2, b"", flags=FIN | ACK)
    h.client(12, b"")  # final ACK: ignored, connection gone
    rec = h.rec
    assert rec.info.syn_seen and rec.info.client == (packed(C[0]), C[1])
    assert rec.stream(True) == b"hello world" and rec.stream(False) == b"HI"
    assert rec.events[-3:] == [("fin", True), ("fin", False), ("close", "fin")]
    assert h.r.active == 0 and h.r.stats.ignored == 1


def test_reordered_segments_are_delivered_in_order() -> None:
    h = Harness()
    h.handshake()
    h.client(10, b"KLMNO")
    h.client(5, b"FGHIJ")
    h.client(0, b"ABCDE")
    assert h.rec.stream(True) == b"ABCDEFGHIJKLMNO"
    assert h.r.stats.out_of_order == 2


def test_retransmission_is_dropped() -> None:
    h = Harness()
    h.handshake()
    h.client(0, b"abc")
    h.client(0, b"abc")
    h.client(3, b"def")
    h.client(3, b"def")
    assert h.rec.stream(True) == b"abcdef"
    assert h.r.stats.retransmitted == 2


def test_overlap_with_delivered_data_keeps_first_bytes() -> None:
    h = Harness()
    h.handshake()
    h.client(0, b"AAAA")
    h.client(2, b"xxBB")  # first two bytes overlap what was delivered
    assert h.rec.stream(True) == b"AAAABB"
    assert h.r.stats.overlap_bytes == 2


def test_overlap_between_held_segments_first_seen_wins() -> None:
    h = Harness()
    h.handshake()
    h.client(4, b"1111")  # [4, 8)
    h.client(6, b"2222")  # [6, 10): only [8, 10) is new
    h.client(2, b"333333333333")  # [2, 14): only [2, 4) and [10, 14) are new
    h.client(0, b"00")
    assert h.rec.stream(True) == b"00" + b"33" + b"1111" + b"22" + b"3333"


def test_gap_is_reported_at_fin_and_data_after_it_delivered() -> None:
    h = Harness()
    h.handshake()
    h.client(0, b"abc")
    h.client(10, b"XYZ")  # 7 bytes at offset 3 never arrive
    h.client(13, b"", flags=FIN | ACK)
    h.server(0, b"", flags=FIN | ACK)
    assert h.rec.events == [("data", True, b"abc"), ("fin", False)]  # the hole may still fill
    h.r.finish()
    assert h.rec.events[2:] == [
        ("gap", True, 7), ("data", True, b"XYZ"), ("fin", True), ("close", "fin"),
    ]  # fmt: skip
    assert (h.r.stats.gaps, h.r.stats.gap_bytes) == (1, 7)


def test_gap_when_the_per_stream_bound_is_exceeded() -> None:
    h = Harness(ReassemblyLimits(max_stream_buffer=10))
    h.handshake()
    h.client(5, b"abcdef")
    assert ("gap", True, 5) not in h.rec.events
    h.client(11, b"ghijkl")  # 12 bytes held > 10
    assert ("gap", True, 5) in h.rec.events
    assert h.rec.stream(True) == b"abcdefghijkl"


def test_gap_when_a_hole_stays_open_too_long() -> None:
    h = Harness(ReassemblyLimits(gap_timeout=5.0))
    h.handshake()
    h.client(3, b"later", ts=1.0)
    h.client(8, b"more", ts=10.0)
    assert h.rec.events[-3:] == [
        ("gap", True, 3),
        ("data", True, b"later"),
        ("data", True, b"more"),
    ]


def test_overall_cap_gives_up_the_largest_holder() -> None:
    h = Harness(ReassemblyLimits(max_total_buffer=20))
    h.handshake()
    h.client(1, b"x" * 15)
    h.server(1, b"y" * 10)  # 25 held in total: the client's 15 are given up
    assert ("gap", True, 1) in h.rec.events and h.rec.stream(True) == b"x" * 15
    assert h.rec.stream(False) == b""


def test_stream_without_syn_starts_at_first_data_and_guesses_client_by_port() -> None:
    h = Harness()
    h.server(100, b"HTTP/1.1 200 OK\r\n")  # the server (port 80) speaks first in the capture
    h.client(50, b"GET / HTTP/1.1\r\n")
    rec = h.rec
    assert not rec.info.syn_seen
    assert rec.info.client == (packed(C[0]), C[1])  # higher port is the client
    assert rec.stream(False) == b"HTTP/1.1 200 OK\r\n" and rec.stream(True) == b"GET / HTTP/1.1\r\n"


def test_sequence_wraparound() -> None:
    h = Harness()
    isn = 0xFFFFFFF0
    h.r.add(seg(0, C, S, isn, SYN))
    h.r.add(seg(0, C, S, isn + 1, ACK, b"A" * 10))
    h.r.add(seg(0, C, S, (isn + 21) & 0xFFFFFFFF, ACK, b"C" * 10))  # after the wrap, early
    h.r.add(seg(0, C, S, (isn + 11) & 0xFFFFFFFF, ACK, b"B" * 10))  # crosses the wrap
    assert h.rec.stream(True) == b"A" * 10 + b"B" * 10 + b"C" * 10


def test_rst_closes_and_flushes_holes() -> None:
    h = Harness()
    h.handshake()
    h.client(0, b"ab")
    h.client(5, b"ef")
    h.server(0, b"", flags=RST | ACK)
    assert h.rec.events[-3:] == [("gap", True, 3), ("data", True, b"ef"), ("close", "rst")]
    h.client(7, b"late")  # data after the reset is not a new connection
    assert len(h.recorders) == 1 and h.r.stats.late == 1


def test_new_syn_on_a_closed_tuple_is_a_new_connection() -> None:
    h = Harness()
    h.handshake()
    h.server(0, b"", flags=RST)
    h.r.add(seg(5.0, C, S, 77, SYN))
    h.r.add(seg(5.0, C, S, 78, ACK, b"again"))
    assert len(h.recorders) == 2 and h.recorders[1].stream(True) == b"again"
    assert h.recorders[1].info.id == 2


def test_syn_ack_seen_without_syn_makes_receiver_the_client() -> None:
    h = Harness()
    h.r.add(seg(0, S, C, SISN, SYN | ACK))
    assert h.rec.info.client == (packed(C[0]), C[1]) and h.rec.info.syn_seen


def test_data_on_syn_is_delivered() -> None:
    h = Harness()
    h.r.add(seg(0, C, S, CISN, SYN, b"fastopen"))
    h.client(8, b"!")
    assert h.rec.stream(True) == b"fastopen!"


def test_fin_before_late_data_waits_for_it() -> None:
    h = Harness()
    h.handshake()
    h.client(3, b"", flags=FIN | ACK)
    assert ("fin", True) not in h.rec.events
    h.client(0, b"abc")
    assert h.rec.events[-2:] == [("data", True, b"abc"), ("fin", True)]


def test_finish_closes_open_connections_with_eof() -> None:
    h = Harness()
    h.handshake()
    h.client(0, b"abc")
    h.client(10, b"zz")
    h.r.finish()
    assert h.rec.events[-3:] == [("gap", True, 7), ("data", True, b"zz"), ("close", "eof")]


def test_idle_connections_time_out() -> None:
    h = Harness(ReassemblyLimits(idle_timeout=10.0))
    h.handshake(ts=0.0)
    for i in range(5000):  # a sweep runs every few thousand packets
        h.r.add(seg(100.0, ("10.9.9.9", 1), ("10.9.9.8", 2), i, ACK))
    assert h.recorders[0].events[-1] == ("close", "timeout")
    assert h.r.stats.timed_out == 1


@pytest.mark.parametrize("limit", [1, 3])
def test_table_bound_evicts_oldest(limit: int) -> None:
    h = Harness(ReassemblyLimits(max_connections=limit))
    for port in range(10, 15):
        h.r.add(seg(0, ("10.0.0.1", 40000 + port), S, 1, SYN))
    assert h.r.active == limit
    assert [r.events[-1] for r in h.recorders[: 5 - limit]] == [("close", "evicted")] * (5 - limit)
    assert h.r.stats.evicted == 5 - limit


def test_ipv6_connection() -> None:
    h = Harness()
    a, b = ("fd00::1", 50000), ("fd00::2", 443)
    h.r.add(seg(0, a, b, 10, SYN))
    h.r.add(seg(0, a, b, 11, ACK, b"x"))
    assert h.rec.info.version == 6 and h.rec.stream(True) == b"x"


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=4000),
    cuts=st.lists(st.integers(1, 3999), max_size=25),
    extra=st.lists(st.tuples(st.integers(0, 3999), st.integers(1, 1500)), max_size=10),
    seed=st.integers(0, 2**32 - 1),
    isn=st.integers(0, 2**32 - 1),
)
def test_any_segmentation_order_and_duplication_gives_the_stream(
    data: bytes, cuts: list[int], extra: list[tuple[int, int]], seed: int, isn: int
) -> None:
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    pieces = [(a, data[a:b]) for a, b in itertools.pairwise(bounds)]
    # retransmissions with other boundaries, carrying the same bytes
    pieces += [(a, data[a : a + n]) for a, n in extra if a < len(data)]
    rng = random.Random(seed)
    rng.shuffle(pieces)
    h = Harness()
    h.r.add(seg(0, C, S, isn, SYN))
    for offset, chunk in pieces:
        h.r.add(seg(1, C, S, (isn + 1 + offset) & 0xFFFFFFFF, ACK, chunk))
    h.r.finish()
    assert h.rec.stream(True) == data
    assert not [e for e in h.rec.events if e[0] == "gap"]
