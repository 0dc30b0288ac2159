#!/usr/bin/env python3
"""Fuzz target ``pcap``: capture reader and offline analysis (proxy/pcap).

Run:  python tests/fuzz/fuzz_pcap.py tests/fuzz/corpus/pcap -dict=tests/fuzz/dicts/pcap.dict

The input is a capture file's bytes, served by ``BoundedFile``: an in-memory
file that refuses a read of the whole file (``read()`` / ``read(-1)``), a
read larger than one block plus one record, and an endless series of reads
(a reader looping at end of file). Checks:

* ``read_packets`` yields ``Packet`` objects or raises ``CaptureError``
  (its offset inside the file), nothing else; packets come in file order and
  each one's bytes are the file's bytes at its record (never invented);
* differential: the same packets and the same error with 64-byte blocks as
  with the default 1 MiB (the sliding window must not change the result);
* ``analyze`` raises only ``CaptureError`` (or ``FilterError`` for the one
  invalid filter, before reading anything); its records are well-formed
  (kind, unique ids, endpoints, sizes) and its packet count is the reader's.

The filter and the reassembly limits (default, or tiny ones that force
gaps, evictions and timeouts) are picked by the input's length, so every
mutation that adds or removes bytes also moves to another configuration.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import fuzz_main, instrumented

with instrumented(__name__ == "__main__"):
    from proxy.pcap.analyze import AnalyzeOptions, analyze
    from proxy.pcap.filter import FilterError
    from proxy.pcap.reader import MAX_RECORD, CaptureError, Packet, read_packets
    from proxy.pcap.records import CapturedExchange
    from proxy.pcap.tcp import ReassemblyLimits

TARGET = "pcap"
SMALL_BLOCK = 64
DEFAULT_BLOCK = 1 << 20
FILTERS = (
    None,
    "tcp",
    "tcp port 80 or 443 or 8080",
    "host 10.0.0.1 and not port 22",
    "ip6 or net 192.168.0.0/16",
    "portrange 1-1024 && !udp",
    "ether host 1",  # invalid: FilterError before anything is read
)
INVALID_FILTER = "ether host 1"
TINY = ReassemblyLimits(
    max_stream_buffer=512, max_stream_segments=3, max_total_buffer=1024, max_connections=2,
    gap_timeout=0.5, idle_timeout=2.0, closed_memory=1.0,
)  # fmt: skip
KINDS = frozenset({"http", "tls", "tcp"})
CLOSES = frozenset({None, "fin", "rst", "eof", "timeout", "evicted"})


class BoundedFile:
    """A read-only in-memory file that checks how it is read."""

    def __init__(self, data: bytes, block: int) -> None:
        self._data = data
        self._pos = 0
        self._max = max(block, 64) + MAX_RECORD + 64
        self._budget = len(data) + 16  # even 1-byte reads would be done by then
        self.reads = 0

    def read(self, size: int = -1, /) -> bytes:
        self.reads += 1
        assert size is not None and size >= 0, "the reader asked for the whole file"
        assert size <= self._max, f"read({size}) is more than a block and a record"
        assert self.reads <= self._budget, f"{self.reads} reads of a {len(self._data)}-byte file"
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk


def read_all(data: bytes, block: int) -> tuple[list[Packet], tuple[str, int] | None]:
    packets: list[Packet] = []
    try:
        for p in read_packets(BoundedFile(data, block), block):
            packets.append(p)
    except CaptureError as e:
        assert 0 <= e.offset <= len(data), f"error offset {e.offset} outside the file"
        return packets, (e.message, e.offset)
    return packets, None


def check_packets(data: bytes, packets: list[Packet]) -> None:
    last = -1
    for p in packets:
        assert isinstance(p, Packet), p
        assert type(p.data) is bytes and isinstance(p.ts, float) and not math.isnan(p.ts), p
        assert last < p.offset < len(data), f"packet offset {p.offset} after {last}"
        last = p.offset
        # The bytes are the file's at the record: libpcap data after its
        # 16-byte header, pcapng after the 28-byte EPB/PB or 12-byte SPB head.
        assert any(
            data[p.offset + head : p.offset + head + len(p.data)] == p.data for head in (16, 28, 12)
        ), f"packet at {p.offset} is not the file's bytes"


def check_record(r: CapturedExchange, ids: set[str]) -> None:
    assert isinstance(r, CapturedExchange), r
    assert r.kind in KINDS, r.kind
    assert r.id not in ids, f"duplicate record id {r.id}"
    ids.add(r.id)
    assert r.id.startswith(f"{r.connection}-"), r.id
    assert 0 <= r.client.port <= 0xFFFF and 0 <= r.server.port <= 0xFFFF, r
    assert r.close in CLOSES, r.close
    assert r.request_body_size >= 0 and r.response_body_size >= 0, r
    assert r.bytes_client_to_server >= 0 and r.bytes_server_to_client >= 0, r
    if r.kind == "http" and r.method is None:  # a request that could not be parsed
        assert r.errors and r.target is None, r


def one_input(data: bytes) -> None:
    packets, error = read_all(data, DEFAULT_BLOCK)
    check_packets(data, packets)
    small = read_all(data, SMALL_BLOCK)
    assert small == (packets, error), "64-byte blocks read another capture"

    flt = FILTERS[len(data) % len(FILTERS)]
    limits = TINY if (len(data) // len(FILTERS)) % 2 else ReassemblyLimits()
    f = BoundedFile(data, SMALL_BLOCK)
    records: list[CapturedExchange] = []
    ids: set[str] = set()

    def emit(r: CapturedExchange) -> None:
        check_record(r, ids)
        records.append(r)

    options = AnalyzeOptions(filter=flt, preview=16, limits=limits, block_size=SMALL_BLOCK)
    try:
        stats = analyze(f, emit, options)
    except FilterError:
        assert flt == INVALID_FILTER, f"FilterError for {flt!r}"
        assert f.reads == 0 and not records, "invalid filter noticed after reading"
        return
    except CaptureError as e:
        assert flt != INVALID_FILTER, "invalid filter accepted"
        assert error is not None and (e.message, e.offset) == error, (e, error)
        return
    assert flt != INVALID_FILTER, "invalid filter accepted"
    assert error is None, f"analyze finished where the reader failed with {error}"
    assert stats.packets == len(packets), (stats.packets, len(packets))
    assert stats.records == len(records), (stats.records, len(records))


if __name__ == "__main__":
    fuzz_main(one_input)
