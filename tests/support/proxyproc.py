"""Run tapproxy as a user does: a subprocess, on ports the OS picks.

The proxy prints "... listening at HOST:PORT" on stderr for each mode; we
read those lines (bounded wait) instead of guessing free ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_LISTEN = re.compile(rb"listening at (\S+):(\d+)")


@dataclass
class ProxyProcess:
    proc: subprocess.Popen[bytes]
    addresses: list[tuple[str, int]]
    flow_log: Path | None
    stderr_lines: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def records(self, expect: int = 0, timeout: float = 10.0) -> list[dict[str, object]]:
        """Flow-log records, waiting (bounded) until at least ``expect`` are there."""
        assert self.flow_log is not None
        deadline = time.monotonic() + timeout
        while True:
            recs = complete_records(self.flow_log)
            if len(recs) >= expect or time.monotonic() > deadline:
                return recs
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        rest = self.proc.stderr.read() if self.proc.stderr else b""
        if rest:
            self.stderr_lines.extend(rest.splitlines())
        return self.proc.returncode

    def stdout_text(self) -> str:
        """The console lines, once the proxy stopped (stdout is read to its end)."""
        assert self.proc.returncode is not None, "stop() the proxy first"
        out = self.proc.stdout.read() if self.proc.stdout else b""
        return out.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        return b"\n".join(self.stderr_lines).decode("utf-8", "replace")


def start_proxy(
    *args: str,
    flow_log: Path | None = None,
    modes: int = 1,
    timeout: float = 15.0,
    quiet: bool = True,
) -> ProxyProcess:
    """Start the proxy; ``quiet=False`` keeps its console lines (on stdout,
    read with ``ProxyProcess.stdout_text`` once it stopped)."""
    cmd = [sys.executable, "-m", "proxy", *(["-q"] if quiet else []), "-p", "0", *args]
    if flow_log is not None:
        cmd += ["--flow-log", str(flow_log)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    lines: list[bytes] = []
    addresses: list[tuple[str, int]] = []
    buf = b""
    deadline = time.monotonic() + timeout
    while len(addresses) < modes:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            out = buf + (proc.stderr.read() or b"")
            raise RuntimeError(f"proxy did not start: {out.decode(errors='replace')}")
        if not sel.select(left):
            continue
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            lines.append(line)
            m = _LISTEN.search(line)
            if m:
                addresses.append((m.group(1).decode(), int(m.group(2))))
    sel.close()
    return ProxyProcess(proc, addresses, flow_log, lines)


@contextlib.contextmanager
def running_proxy(
    *args: str, flow_log: Path | None = None, modes: int = 1
) -> Iterator[ProxyProcess]:
    p = start_proxy(*args, flow_log=flow_log, modes=modes)
    try:
        yield p
    finally:
        p.stop()


def complete_records(path: Path) -> list[Any]:
    """The flow log's records, leaving out a last line the writer thread is still writing."""
    text = path.read_text("utf-8") if path.exists() else ""
    lines = text.split("\n")[:-1]  # after the last newline: incomplete (or empty)
    return [json.loads(line) for line in lines if line.strip()]


def our_ca(p: ProxyProcess) -> str:
    """The CA certificate of a proxy started with ``--certs DIR`` (to trust it)."""
    args = p.proc.args
    assert isinstance(args, list)
    return str(Path(args[args.index("--certs") + 1]) / "tapproxy-ca.pem")


def record_for(p: ProxyProcess, pred: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    """The last record satisfying ``pred``, waiting (bounded) until it is written."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in p.records() if pred(r)]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching record in {p.records()}")
        time.sleep(0.05)
