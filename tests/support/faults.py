"""Fault-survival runs: one proxy, many faults, a normal client next to them.

``FaultEnv.survive`` runs one case: warm-up, baseline, the faults next to a
normal client, every outcome checked, counters settled and compared (the
counters: ``tests.support.proxystats``; the misbehaving clients that make
the faults: ``tests.support.faultclients``). ``fault_env`` starts the proxy
with short timeouts and warms it up; the rest are helpers the fault tests
share (flow records by URL, a free port, scripted upstream bits).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.support.faultclients import Outcome, exchange, get, run_many
from tests.support.proxyproc import ProxyProcess, complete_records, start_proxy
from tests.support.proxystats import RSS_MB, Probe, Snapshot, assert_no_leak
from tests.support.upstreams import RawConnection, pattern_chunks

T = TypeVar("T")


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
