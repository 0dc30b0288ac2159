"""Outputs checked before the proxy starts: a path it cannot write is an error.

A proxy that runs but captures nothing is worse than one that refuses to
start (issue 14 item 5): ``--flow-log``, ``--har``, ``--save``, ``--pcap``
and ``--capture-bodies`` are tried here, once, and a failure becomes a
``ConfigError`` (exit 2) that names the option, the path and the reason in
words. Failures later on (a disk that fills up) are the sinks' to report.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from proxy.config import ConfigError
from proxy.oserrors import reason

__all__ = ["check_outputs"]


def check_outputs(args: argparse.Namespace) -> None:
    """Raise ``ConfigError`` for the first output path that cannot be written."""
    for option, path in (("--flow-log", args.flow_log), ("--har", args.har), ("--save", args.save)):
        if path and path != "-":
            _check_file(option, path)
    if args.pcap:
        _check_file("--pcap", args.pcap)
    if args.capture_bodies:
        _check_dir("--capture-bodies", args.capture_bodies)


def _check_file(option: str, path: str) -> None:
    """Open ``path`` for appending (creating it, truncating nothing)."""
    try:
        with open(path, "ab"):
            pass
    except OSError as e:
        raise ConfigError(
            f"{option} {path}: cannot write this file: {reason(e)}; choose a writable path"
        ) from e


def _check_dir(option: str, path: str) -> None:
    """Create ``path`` (mode 0700, bodies can hold credentials) and a file in it."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ConfigError(
            f"{option} {path}: cannot write body files in this directory: {reason(e)}; "
            "choose a writable directory"
        ) from e
