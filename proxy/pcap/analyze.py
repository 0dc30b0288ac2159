"""The offline analysis pipeline: capture file in, ``CapturedExchange`` records out.

    read_packets -> Decoder.decode -> filter -> Reassembler -> ConnectionAnalyzer

Everything streams: packets are read in blocks, decoded one at a time,
dropped early when the capture filter rejects them (before any TCP or HTTP
work), and records are handed to ``emit`` as soon as each exchange ends. Only
open connections and out-of-order segments are held, both bounded (see
``proxy.pcap.tcp.ReassemblyLimits``).

If the file turns out corrupt or truncated, the connections decoded so far
are closed and emitted (their records say the capture ended) before the
``CaptureError`` is raised again, so a caller has written everything that
could be read when it reports the error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.grpc.settings import GrpcSettings
from proxy.pcap.decode import IPPROTO_TCP, Decoder, DecodeStats
from proxy.pcap.filter import Predicate, compile_filter
from proxy.pcap.keylog import KeyLog
from proxy.pcap.reader import DEFAULT_BLOCK_SIZE, BinaryReader, CaptureError, read_packets
from proxy.pcap.records import CapturedExchange
from proxy.pcap.streams import ConnectionAnalyzer
from proxy.pcap.tcp import ConnectionInfo, Reassembler, ReassemblyLimits, ReassemblyStats

PROGRESS_EVERY = 1 << 14  # packets between progress callbacks

Progress = Callable[[int, int], None]  # (file offset, packets so far)


@dataclass(slots=True)
class AnalyzeStats:
    packets: int = 0
    filtered_out: int = 0
    tcp_packets: int = 0
    records: int = 0
    decode: DecodeStats = field(default_factory=DecodeStats)
    tcp: ReassemblyStats = field(default_factory=ReassemblyStats)


@dataclass(frozen=True, slots=True)
class AnalyzeOptions:
    filter: str | None = None  # tcpdump capture-filter syntax
    preview: int = 256  # body bytes kept per message
    limits: ReassemblyLimits = field(default_factory=ReassemblyLimits)
    block_size: int = DEFAULT_BLOCK_SIZE
    keylog: KeyLog | None = field(default=None, compare=False)  # decrypts TLS (tlsstream)
    grpc: GrpcSettings | None = field(default=None, compare=False)  # decodes gRPC calls


def analyze(
    f: BinaryReader,
    emit: Callable[[CapturedExchange], None],
    options: AnalyzeOptions | None = None,
    progress: Progress | None = None,
) -> AnalyzeStats:
    """Decode the capture in ``f``, calling ``emit`` once per record.

    Raises ``FilterError`` before reading anything if the filter is invalid,
    and ``CaptureError`` (after emitting what was decoded) if the file is
    corrupt.
    """
    opts = options or AnalyzeOptions()
    predicate = compile_filter(opts.filter) if opts.filter else None
    stats = AnalyzeStats()

    decoder, reassembler = build_stages(opts, emit, stats)
    try:
        _run(f, opts.block_size, decoder, predicate, reassembler, stats, progress)
    except CaptureError:
        reassembler.finish()
        raise
    reassembler.finish()
    return stats


def build_stages(
    opts: AnalyzeOptions, emit: Callable[[CapturedExchange], None], stats: AnalyzeStats
) -> tuple[Decoder, Reassembler]:
    """The decoder and the reassembler with its per-connection analyzers.

    ``analyze`` and live capture (``proxy.pcap.live``) both build their stages
    here, so whatever a connection's analysis gains (TLS decryption...) both get.
    """

    def counted(record: CapturedExchange) -> None:
        stats.records += 1
        emit(record)

    def consumer(info: ConnectionInfo) -> ConnectionAnalyzer:
        return ConnectionAnalyzer(info, counted, opts.preview, opts.keylog, opts.grpc)

    decoder = Decoder()
    reassembler = Reassembler(consumer, opts.limits)
    stats.decode, stats.tcp = decoder.stats, reassembler.stats
    return decoder, reassembler


def _run(
    f: BinaryReader, block_size: int, decoder: Decoder, predicate: Predicate | None,
    reassembler: Reassembler, stats: AnalyzeStats, progress: Progress | None,
) -> None:  # fmt: skip
    """The per-packet loop, kept flat: every call here runs once per packet."""
    decode, add = decoder.decode, reassembler.add
    packets = filtered = tcp = 0
    try:
        for pkt in read_packets(f, block_size):
            packets += 1
            if progress is not None and packets % PROGRESS_EVERY == 0:
                progress(pkt.offset, packets)
            d = decode(pkt)
            if d is None:
                continue
            if predicate is not None and not predicate(d):
                filtered += 1
                continue
            if d.proto == IPPROTO_TCP:
                tcp += 1
                add(d)
    finally:
        stats.packets, stats.filtered_out, stats.tcp_packets = packets, filtered, tcp
