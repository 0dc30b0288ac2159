"""``--workers N``: N processes share the listening ports (SO_REUSEPORT).

The kernel spreads new connections over the workers' sockets, so each core
runs its own event loop with no shared state on the data path. What the
workers share comes from files: the CA (created once, before forking), the
rules (each worker loads and watches the same files) and the flow log (each
appends whole batches of lines with one O_APPEND write, which Linux keeps
whole, so records from all workers land in one file, none lost or mixed;
with --flow-log-max-size each batch is written and the log rotated under a
lock, see proxy/sinks/rotate.py). --har and --pcap are shared the same way:
the parent creates the file (the HAR document's head and tail, the pcapng
header) before forking, and each worker adds whole batches under the file's
lock (proxy/sinks/har_shared.py, proxy/sinks/shared_file.py); only
``--har -`` (stdout, which cannot be rewritten) is refused. The parent
forwards signals and waits for its workers.

On a larger machine, one worker per core scales until the load balancing of
SO_REUSEPORT or a shared upstream becomes the limit; connections stay on the
worker that accepted them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from types import FrameType

from proxy.config import ConfigError, ModeSpec
from proxy.server.app import ServerOptions
from proxy.sinks.har_shared import SharedHarSink
from proxy.sinks.pcap import PcapTap


def check_shareable(args: argparse.Namespace) -> None:
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.workers == 1:
        return
    if args.har == "-":
        raise ConfigError(
            "--har - streams one document to stdout, which several --workers cannot share; "
            "give --har a file (the workers append to it under a lock)"
        )


def prepare_shared_outputs(args: argparse.Namespace) -> None:
    """Before forking: the files every worker appends to (HAR document, pcapng header)."""
    if args.har:
        SharedHarSink.create(args.har)
    if args.pcap:
        PcapTap.create_shared(args.pcap)


def _reserve(modes: list[ModeSpec]) -> tuple[list[ModeSpec], list[socket.socket]]:
    """Fix every port before forking (port 0 means: pick one for all workers)."""
    fixed, held = [], []
    for mode in modes:
        family = socket.AF_INET6 if ":" in mode.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((mode.host, mode.port))  # bound, never listening: gets no connections
        held.append(sock)
        fixed.append(replace(mode, port=sock.getsockname()[1]))
    return fixed, held


def run_workers(
    count: int, options: ServerOptions, run_one: Callable[[ServerOptions, bool], int]
) -> int:
    """Fork ``count`` workers running ``run_one(options, announce)``; wait for them."""
    modes, held = _reserve(options.modes)
    options = replace(options, modes=modes, reuse_port=True)
    children: list[int] = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # the worker
            for sock in held:
                sock.close()
            code = 1
            try:
                code = run_one(options, index == 0)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)

    def forward(signum: int, frame: FrameType | None) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, forward)
    worst = 0
    for pid in children:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        worst = max(worst, os.waitstatus_to_exitcode(status))
    for sock in held:
        sock.close()
    return worst
