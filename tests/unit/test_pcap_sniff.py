"""proxy.pcap.sniff and ``tapproxy sniff``'s usage errors, without a packet socket.

The live loop runs on a fake source (a socketpair end for ``poll``, packets
from a list), so the stop conditions, the user-space filter, the final drain
and the idle sweep are tested without privilege.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from proxy.cli.sniff_cmd import main
from proxy.pcap.analyze import AnalyzeOptions
from proxy.pcap.live import KernelStats, LiveSource
from proxy.pcap.reader import Packet
from proxy.pcap.records import CapturedExchange
from proxy.pcap.sniff import SniffOptions, sniff
from proxy.pcap.tcp import ReassemblyLimits
from tests.unit.test_pcap_builders import ACK, FIN, PSH, SYN, ether, ipv4, tcp, udp

C, S = "10.0.0.1", "10.0.0.2"


def _frame(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
           payload: bytes = b"") -> bytes:  # fmt: skip
    return ether(ipv4(src, dst, tcp(sport, dport, seq, ack, flags, payload)))


def exchange(port: int = 80, close: bool = True) -> list[bytes]:
    req = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    frames = [
        _frame(C, S, 40000, port, 100, 0, SYN),
        _frame(S, C, port, 40000, 500, 101, SYN | ACK),
        _frame(C, S, 40000, port, 101, 501, ACK | PSH, req),
    ]
    if close:
        frames += [
            _frame(S, C, port, 40000, 501, 101 + len(req), ACK | PSH, resp),
            _frame(C, S, 40000, port, 101 + len(req), 501 + len(resp), FIN | ACK),
            _frame(S, C, port, 40000, 501 + len(resp), 102 + len(req), FIN | ACK),
        ]
    return frames


class FakeSource:
    """What ``sniff`` uses of a ``LiveSource``: readable while packets remain."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = list(frames)
        self.received = 0
        self.stopped = False
        self._r, self._w = socket.socketpair()
        self._w.send(b"x")  # always readable: poll returns at once

    def fileno(self) -> int:
        return self._r.fileno()

    def read(self, limit: int = 512) -> list[Packet]:
        out = []
        while self.frames and len(out) < limit:
            out.append(Packet(1000.0 + self.received, 1, self.frames.pop(0), self.received))
            self.received += 1
        return out

    def stop_receiving(self) -> None:
        self.stopped = True

    def kernel_stats(self) -> KernelStats:
        return KernelStats(self.received, 0)

    def close(self) -> None:
        self._r.close()
        self._w.close()


@pytest.fixture
def records() -> Iterator[list[CapturedExchange]]:
    yield []


def run(frames: list[bytes], options: SniffOptions, out: list[CapturedExchange]) -> FakeSource:
    source = FakeSource(frames)

    def stop() -> bool:  # stop once the fake source is empty
        return not source.frames

    sniff(source, out.append, options, stop)  # type: ignore[arg-type]
    source.close()
    return source


def test_records_come_out_and_the_source_is_drained_at_the_end(
    records: list[CapturedExchange],
) -> None:
    source = run(exchange(), SniffOptions(), records)
    assert source.stopped
    assert [(r.kind, r.method, r.status) for r in records] == [("http", "GET", 200)]


def test_count_stops_after_n_packets(records: list[CapturedExchange]) -> None:
    source = run(exchange() * 2, SniffOptions(count=3), records)
    assert source.received == 3
    assert len(records) == 1 and records[0].status is None  # closed at the end, unanswered


def test_user_space_predicate_filters_what_the_kernel_passed(
    records: list[CapturedExchange],
) -> None:
    noise = [ether(ipv4(C, S, udp(1, 2, b"x"), 17))] * 3
    options = SniffOptions(analyze=AnalyzeOptions(filter="tcp port 81"))
    run(noise + exchange(80) + exchange(81), options, records)
    assert [r.server.port for r in records] == [81]


def test_open_connections_are_flushed_at_stop(records: list[CapturedExchange]) -> None:
    limits = ReassemblyLimits(idle_timeout=3600.0)
    run(exchange(close=False), SniffOptions(analyze=AnalyzeOptions(limits=limits)), records)
    assert len(records) == 1
    assert records[0].method == "GET"


def test_an_invalid_filter_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-i", "lo", "--filter", "port 80 and"]) == 2
    assert "invalid filter" in capsys.readouterr().err


def test_an_unknown_interface_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-i", "nosuchif0", "--count", "1"]) == 2
    assert "no such interface" in capsys.readouterr().err


def test_live_source_is_what_sniff_expects() -> None:
    for name in ("fileno", "read", "stop_receiving", "kernel_stats", "close"):
        assert callable(getattr(LiveSource, name))


def test_the_capture_stats_record_has_the_flow_log_schema() -> None:
    """So ``tapproxy convert`` reads a sniff output whole (it refuses other schemas)."""
    from proxy.cli.sniff_cmd import _summary
    from proxy.flow.record import SCHEMA_VERSION
    from proxy.pcap.sniff import SniffStats

    record = _summary("lo", SniffStats(kernel=KernelStats(5, 1)))
    assert record["schema"] == SCHEMA_VERSION
    assert (record["kind"], record["kernel_packets"], record["kernel_drops"]) == (
        "capture-stats", 5, 1,
    )  # fmt: skip
