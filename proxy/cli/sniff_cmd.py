"""``tapproxy sniff``: capture live traffic and write flow records as exchanges end.

    tapproxy sniff -i IFACE|any [--filter EXPR] [-o OUT.jsonl] [--pcap OUT.pcapng]
                   [--count N] [--duration S] [--snaplen N] [--promisc]
                   [--idle-timeout S] [--body-preview N] [--keylog KEYS.txt]
                   [--rules PATH]

Packets come from an ``AF_PACKET`` socket (``proxy.pcap.live``) whose filter
runs in the kernel as classic BPF, and go through the same decoding and
reassembly as ``tapproxy analyze`` (``proxy.pcap.sniff``); records have the
same schema (``analyze_cmd.record_to_dict``) and are flushed after every
batch of packets. ``--keylog`` decrypts TLS as ``analyze --keylog`` does; the
file may not exist yet and is re-read as the client appends to it. Ctrl-C
or SIGTERM stops the capture: every open connection is closed and its
record written. At the end, a summary line goes to stderr
and a ``capture-stats`` record to the output, with the kernel's
``PACKET_STATISTICS`` (packets that passed the filter, packets dropped).

Exit status: 0 on success, 1 on an I/O error, 2 for usage errors (an invalid
filter) and when the privilege to capture is missing (the message says how
to grant it).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO, TextIO

from proxy.cli.analyze_cmd import add_decode_options, record_to_dict
from proxy.flow.record import SCHEMA_VERSION
from proxy.pcap.analyze import AnalyzeOptions
from proxy.pcap.decode import LINKTYPE_ETHERNET
from proxy.pcap.filter import FilterError, parse_filter
from proxy.pcap.keylog import KeyLog
from proxy.pcap.live import DEFAULT_SNAPLEN, CaptureSetupError, LiveSource
from proxy.pcap.reader import Packet
from proxy.pcap.records import CapturedExchange
from proxy.pcap.sniff import SniffOptions, SniffStats, sniff
from proxy.pcap.tcp import ReassemblyLimits
from proxy.pcap.writer import PcapngWriter
from proxy.rules import RulesError, RuleSet, load_rules

_PROG = "tapproxy sniff"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Capture live traffic (filtered in the kernel) into flow records (JSON Lines).",
    )
    p.add_argument("-i", "--interface", required=True, metavar="IFACE", help="interface, or 'any'")
    p.add_argument(
        "--filter", metavar="EXPR", help="capture filter, compiled to BPF for the kernel"
    )
    p.add_argument(
        "-o", "--output", metavar="OUT.jsonl", help="write records here (default stdout)"
    )
    p.add_argument("--pcap", metavar="OUT.pcapng", help="also write the captured packets here")
    p.add_argument("--count", type=int, metavar="N", help="stop after N packets")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--snaplen",
        type=int,
        default=DEFAULT_SNAPLEN,
        metavar="N",
        help=f"bytes kept of each packet (default {DEFAULT_SNAPLEN})",
    )
    p.add_argument("--promisc", action="store_true", help="put the interface in promiscuous mode")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="close a connection silent for S seconds (default 120)",
    )
    add_decode_options(p, "NSS key log (SSLKEYLOGFILE) to decrypt TLS with, re-read as it grows")
    p.add_argument(
        "--rules",
        action="append",
        default=[],
        metavar="PATH",
        help="tag flows with the rules (YAML) that match them",
    )
    return p  # fmt: skip


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    try:
        node = parse_filter(args.filter) if args.filter else None
        rules = load_rules([Path(p) for p in args.rules]) if args.rules else None
    except FilterError as e:
        return _fail(f"invalid filter: {e}", 2)
    except RulesError as e:
        return _fail(f"cannot load rules:\n{e}", 2)
    if args.snaplen < 64:
        return _fail("--snaplen must be at least 64", 2)
    try:
        source = LiveSource(args.interface, node, args.snaplen, args.promisc)
    except CaptureSetupError as e:
        return _fail(str(e), 2)
    except OSError as e:
        return _fail(f"cannot capture on {args.interface}: {e.strerror or e}", 1)
    try:
        if not source.kernel_filter:
            print(f"{_PROG}: filter too complex for BPF; filtering in user space", file=sys.stderr)
        return _with_outputs(args, source, rules)
    finally:
        source.close()


def _with_outputs(args: argparse.Namespace, source: LiveSource, rules: RuleSet | None) -> int:
    try:
        out = sys.stdout if args.output in (None, "-") else open(args.output, "w")  # noqa: SIM115
        pcap = open(args.pcap, "wb") if args.pcap else None  # noqa: SIM115
    except OSError as e:
        return _fail(f"cannot write {e.filename}: {e.strerror}", 1)
    try:
        return _capture(args, source, rules, out, pcap)
    except BrokenPipeError:
        return 1
    except OSError as e:
        return _fail(f"I/O error: {e.strerror or e}", 1)
    finally:
        if out is not sys.stdout:
            out.close()
        if pcap is not None:
            pcap.close()


def _capture(
    args: argparse.Namespace, source: LiveSource, rules: RuleSet | None, out: TextIO,
    pcap: BinaryIO | None,
) -> int:  # fmt: skip
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def write(record: CapturedExchange) -> None:
        out.write(dumps(record_to_dict(record, rules)) + "\n")

    limits = ReassemblyLimits(idle_timeout=args.idle_timeout)
    preview = max(args.body_preview, 0)
    analyze = AnalyzeOptions(args.filter, preview, limits, keylog=_keylog(args.keylog))
    options = SniffOptions(args.count, args.duration, analyze)
    stopping = _StopOnSignal()
    tap = _pcap_tap(pcap, source.linktype) if pcap is not None else None
    with stopping:
        print(f"{_PROG}: capturing on {args.interface}", file=sys.stderr, flush=True)
        stats = sniff(source, write, options, stopping, tap, out.flush)
    out.write(dumps(_summary(args.interface, stats)) + "\n")
    out.flush()
    _report(stats)
    return 0


def _keylog(path: str | None) -> KeyLog | None:
    """The key log, read now if it exists; a client may create it after sniff starts."""
    if path is None:
        return None
    try:
        return KeyLog.from_file(path)
    except OSError:
        print(f"{_PROG}: key log {path} not readable yet; read when it appears", file=sys.stderr)
        return KeyLog(path=path)


def _pcap_tap(f: BinaryIO, linktype: int) -> Callable[[Packet], None]:
    """Write each packet; cooked (SLL) frames get an Ethernet header with the same EtherType."""
    writer = PcapngWriter(f, LINKTYPE_ETHERNET, application="tapproxy sniff")
    ethernet = linktype == LINKTYPE_ETHERNET

    def tap(pkt: Packet) -> None:
        frame = pkt.data if ethernet else bytes(12) + pkt.data[14:]
        writer.write_frame(pkt.ts, frame)

    return tap


def _summary(interface: str, stats: SniffStats) -> dict[str, Any]:
    """The ``capture-stats`` record: what the kernel and user space counted."""
    return {
        "schema": SCHEMA_VERSION, "kind": "capture-stats", "interface": interface,
        "start": stats.started, "end": stats.ended,
        "packets_read": stats.read,
        "kernel_packets": stats.kernel.packets, "kernel_drops": stats.kernel.drops,
        "filtered_in_user_space": stats.analyze.filtered_out,
        "records": stats.analyze.records,
    }  # fmt: skip


def _report(stats: SniffStats) -> None:
    secs = max(stats.ended - stats.started, 1e-9)
    print(
        f"{_PROG}: {stats.read:,} packets read in {secs:.1f} s, "
        f"{stats.kernel.packets:,} passed the kernel filter, "
        f"{stats.kernel.drops:,} dropped by the kernel; {stats.analyze.records:,} records",
        file=sys.stderr,
    )


def _fail(message: str, code: int) -> int:
    print(f"{_PROG}: {message}", file=sys.stderr)
    return code


class _StopOnSignal:
    """SIGINT and SIGTERM ask the capture to stop (it then flushes); calling it says whether."""

    def __init__(self) -> None:
        self.stopped = False
        self._old: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.stopped

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.stopped = True

    def __enter__(self) -> _StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


if __name__ == "__main__":  # ``python -m proxy.cli.sniff_cmd``, as the tests run it
    sys.exit(main(sys.argv[1:]))
