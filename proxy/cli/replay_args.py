"""The proxy command's options for recording, replay and addons (docs/replay.md, docs/addons.md).

Names follow mitmproxy's where it has one (``--server-replay``,
``--server-replay-ignore-params``, ``--server-replay-ignore-host``,
``--server-replay-reuse``, ``--server-replay-extra``, ``-s``).
"""

from __future__ import annotations

import argparse


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the speed cannot be negative (0: no delays)")
    return value


def add_replay_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("record, replay and addons (docs/replay.md, docs/addons.md)")
    g.add_argument(
        "--save",
        metavar="FILE",
        help="append every flow, bodies included (up to --capture-max-body), to the recording FILE",
    )
    g.add_argument(
        "-r",
        "--read",
        metavar="FILE",
        help="print the flows of a recording, flow log or HAR, then exit",
    )
    g.add_argument(
        "--server-replay",
        action="append",
        default=[],
        metavar="FILE",
        help="answer requests from this recording (or HAR, flow log); repeatable",
    )
    g.add_argument(
        "--server-replay-ignore-params",
        action="append",
        default=[],
        metavar="NAME",
        help="query parameter left out of matching; repeatable",
    )
    g.add_argument(
        "--server-replay-use-headers",
        action="append",
        default=None,
        metavar="NAME",
        help="header field that must match (default: Content-Type); repeatable",
    )
    g.add_argument(
        "--server-replay-ignore-headers",
        action="append",
        default=[],
        metavar="NAME",
        help="header field left out of matching; repeatable",
    )
    g.add_argument(
        "--server-replay-ignore-json",
        action="append",
        default=[],
        metavar="PATH",
        help="JSON body field left out of matching (a.b.0, $.a.b or /a/b; * for any); repeatable",
    )
    g.add_argument(
        "--server-replay-ignore-host",
        action="store_true",
        help="match requests whatever their scheme, host and port",
    )
    g.add_argument(
        "--server-replay-reuse",
        action="store_true",
        help="keep answering with the last recorded response once all were served",
    )
    g.add_argument(
        "--server-replay-extra",
        choices=["404", "forward"],
        default="404",
        help="unmatched requests: 404 saying what was closest (default), or forward "
        "them to the network",
    )
    g.add_argument(
        "--server-replay-speed",
        type=_speed,
        default=1.0,
        metavar="X",
        help="divide the recorded delays by X (default 1: as recorded; 0: none)",
    )
    g.add_argument(
        "-s",
        "--scripts",
        action="append",
        default=[],
        metavar="FILE.py",
        help="a Python addon, reloaded when it changes; repeatable",
    )
