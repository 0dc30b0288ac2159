"""The proxy's live counters, seen from outside: how fault tests tell a leak.

``Probe`` sends SIGUSR1 to a proxy started with ``start_proxy`` and reads the
``tapproxy-stats {json}`` line it prints on stderr. ``ProxyProcess`` keeps
``proc.stderr`` open (``stop()`` reads the rest at the end), so the probe
reads it the way ``start_proxy`` does: ``os.read`` on the descriptor when a
selector says it is readable, always with a deadline. Other stderr lines are
kept in ``ProxyProcess.stderr_lines`` so nothing is lost.

A snapshot adds VmRSS from ``/proc/PID/status``. ``Probe.settle`` polls
(bounded) until the counters are back at a baseline; idle pooled upstream
connections are legitimate, so each extra one allows one more descriptor.
``assert_no_leak`` compares a settled snapshot with its baseline.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import time
from dataclasses import dataclass, field

from tests.support.proxyproc import ProxyProcess

STATS_PREFIX = b"tapproxy-stats "
RSS_MB = 4.0  # "a few MB": what 1,000 repetitions may add to the proxy's RSS


# -- the proxy's counters ------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    connections: int
    pooled_upstreams: int
    tasks: int
    fds: int
    flows_submitted: int
    flows_dropped: int
    rss_kb: int

    def brief(self) -> str:
        return (
            f"conns={self.connections} pooled={self.pooled_upstreams} tasks={self.tasks} "
            f"fds={self.fds} flows={self.flows_submitted} dropped={self.flows_dropped} "
            f"rss={self.rss_kb / 1024:.1f}MB"
        )


@dataclass
class Leak:
    """Baseline and settled snapshots of one fault case (for the report)."""

    case: str
    before: Snapshot
    after: Snapshot

    def line(self) -> str:
        growth = (self.after.rss_kb - self.before.rss_kb) / 1024
        return (
            f"{self.case}: before [{self.before.brief()}] after [{self.after.brief()}] "
            f"rss {growth:+.2f}MB"
        )


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def catches_signal(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (SigCgt in /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


@dataclass
class Probe:
    proxy: ProxyProcess
    _buf: bytes = b""
    _ready: list[dict[str, int]] = field(default_factory=list)

    def stats(self, timeout: float = 5.0) -> dict[str, int]:
        """Ask for one stats line (SIGUSR1) and wait, bounded, until it arrives."""
        proc = self.proxy.proc
        assert proc.stderr is not None
        assert proc.poll() is None, f"proxy exited: {self.proxy.stderr_text}"
        deadline = time.monotonic() + timeout
        # The proxy prints "listening at" before it installs its SIGUSR1 handler;
        # until it has, the signal's default action would kill it.
        while not catches_signal(proc.pid, signal.SIGUSR1):
            if time.monotonic() > deadline:
                raise AssertionError("the proxy never installed a SIGUSR1 handler")
            time.sleep(0.01)
        self._ready.clear()
        proc.send_signal(signal.SIGUSR1)
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stderr, selectors.EVENT_READ)
            while not self._ready:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no tapproxy-stats line within {timeout:.1f}s")
                if not sel.select(left):
                    continue
                chunk = os.read(proc.stderr.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"proxy closed stderr: {self.proxy.stderr_text}")
                self._take(chunk)
        return self._ready[-1]

    def _take(self, chunk: bytes) -> None:
        self._buf += chunk
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            at = line.find(STATS_PREFIX)
            if at >= 0:
                self._ready.append(json.loads(line[at + len(STATS_PREFIX) :]))
            else:
                self.proxy.stderr_lines.append(line)

    def snapshot(self) -> Snapshot:
        s = self.stats()
        return Snapshot(
            connections=s["connections"],
            pooled_upstreams=s["pooled_upstreams"],
            tasks=s["tasks"],
            fds=s["fds"],
            flows_submitted=s["flows_submitted"],
            flows_dropped=s["flows_dropped"],
            rss_kb=rss_kb(self.proxy.proc.pid),
        )

    def settle(
        self,
        baseline: Snapshot,
        timeout: float = 15.0,
        fd_slack: int = 2,
        task_slack: int = 1,
        flows: int | None = None,
    ) -> Snapshot:
        """Poll until connections, tasks and fds (see ``fds_allowed``) are back
        at ``baseline`` (and, if given, ``flows`` more flows were submitted).

        Returns the last snapshot either way; ``assert_no_leak`` says what is off.
        """
        deadline = time.monotonic() + timeout
        while True:
            snap = self.snapshot()
            if _settled(baseline, snap, fd_slack, task_slack, flows) or time.monotonic() > deadline:
                return snap
            time.sleep(0.1)


def fds_allowed(base: Snapshot, snap: Snapshot, slack: int) -> int:
    """The baseline's descriptors, plus one per extra idle pooled upstream
    connection (legitimate; the pool may also list connections the server has
    closed until the next sweep, so the pool size alone does not count fds)."""
    return base.fds + max(0, snap.pooled_upstreams - base.pooled_upstreams) + slack


def _settled(
    base: Snapshot, snap: Snapshot, fd_slack: int, task_slack: int, flows: int | None
) -> bool:
    return (
        snap.connections <= base.connections
        and snap.tasks <= base.tasks + task_slack
        and snap.fds <= fds_allowed(base, snap, fd_slack)
        and (flows is None or snap.flows_submitted >= base.flows_submitted + flows)
    )


def assert_no_leak(
    case: str,
    before: Snapshot,
    after: Snapshot,
    rss_mb: float | None = RSS_MB,
    fd_slack: int = 2,
    task_slack: int = 1,
) -> None:
    """Counters back at the baseline and RSS grown by at most ``rss_mb`` (None:
    not checked here, for a case whose RSS a separate test judges)."""
    leak = Leak(case, before, after)
    print(leak.line())  # the measurements, for the record: see them with -s
    assert after.connections <= before.connections, leak.line()
    assert after.tasks <= before.tasks + task_slack, leak.line()
    assert after.fds <= fds_allowed(before, after, fd_slack), leak.line()
    assert after.flows_dropped == before.flows_dropped, leak.line()
    if rss_mb is not None:
        assert after.rss_kb - before.rss_kb <= rss_mb * 1024, leak.line()
