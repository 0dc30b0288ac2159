"""The live pipeline: packets from a ``LiveSource`` through ``analyze``'s stages.

    LiveSource.read -> Decoder.decode -> filter -> Reassembler -> ConnectionAnalyzer

The stages are the ones ``proxy.pcap.analyze.build_stages`` builds for
capture files, so a live capture is decoded exactly as the same packets in a
file would be. The differences are those of time:

* the capture filter runs twice: compiled to BPF in the kernel (``LiveSource``),
  and as the Python predicate here, the exact test (the kernel program passes
  up what it cannot judge, see ``proxy.pcap.bpf``);
* connections idle for ``idle_timeout`` of *wall-clock* time are closed and
  emitted even when no packet arrives to advance capture time, so memory
  stays bounded on a quiet link;
* with a key log, packets are decoded ``KEYLOG_HOLD`` seconds after capture:
  a TLS client writes a handshake secret only after processing the packet
  that needs it, so decoding at once would look the secret up too early;
* the loop stops on ``count`` packets, after ``duration`` seconds, or when
  ``stop()`` says so (a signal). The kernel is then told to queue nothing
  more, what it had queued is read and processed, every open connection is
  closed and its record emitted, and the kernel's counters are read: so the
  packets read equal the packets the kernel says passed the filter.
"""

from __future__ import annotations

import math
import select
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.pcap.analyze import AnalyzeOptions, AnalyzeStats, build_stages
from proxy.pcap.decode import IPPROTO_TCP, Decoder
from proxy.pcap.filter import Predicate, compile_filter
from proxy.pcap.live import KernelStats, LiveSource
from proxy.pcap.reader import Packet
from proxy.pcap.records import CapturedExchange
from proxy.pcap.tcp import Reassembler

POLL_MAX = 0.1  # seconds between looks at the stop flag, the clock and the deadline
SWEEP_EVERY = 1.0  # seconds between idle-connection sweeps
BATCH = 512  # packets read per wake-up before the pipeline runs
KEYLOG_HOLD = 0.3  # seconds packets wait for the client's key log line (with --keylog)
HOLD_MAX_BYTES = 64 << 20  # bytes of packets held at most

Tap = Callable[[Packet], None]  # sees every packet read (the --pcap writer)


@dataclass(slots=True)
class SniffStats:
    started: float = 0.0
    ended: float = 0.0
    read: int = 0  # packets user space received from the kernel
    analyze: AnalyzeStats = field(default_factory=AnalyzeStats)
    kernel: KernelStats = field(default_factory=lambda: KernelStats(0, 0))


@dataclass(frozen=True, slots=True)
class SniffOptions:
    count: int | None = None  # stop after this many packets read
    duration: float | None = None  # stop after this many seconds
    analyze: AnalyzeOptions = field(default_factory=AnalyzeOptions)


def sniff(
    source: LiveSource, emit: Callable[[CapturedExchange], None], options: SniffOptions,
    stop: Callable[[], bool] = lambda: False, tap: Tap | None = None,
    flush: Callable[[], None] | None = None,
) -> SniffStats:  # fmt: skip
    """Run until a stop condition; returns the counts, the kernel's included.

    ``flush`` is called after each batch and each idle sweep, so that records
    reach the output as their exchanges end rather than when a buffer fills.
    """
    opts = options.analyze
    predicate = compile_filter(opts.filter) if opts.filter else None
    stats = SniffStats(started=time.time())
    decoder, reassembler = build_stages(opts, emit, stats.analyze)
    hold = KEYLOG_HOLD if opts.keylog is not None else 0.0
    loop = _Loop(source, decoder, predicate, reassembler, stats, tap, hold)
    deadline = stats.started + options.duration if options.duration is not None else None
    poller = select.poll()
    poller.register(source.fileno(), select.POLLIN)
    last_sweep = stats.started
    try:
        while not stop() and not loop.done(options.count):
            now = time.time()
            if deadline is not None and now >= deadline:
                break
            wait = POLL_MAX if deadline is None else min(POLL_MAX, deadline - now)
            if poller.poll(max(wait, 0.0) * 1000) and loop.batch(options.count) and flush:
                flush()
            now = time.time()
            if loop.held:
                loop.release(now - hold)
            if now - last_sweep >= SWEEP_EVERY:
                reassembler.expire(now)
                last_sweep = now
                if flush is not None:
                    flush()
    finally:
        source.stop_receiving()
        while loop.batch(options.count):  # what the kernel queued before it stopped
            pass
        loop.release(math.inf)
        reassembler.finish()
        stats.ended = time.time()
        stats.kernel = source.kernel_stats()
        stats.read = source.received
    return stats


class _Loop:
    """The per-packet work, as ``analyze._run`` does it for files.

    With a ``hold`` (seconds), packets wait that long after capture before
    they are decoded: the live TLS decryption case, where the client writes a
    handshake secret to its key log only after it has processed the packet
    that needs it. At most ``HOLD_MAX_BYTES`` wait; past that the oldest go on.
    """

    def __init__(
        self, source: LiveSource, decoder: Decoder, predicate: Predicate | None,
        reassembler: Reassembler, stats: SniffStats, tap: Tap | None, hold: float = 0.0,
    ) -> None:  # fmt: skip
        self.source = source
        self.decode = decoder.decode
        self.predicate = predicate
        self.add = reassembler.add
        self.stats = stats.analyze
        self.tap = tap
        self.packets = 0
        self.hold = hold
        self.held: deque[Packet] = deque()
        self.held_bytes = 0

    def done(self, count: int | None) -> bool:
        return count is not None and self.packets >= count

    def batch(self, count: int | None) -> int:
        """Read up to a batch of packets and process what is due; returns how many were read."""
        limit = BATCH if count is None else min(BATCH, count - self.packets)
        packets = self.source.read(limit)
        self.packets += len(packets)
        if self.tap is not None:
            for pkt in packets:
                self.tap(pkt)
        if not self.hold:
            self.process(packets)
            return len(packets)
        self.held.extend(packets)
        self.held_bytes += sum(len(p.data) for p in packets)
        self.release(time.time() - self.hold)
        return len(packets)

    def release(self, before: float) -> None:
        """Process held packets captured before ``before`` (all: ``math.inf``)."""
        held, due = self.held, []
        while held and (held[0].ts < before or self.held_bytes > HOLD_MAX_BYTES):
            pkt = held.popleft()
            self.held_bytes -= len(pkt.data)
            due.append(pkt)
        self.process(due)

    def process(self, packets: list[Packet]) -> None:
        stats, decode, predicate, add = self.stats, self.decode, self.predicate, self.add
        for pkt in packets:
            stats.packets += 1
            d = decode(pkt)
            if d is None:
                continue
            if predicate is not None and not predicate(d):
                stats.filtered_out += 1
                continue
            if d.proto == IPPROTO_TCP:
                stats.tcp_packets += 1
                add(d)
