"""Fault-survival helpers: the proxy's live counters, seen from outside, and
asyncio clients that misbehave on purpose.

``Probe`` sends SIGUSR1 to a proxy started with ``start_proxy`` and reads the
``tapproxy-stats {json}`` line it prints on stderr. ``ProxyProcess`` keeps
``proc.stderr`` open (``stop()`` reads the rest at the end), so the probe
reads it the way ``start_proxy`` does: ``os.read`` on the descriptor when a
selector says it is readable, always with a deadline. Other stderr lines are
kept in ``ProxyProcess.stderr_lines`` so nothing is lost.

A snapshot adds VmRSS from ``/proc/PID/status``. ``Probe.settle`` polls
(bounded) until the counters are back at a baseline; idle pooled upstream
connections are legitimate, so each extra one allows one more descriptor.

``FaultEnv.survive`` runs one case: warm-up, baseline, the faults next to a
normal client, every outcome checked, counters settled and compared.

The client helpers (``exchange``, ``run_many``) are plain asyncio streams: a
test states what to send, how to misbehave, and gets back what the proxy
answered and how the connection ended (``eof``, ``reset`` or ``timeout``).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.support.proxyproc import ProxyProcess, complete_records, start_proxy
from tests.support.upstreams import RawConnection, pattern_chunks

T = TypeVar("T")

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


# -- misbehaving clients ---------------------------------------------------------------------


@dataclass
class Outcome:
    """What a client got back, and how its connection ended."""

    data: bytes
    end: str  # "eof" (FIN), "reset" (RST) or "timeout" (still open)

    @property
    def status(self) -> int | None:
        if not self.data.startswith(b"HTTP/1.1 "):
            return None
        return int(self.data[9:12])

    @property
    def body(self) -> bytes:
        return self.data.partition(b"\r\n\r\n")[2]


def set_linger_zero(writer: asyncio.StreamWriter) -> None:
    """Make the next close send RST instead of FIN (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def read_to_end(
    reader: asyncio.StreamReader, timeout: float, limit: int = 1 << 26
) -> tuple[bytes, str]:
    """Everything until the peer closes (or ``timeout``): (data, how it ended)."""
    out = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while len(out) < limit:
                data = await reader.read(65536)
                if not data:
                    return bytes(out), "eof"
                out += data
    except (ConnectionResetError, BrokenPipeError):
        return bytes(out), "reset"
    except TimeoutError:
        return bytes(out), "timeout"
    return bytes(out), "limit"


async def read_until(reader: asyncio.StreamReader, n: int, timeout: float) -> bytes:
    """At least ``n`` bytes (fewer if the peer closes first)."""
    out = bytearray()
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(timeout):
            while len(out) < n:
                data = await reader.read(65536)
                if not data:
                    break
                out += data
    return bytes(out)


async def open_client(
    port: int, timeout: float = 10.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(timeout):
        return await asyncio.open_connection("127.0.0.1", port)


def close_writer(writer: asyncio.StreamWriter, reset: bool = False) -> None:
    if reset:
        with contextlib.suppress(OSError):
            set_linger_zero(writer)
    writer.close()


async def exchange(port: int, request: bytes, timeout: float = 10.0) -> Outcome:
    """Send ``request``, read until the proxy closes the connection."""
    reader, writer = await open_client(port)
    try:
        writer.write(request)
        data, end = await read_to_end(reader, timeout)
        return Outcome(data, end)
    finally:
        close_writer(writer)


def get(url: str, extra: bytes = b"") -> bytes:
    """A GET in absolute form for the proxy, asking it to close afterwards."""
    return b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n" % (url.encode(), extra)


async def run_many(n: int, concurrency: int, make: Callable[[int], Awaitable[T]]) -> list[T]:
    """``make(i)`` for i in range(n), at most ``concurrency`` at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> T:
        async with sem:
            return await make(i)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


# -- the well-behaved client next to the faults --------------------------------------------------

GOOD_SIZE = 20_000


def good_body(size: int = GOOD_SIZE) -> bytes:
    return b"".join(pattern_chunks(size))


async def good_request(port: int, upstream_url: str, size: int = GOOD_SIZE) -> None:
    """A normal request through the proxy: it must get all of a 200."""
    out = await exchange(port, get(f"{upstream_url}/bytes/{size}"), timeout=15.0)
    assert out.status == 200, out.data[:300]
    assert out.body == good_body(size), f"good client got {len(out.body)} of {size} bytes"


GoodClient = Callable[[], Awaitable[None]]


async def with_good_clients(
    good: GoodClient, faults: Awaitable[T], every: float = 0.05
) -> tuple[T, int]:
    """Run ``faults`` while a normal client keeps being served (checked, one at a
    time, until the faults are done, then once more); returns (result, how many
    good requests were served)."""
    task = asyncio.ensure_future(faults)
    served = 0
    try:
        while not task.done():
            await good()
            served += 1
            await asyncio.wait({task}, timeout=every)
        await good()
        served += 1
        return await task, served
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


# -- one proxy, many faults ------------------------------------------------------------------------

# 1 s timeouts: the cases that wait for one finish quickly (the watchdog ticks once
# a second, so a timeout fires between 1 and 2 s after the last byte).
TIMEOUTS = (
    "--client-head-timeout", "1", "--client-idle-timeout", "1",
    "--response-head-timeout", "1", "--transfer-idle-timeout", "1",
    "--tls-handshake-timeout", "1",
)  # fmt: skip
REPEAT = 1000  # repetitions of a fast case
CONCURRENCY = 50  # of them at a time
WARMUP = 200  # four rounds of CONCURRENCY: the allocator reaches the case's peak


@dataclass
class FaultEnv:
    """A proxy under test, how to watch it, and what a normal client does."""

    proxy: ProxyProcess
    probe: Probe
    good: GoodClient  # a normal request that must succeed next to the faults
    idle: Snapshot  # the proxy at rest, after a warm-up with normal traffic

    def survive(
        self,
        case: str,
        one: Callable[[int], Awaitable[Outcome]],
        check: Callable[[Outcome], None],
        n: int = REPEAT,
        concurrency: int = CONCURRENCY,
        warmup: int = WARMUP,
        flows_per_case: int = 1,
        rss_mb: float | None = RSS_MB,
        warmups: int = 1,
    ) -> list[Outcome]:
        """``n`` faults made by ``one(i)``, ``concurrency`` at a time (see ``survive_batch``)."""

        def run(k: int) -> Coroutine[Any, Any, list[Outcome]]:
            return run_many(k, min(k, concurrency), one)

        return self.survive_batch(
            case, run, check, n, warmup, n * flows_per_case, rss_mb, warmups=warmups
        )

    def survive_batch(
        self,
        case: str,
        run: Callable[[int], Coroutine[Any, Any, list[Outcome]]],
        check: Callable[[Outcome], None],
        n: int,
        warmup: int,
        flows: int,
        rss_mb: float | None = RSS_MB,
        warmups: int = 1,
    ) -> list[Outcome]:
        """Warm up with ``run(warmup)`` (``warmups`` times), take a baseline,
        ``run(n)`` faults next to a normal client, check every outcome, then wait
        (bounded) for the counters to settle and compare them with the baseline
        (``flows``: how many flow records the faults make).

        The warm-up runs the same case first so that one-time growth (the
        allocator reaching the case's peak of open connections, caches) is not
        taken for a leak; cases that run all at once warm up with full batches
        (twice where glibc's high-water mark was seen to creep on the second).
        """
        for _ in range(warmups):  # the same traffic as measured, normal client included
            warm, _ = asyncio.run(with_good_clients(self.good, run(warmup)))
            check_all(case + " (warm-up)", warm, check)
        before = self.probe.settle(self.idle)
        outcomes, served = asyncio.run(with_good_clients(self.good, run(n)))
        check_all(case, outcomes, check)
        after = self.probe.settle(before, flows=flows + served)
        assert after.flows_submitted >= before.flows_submitted + flows + served, after.brief()
        assert_no_leak(case, before, after, rss_mb=rss_mb)
        return outcomes


def check_all(case: str, outcomes: Sequence[Outcome], check: Callable[[Outcome], None]) -> None:
    """``check`` every outcome; fail with a count and the first few failures."""
    failures: list[str] = []
    for o in outcomes:
        try:
            check(o)
        except AssertionError as e:
            failures.append(f"{e} [{o.end}] {o.data[:200]!r}")
    assert not failures, f"{case}: {len(failures)}/{len(outcomes)} failed, e.g. {failures[:3]}"


@contextlib.contextmanager
def fault_env(
    upstream_url: str,
    *args: str,
    flow_log: Path | None,
    good: Callable[[ProxyProcess], GoodClient] | None = None,
) -> Iterator[FaultEnv]:
    """Start a proxy with ``TIMEOUTS`` (and ``args``), warm it up with normal
    traffic and note its resting counters. ``good(proxy)`` makes the normal
    client (default: ``good_request`` to ``upstream_url`` through the proxy)."""
    p = start_proxy(*TIMEOUTS, *args, flow_log=flow_log)
    try:
        probe = Probe(p)
        client = good(p) if good is not None else (lambda: good_request(p.port, upstream_url))
        asyncio.run(run_many(500, CONCURRENCY, lambda i: client()))
        zero = probe.snapshot()
        idle = probe.settle(zero)
        yield FaultEnv(p, probe, client, idle)
    finally:
        p.stop()


def records_for(
    p: ProxyProcess, marker: str, expect: int, timeout: float = 10.0, exact: bool = False
) -> list[Any]:
    """Flow records whose request URL contains ``marker`` (is ``marker``, with
    ``exact``), waiting (bounded) until ``expect`` of them have been written
    (the writer thread batches)."""
    assert p.flow_log is not None
    deadline = time.monotonic() + timeout
    while True:
        recs = [
            r
            for r in complete_records(p.flow_log)
            if "request" in r
            and (r["request"]["url"] == marker if exact else marker in str(r["request"]["url"]))
        ]
        if len(recs) >= expect or time.monotonic() > deadline:
            return recs
        time.sleep(0.1)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- scripted upstream bits ---------------------------------------------------------------------


def reset_upstream(conn: RawConnection) -> None:
    """Abort an upstream connection with RST (SO_LINGER 0)."""
    sock = conn.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.writer.transport.abort()


@dataclass
class Counter:
    """Counts events in the upstreams' loop thread; read from the test thread."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)

    def wait(self, n: int, *names: str, timeout: float = 15.0) -> int:
        """Wait (bounded) until the events ``names`` add up to ``n``; their sum."""
        deadline = time.monotonic() + timeout
        while sum(self[k] for k in names) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return sum(self[k] for k in names)


async def wait_closed_by_peer(conn: RawConnection, timeout: float) -> str:
    """Read (and drop) until the proxy closes this upstream connection."""
    try:
        async with asyncio.timeout(timeout):
            while await conn.reader.read(65536):
                pass
        return "eof"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except TimeoutError:
        return "open"
