"""``tapproxy replay``: send a recording's requests again and report what changed.

    tapproxy replay FILE [--to URL] [--concurrency N] [--rate R]
                    [--report diff.md] [--json-report diff.json]
                    [--ignore-header NAME] [--ignore-json PATH]

FILE is a recording (``--save``), a flow log or a HAR. Exit status: 0 when
every response matched its recording, 1 when any differed or got no
response, 2 when the input cannot be read. The summary line goes to stderr,
and the Markdown report to stdout unless ``--report`` names a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from urllib.parse import urlsplit

from proxy.replay.client import ClientOptions, replay
from proxy.replay.diff import DEFAULT_IGNORED_HEADERS, DiffOptions
from proxy.replay.format import FormatError
from proxy.replay.match import json_path
from proxy.replay.reader import load
from proxy.replay.report import json_report, markdown, result, summary_line

_PROG = "tapproxy replay"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Send recorded requests again and compare the responses with the recorded "
        "ones (status, header fields, bodies; JSON-aware).",
    )
    p.add_argument("file", metavar="FILE", help="a recording, flow log or HAR")
    p.add_argument(
        "--to",
        metavar="URL",
        help="send to this origin (scheme://host:port) instead of the recorded one",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        metavar="N",
        help="requests in flight at once (default 1: one after another, in order)",
    )
    p.add_argument(
        "--rate", type=float, default=None, metavar="R", help="start at most R requests per second"
    )
    p.add_argument("--report", metavar="FILE", help="write the Markdown report to FILE")
    p.add_argument("--json-report", metavar="FILE", help="write the JSON report to FILE")
    p.add_argument(
        "--ignore-header",
        action="append",
        default=[],
        metavar="NAME",
        help="header field not compared; repeatable (Date and framing fields never are)",
    )
    p.add_argument(
        "--compare-all-headers", action="store_true", help="compare Date and the framing fields too"
    )
    p.add_argument(
        "--ignore-json",
        action="append",
        default=[],
        metavar="PATH",
        help="JSON body field not compared (a.b.0, $.a.b or /a/b; * for any)",
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="per request (default 30)"
    )
    p.add_argument("--insecure", action="store_true", help="do not verify https certificates")
    return p


def _options(args: argparse.Namespace) -> ClientOptions:
    ignored = frozenset() if args.compare_all_headers else DEFAULT_IGNORED_HEADERS
    ignored |= frozenset(h.lower() for h in args.ignore_header)
    diff = DiffOptions(ignored, tuple(json_path(p) for p in args.ignore_json))
    return ClientOptions(args.to, args.concurrency, args.rate, args.timeout, args.insecure, diff)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.to is not None and urlsplit(args.to).scheme not in ("http", "https"):
        print(f"{_PROG}: --to takes an http:// or https:// URL", file=sys.stderr)
        return 2
    try:
        loaded = load(args.file)
    except (OSError, FormatError) as e:
        print(f"{_PROG}: cannot read {args.file}: {e}", file=sys.stderr)
        return 2
    if loaded.cut:
        print(
            f"{_PROG}: {args.file} ends in a cut write; complete flows are replayed",
            file=sys.stderr,
        )
    outcomes = asyncio.run(replay(loaded.flows, _options(args)))
    target = args.to or "the recorded hosts"
    text = markdown(outcomes, args.file, target)
    try:
        if args.report:
            with open(args.report, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
        if args.json_report:
            with open(args.json_report, "w", encoding="utf-8") as f:
                json.dump(json_report(outcomes, args.file, target), f, indent=1)
    except OSError as e:
        print(f"{_PROG}: cannot write the report: {e}", file=sys.stderr)
        return 2
    print(f"{_PROG}: {summary_line(outcomes)}", file=sys.stderr)
    bad = any(result(o) in ("differs", "failed") for o in outcomes)
    return 1 if bad else 0
