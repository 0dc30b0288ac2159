"""``tapproxy convert``: between flow logs, recordings and HAR.

    tapproxy convert FLOWS.jsonl --to har [-o OUT.har]
    tapproxy convert IN --to recording|har|flowlog [-o OUT] [--bodies DIR]

IN is a flow log, a recording (``--save``) or a HAR (any tool's); which is
told from its content. A flow log to HAR goes as below; every other pair
goes through recorded flows (``proxy.replay``): a HAR or flow log becomes a
recording with the bodies it holds, a recording becomes a HAR with whole
bodies or a flow log whose longer bodies go to files in ``--bodies`` (by
default ``OUT.bodies``).

The output is the HAR the live ``--har`` sink would have written for the
same records: both go through ``HarLog`` and ``har_entry``
(proxy/sinks/har.py, proxy/sinks/har_entry.py). Non-HTTP flows (CONNECT
tunnels, TCP relays) are skipped and counted in ``log._tapproxy.skipped``;
``dropped`` records are skipped, their counts summed into
``log._tapproxy.dropped`` and reported on stderr.

Flow logs of schema 1 and 2 are read; any other schema stops the conversion with
exit status 2 before the output file is replaced (``-o`` is written to a
temporary file and renamed at the end). Lines that are not JSON (a log cut
short by a crash) or not a well-formed record are skipped with a warning and
exit status 1; the HAR is still complete for the rest. ``-`` means stdin for the input, stdout for
``-o`` (the default).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from proxy.flow.record import SCHEMA_VERSION
from proxy.replay import convert
from proxy.replay.format import FormatError
from proxy.replay.reader import load
from proxy.sinks.har import HarLog
from proxy.sinks.har_bodies import BodySource, FileBodies
from proxy.words import plural

# Schema 2 only added fields (request.forwarded, response.upstream and
# .source), so a schema 1 log converts as it is.
READABLE_SCHEMAS = frozenset(range(1, SCHEMA_VERSION + 1))

_PROG = "tapproxy convert"
_MAX_WARNINGS = 5


class ConvertError(Exception):
    """The input cannot be converted (wrong schema, not a flow log)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Convert between flow logs (schema 1 or 2), recordings and HAR files.",
    )
    p.add_argument(
        "flow_log", metavar="IN", help="flow log, recording or HAR ('-' = a flow log on stdin)"
    )
    p.add_argument(
        "--to",
        choices=["har", "recording", "flowlog"],
        default="har",
        help="output format (default har)",
    )
    p.add_argument("--bodies", metavar="DIR", help="--to flowlog: where body files go")
    p.add_argument(
        "-o", "--output", metavar="FILE", default="-", help="where to write ('-' = stdout, default)"
    )
    return p


class Stats:
    """What was left out of the conversion, reported on stderr at the end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dropped_records = 0
        self.bad_lines = 0

    def warn(self, lineno: int, message: str) -> None:
        self.bad_lines += 1
        if self.bad_lines <= _MAX_WARNINGS:
            print(f"{_PROG}: {self.name}:{lineno}: skipped, {message}", file=sys.stderr)


def read_records(lines: IO[str], stats: Stats) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, flow record) from JSON Lines; refuses other schemas."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            stats.warn(lineno, f"not JSON ({e})")
            continue
        where = f"{stats.name}:{lineno}"
        if not isinstance(rec, dict) or "schema" not in rec:
            raise ConvertError(f"{where}: not a tapproxy flow record (no 'schema')")
        if rec["schema"] not in READABLE_SCHEMAS:
            raise ConvertError(
                f"{where}: flow log schema {rec['schema']!r} is not supported "
                f"(this tapproxy reads schemas 1 to {SCHEMA_VERSION})"
            )
        yield lineno, rec


def write_har(
    records: Iterator[tuple[int, dict[str, Any]]],
    out: IO[bytes],
    stats: Stats,
    bodies: BodySource | None = None,
) -> HarLog:
    """Stream a HAR document: head, entries in input order, tail with the counts.

    ``bodies`` reads the body files a record names (``--capture-bodies``).
    """
    log = HarLog()
    out.write(log.head())
    for lineno, rec in records:
        if rec.get("kind") == "dropped":
            count = rec.get("count")
            if not isinstance(count, int):
                stats.warn(lineno, f"'dropped' record without a count ({count!r})")
                continue
            stats.dropped_records += 1
            log.dropped += count
            continue
        invalid = log.invalid
        out.write(log.add([rec], bodies))
        if log.invalid > invalid:
            stats.warn(lineno, f"malformed flow record ({log.last_error})")
    out.write(log.tail())
    return log


@contextlib.contextmanager
def _output(path: str) -> Iterator[IO[bytes]]:
    """stdout, or a temporary file beside ``path`` renamed over it on success."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tapproxy-convert-", dir=directory)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def _input(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdin
        return
    with open(path, encoding="utf-8") as f:
        yield f


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.flow_log != "-" and not (args.to == "har" and is_flow_log(args.flow_log)):
        return convert_flows(args)
    stats = Stats("<stdin>" if args.flow_log == "-" else args.flow_log)
    try:
        with _input(args.flow_log) as lines, _output(args.output) as out:
            log_dir = None if args.flow_log == "-" else Path(args.flow_log).parent
            log = write_har(read_records(lines, stats), out, stats, FileBodies(log_dir))
    except ConvertError as e:
        print(f"{_PROG}: {e}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as e:
        print(f"{_PROG}: {e}", file=sys.stderr)
        return 1
    if stats.dropped_records:
        print(
            f"{_PROG}: skipped {plural(stats.dropped_records, repr('dropped') + ' record')} "
            f"({plural(log.dropped, 'flow')} lost by the proxy before reaching the log)",
            file=sys.stderr,
        )
    skipped = sum(log.skipped.values())
    if skipped:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(log.skipped.items()))
        print(f"{_PROG}: skipped {plural(skipped, 'non-HTTP flow')} ({kinds})", file=sys.stderr)
    if stats.bad_lines:
        print(f"{_PROG}: skipped {stats.bad_lines} unreadable lines", file=sys.stderr)
        return 1
    return 0


def is_flow_log(path: str) -> bool:
    """Whether ``path`` starts with a flow record (else: a recording or a HAR)."""
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
    except OSError:
        return True  # let the flow-log path report it
    try:
        rec = json.loads(first)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(rec, dict) and "schema" in rec


def convert_flows(args: argparse.Namespace) -> int:
    """Any input through recorded flows (``proxy.replay``)."""
    try:
        loaded = load(args.flow_log)
    except (OSError, FormatError) as e:
        print(f"{_PROG}: cannot read {args.flow_log}: {e}", file=sys.stderr)
        return 2
    for problem in loaded.problems:
        print(f"{_PROG}: {args.flow_log}: skipped {problem}", file=sys.stderr)
    if loaded.cut:
        print(f"{_PROG}: {args.flow_log} ends in a cut write; complete flows converted",
              file=sys.stderr)  # fmt: skip
    try:
        with _output(args.output) as out:
            if args.to == "recording":
                convert.write_recording(loaded.flows, out)
            elif args.to == "har":
                convert.write_har(loaded.flows, out)
            else:
                bodies = args.bodies or (
                    "bodies" if args.output == "-" else args.output + ".bodies"
                )
                if convert.write_flow_log(loaded.flows, out, bodies):
                    raise OSError(f"cannot write body files in {bodies}")
    except OSError as e:
        print(f"{_PROG}: {e}", file=sys.stderr)
        return 1
    print(f"{_PROG}: {plural(len(loaded.flows), 'flow')} from a {loaded.kind}", file=sys.stderr)
    return 1 if loaded.skipped else 0
