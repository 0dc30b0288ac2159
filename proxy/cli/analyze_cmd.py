"""``tapproxy analyze``: decode a pcap/pcapng capture into flow records.

    tapproxy analyze CAPTURE [--filter EXPR] [-o OUT.jsonl] [--format jsonl]
                             [--progress | --no-progress] [--body-preview N]
                             [--keylog KEYS.txt]

The capture is streamed through ``proxy.pcap.analyze`` and each record is
written as one JSON object per line as soon as its exchange ends, so memory
stays flat and output starts at once. Records have the live proxy's flow-log
schema (``proxy.pcap.flowrecord``; docs/flow-log.md), with mode "capture";
``--rules`` tags each flow with the rules that match it. ``--keylog`` reads
an NSS key log (``SSLKEYLOGFILE``) and decrypts the TLS connections whose
secrets it holds (``proxy.pcap.tlsstream``).

A progress line (percent of file, packets/s, MB/s) goes to stderr when stderr
is a terminal or with ``--progress``. Exit status: 0 on success, 1 when the
capture cannot be opened or is corrupt (the message gives the byte offset,
and every record decoded before that point has been written), 2 for usage
errors such as an invalid filter.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from proxy.flow.jsonview import record_to_json
from proxy.grpc.protoload import load as load_protos
from proxy.grpc.schema import SchemaError
from proxy.grpc.settings import GrpcSettings
from proxy.pcap.analyze import AnalyzeOptions, AnalyzeStats, analyze
from proxy.pcap.filter import FilterError
from proxy.pcap.flowrecord import message_records, to_flow_record
from proxy.pcap.keylog import KeyLog
from proxy.pcap.reader import CaptureError
from proxy.pcap.records import CapturedExchange

if TYPE_CHECKING:  # the rules engine is imported only with --rules (~0.3 s at start-up)
    from proxy.rules import RuleSet

_PROG = "tapproxy analyze"


def add_decode_options(p: argparse.ArgumentParser, keylog_help: str) -> None:
    """The options analyze and sniff share: body previews and the key log."""
    p.add_argument(
        "--body-preview",
        type=int,
        default=0,
        metavar="N",
        help="include the first N bytes of each body in the records (default 0)",
    )
    p.add_argument("--keylog", metavar="KEYS.txt", help=keylog_help)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Decode a pcap or pcapng capture into HTTP/TLS/TCP flow records (JSON Lines).",
    )
    p.add_argument("capture", metavar="CAPTURE", help="a libpcap or pcapng file")
    p.add_argument(
        "--filter",
        metavar="EXPR",
        help="tcpdump-style capture filter, e.g. 'tcp port 80 and host 10.0.0.1'",
    )
    p.add_argument(
        "-o", "--output", metavar="OUT.jsonl", help="write records here (default stdout)"
    )
    p.add_argument("--format", choices=["jsonl"], default="jsonl", help="output format")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress line on stderr (default: only when stderr is a terminal)",
    )
    add_decode_options(p, "NSS key log (SSLKEYLOGFILE) to decrypt TLS 1.2/1.3 connections with")
    p.add_argument(
        "--rules",
        action="append",
        default=[],
        metavar="PATH",
        help="tag flows with the rules (YAML, as for the proxy) that match them",
    )
    p.add_argument(
        "--proto-path",
        action="append",
        default=[],
        metavar="PATH",
        help="decode gRPC messages with these schemas (.proto, a folder, a descriptor set)",
    )
    return p  # fmt: skip


def record_to_dict(r: CapturedExchange, rules: RuleSet | None = None) -> dict[str, Any]:
    """The JSON of one record: the live proxy's flow-log schema (docs/flow-log.md)."""
    return record_to_json(to_flow_record(r, rules))


class _Progress:
    """A self-overwriting progress line, at most twice a second."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.t0 = time.monotonic()
        self.last = 0.0

    def __call__(self, offset: int, packets: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        self._line(offset, packets, now, "\r")

    def _line(self, offset: int, packets: int, now: float, end: str) -> None:
        secs = max(now - self.t0, 1e-9)
        pct = 100.0 * offset / self.total
        line = (
            f"{pct:5.1f}%  {packets:,} packets  {packets / secs:,.0f} packets/s  "
            f"{offset / secs / 1e6:.1f} MB/s"
        )
        self.stream.write(f"{end}{line}")
        self.stream.flush()

    def done(self, stats: AnalyzeStats) -> None:
        self._line(self.total, stats.packets, time.monotonic(), "\r")
        secs = time.monotonic() - self.t0
        self.stream.write(f"\n{stats.records:,} records in {secs:.1f} s\n")


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed
        return e.code if isinstance(e.code, int) else 2
    try:
        capture = open(args.capture, "rb")  # noqa: SIM115 - closed in _run
    except OSError as e:
        print(f"{_PROG}: cannot open {args.capture}: {e.strerror}", file=sys.stderr)
        return 1
    with capture:
        try:
            out = sys.stdout if args.output in (None, "-") else open(args.output, "w")  # noqa: SIM115
        except OSError as e:
            print(f"{_PROG}: cannot write {args.output}: {e.strerror}", file=sys.stderr)
            return 1
        try:
            return _run(args, capture, out)
        finally:
            if out is not sys.stdout:
                out.close()


def _run(args: argparse.Namespace, capture: Any, out: TextIO) -> int:
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = _Progress(os.fstat(capture.fileno()).st_size, sys.stderr) if show else None
    try:
        keylog = KeyLog.from_file(args.keylog) if args.keylog else None
    except OSError as e:
        print(f"{_PROG}: cannot read key log {args.keylog}: {e.strerror or e}", file=sys.stderr)
        return 1
    try:
        registry = load_protos(list(args.proto_path)) if args.proto_path else None
    except (SchemaError, OSError) as e:
        print(f"{_PROG}: {e}", file=sys.stderr)
        return 2
    options = AnalyzeOptions(
        filter=args.filter,
        preview=max(args.body_preview, 0),
        keylog=keylog,
        grpc=GrpcSettings(registry=registry),
    )
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    rules: RuleSet | None = None
    if args.rules:
        from proxy.rules import RulesError, load_rules

        try:
            rules = load_rules([Path(p) for p in args.rules])
        except RulesError as e:
            print(f"{_PROG}: cannot load rules:\n{e}", file=sys.stderr)
            return 2

    def write(record: CapturedExchange) -> None:
        for message in message_records(record):  # a gRPC call's messages, then the call
            out.write(dumps(record_to_json(message)) + "\n")
        out.write(dumps(record_to_dict(record, rules)) + "\n")

    try:
        stats = analyze(capture, write, options, progress)
    except FilterError as e:
        print(f"{_PROG}: invalid filter: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 1
    except OSError as e:
        print(f"{_PROG}: I/O error: {e.strerror or e}", file=sys.stderr)
        return 1
    except CaptureError as e:
        out.flush()
        if progress is not None:
            sys.stderr.write("\n")
        print(f"{_PROG}: {args.capture}: {e.message} at byte offset {e.offset}", file=sys.stderr)
        return 1
    out.flush()
    if progress is not None:
        progress.done(stats)
    return 0
