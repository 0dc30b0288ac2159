"""``tapproxy analyze``: decode a pcap/pcapng capture into flow records.

    tapproxy analyze CAPTURE [--filter EXPR] [-o OUT.jsonl] [--format jsonl]
                             [--progress | --no-progress] [--body-preview N]

The capture is streamed through ``proxy.pcap.analyze`` and each record is
written as one JSON object per line as soon as its exchange ends, so memory
stays flat and output starts at once. ``record_to_dict`` is the one place
that maps a ``CapturedExchange`` to JSON (documented in docs/analyze.md).

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
from typing import Any, TextIO

from proxy.pcap.analyze import AnalyzeOptions, AnalyzeStats, analyze
from proxy.pcap.filter import FilterError
from proxy.pcap.reader import CaptureError
from proxy.pcap.records import CapturedExchange, Pairs

SCHEMA_VERSION = 1
_PROG = "tapproxy analyze"


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
    p.add_argument(
        "--body-preview",
        type=int,
        default=0,
        metavar="N",
        help="include the first N bytes of each body in the records (default 0)",
    )
    return p  # fmt: skip


def _headers(pairs: Pairs) -> list[list[str]]:
    return [[k, v] for k, v in pairs]


def _preview(data: bytes, size: int) -> dict[str, Any]:
    return {"data": data.decode("latin-1"), "truncated": len(data) < size}


def record_to_dict(r: CapturedExchange) -> dict[str, Any]:
    """The JSON shape of one record (schema 1, docs/analyze.md)."""
    out: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "id": r.id,
        "kind": r.kind,
        "start": r.start,
        "end": r.end,
        "client": {"ip": r.client.ip, "port": r.client.port},
        "server": {"ip": r.server.ip, "port": r.server.port},
    }
    if r.kind == "http":
        out["request"] = None
        if r.method is not None:
            out["request"] = {
                "method": r.method, "url": r.url, "target": r.target,
                "version": f"HTTP/{r.version}",
                "headers": _headers(r.request_fields), "body_size": r.request_body_size,
            }  # fmt: skip
            if r.request_body_preview:
                out["request"]["body_preview"] = _preview(
                    r.request_body_preview, r.request_body_size
                )
        out["response"] = None
        if r.status is not None:
            out["response"] = {
                "status": r.status, "reason": r.reason, "version": f"HTTP/{r.response_version}",
                "headers": _headers(r.response_fields), "body_size": r.response_body_size,
                "start": r.response_start, "end": r.response_end,
            }  # fmt: skip
            if r.response_body_preview:
                out["response"]["body_preview"] = _preview(
                    r.response_body_preview, r.response_body_size
                )
    else:
        if r.kind == "tls":
            out["tls"] = {"sni": r.sni, "alpn": list(r.alpn)}
        out["tcp"] = {
            "bytes_client_to_server": r.bytes_client_to_server,
            "bytes_server_to_client": r.bytes_server_to_client,
            "close": r.close,
        }
    out["error"] = "; ".join(r.errors) or None
    return out


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
    options = AnalyzeOptions(filter=args.filter, preview=max(args.body_preview, 0))
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def write(record: CapturedExchange) -> None:
        out.write(dumps(record_to_dict(record)) + "\n")

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
