"""The dispatcher: records and sink output made on the loop in slices, written on a thread."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from proxy.flow.record import CapturedBodies, FlowRecord
from proxy.sinks.bodies import BodyFileSink
from proxy.sinks.console import ConsoleSink
from proxy.sinks.dispatch import SLICE, Dispatcher, PreparedSink
from proxy.sinks.jsonl import JsonlSink
from tests.unit.test_har_entry import make_record


@dataclass
class Flow:
    """A finished flow; records on which thread its record was built."""

    n: int
    built_on: list[str] = field(default_factory=list)

    def to_record(self) -> FlowRecord:
        self.built_on.append(threading.current_thread().name)
        return make_record(url=f"http://127.0.0.1:9000/{self.n}", id=f"{self.n:016x}")


class BadFlow:
    def to_record(self) -> FlowRecord:
        raise ValueError("broken flow")


@dataclass
class RecordSink:
    """A sink without ``prepare``: gets whole records on the writer thread."""

    batches: list[list[str]] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)
    dropped: list[int] = field(default_factory=list)
    closed: bool = False

    def write_batch(self, records: Sequence[FlowRecord]) -> None:
        self.threads.add(threading.current_thread().name)
        self.batches.append([r.request.url for r in records])

    def write_dropped(self, count: int) -> None:
        self.dropped.append(count)

    def close(self) -> None:
        self.closed = True


class FailingSink(RecordSink):
    def write_batch(self, records: Sequence[FlowRecord]) -> None:
        raise OSError("disk on fire")


def _urls(path: Path) -> list[str]:
    return [json.loads(line)["request"]["url"] for line in path.read_text().splitlines()]


def test_every_flow_reaches_every_sink_in_order(tmp_path: Path) -> None:
    jsonl, plain, failing = JsonlSink(str(tmp_path / "f.jsonl")), RecordSink(), FailingSink()
    console = io.StringIO()
    flows = [Flow(i) for i in range(3 * SLICE + 5)]

    async def run() -> None:
        d = Dispatcher([failing, jsonl, ConsoleSink(console), plain], interval=0.01)
        for f in flows[:-1]:
            d.submit(f)
        d.submit(BadFlow())  # one flow that cannot be recorded loses only itself
        d.submit(flows[-1])
        for _ in range(200):  # the timer hands the first batches over (bounded wait)
            if plain.batches:
                break
            await asyncio.sleep(0.01)
        assert plain.batches, "the timer never flushed"
        d.close()

    asyncio.run(run())
    expected = [f"http://127.0.0.1:9000/{i}" for i in range(len(flows))]
    assert _urls(tmp_path / "f.jsonl") == expected
    assert [u for b in plain.batches for u in b] == expected
    assert console.getvalue().count("\n") == len(flows)
    assert "http://127.0.0.1:9000/7 " in console.getvalue()
    assert isinstance(jsonl, PreparedSink) and not isinstance(plain, PreparedSink)
    assert plain.closed and failing.closed
    # Records are built on the loop's thread; only the writing is on the writer's.
    assert {t for f in flows for t in f.built_on} == {threading.main_thread().name}
    assert plain.threads == {"tapproxy-sinks"}


def test_a_burst_is_encoded_a_slice_per_turn_of_the_loop(tmp_path: Path) -> None:
    flows = [Flow(i) for i in range(2 * SLICE + 1)]
    seen: list[int] = []

    async def run() -> None:
        d = Dispatcher([RecordSink()], interval=10)
        for f in flows:
            d.submit(f)
        for _ in range(4):
            await asyncio.sleep(0)  # one turn of the loop
            seen.append(sum(1 for f in flows if f.built_on))
        d.close()

    asyncio.run(run())
    assert seen == [SLICE, 2 * SLICE, 2 * SLICE + 1, 2 * SLICE + 1]


def test_a_full_queue_drops_whole_batches_and_says_so(tmp_path: Path) -> None:
    entered, gate = threading.Event(), threading.Event()
    sink = RecordSink()

    class SlowSink(RecordSink):
        def write_batch(self, records: Sequence[FlowRecord]) -> None:
            entered.set()
            gate.wait(10)  # the disk is stuck

    async def run() -> Dispatcher:
        d = Dispatcher([SlowSink(), sink], max_batches=1, interval=10)
        for n in range(4):  # the thread takes one batch, the queue holds one, two drop
            d.submit(Flow(n))
            await asyncio.sleep(0)
            d.flush()
            if n == 0:
                assert entered.wait(5)  # the thread holds the first batch
        gate.set()
        d.close()
        return d

    d = asyncio.run(run())
    assert d.submitted == 4 and d.dropped == 2
    assert sink.dropped == [2]
    assert [u for b in sink.batches for u in b] == [
        "http://127.0.0.1:9000/0",
        "http://127.0.0.1:9000/1",
    ]


def test_flows_still_pending_when_the_loop_stops_are_written_at_close(tmp_path: Path) -> None:
    """The proxy closes the dispatcher after its loop has stopped: nothing may be lost."""
    sink = RecordSink()
    d = Dispatcher([sink], interval=10)
    loop = asyncio.new_event_loop()
    loop.call_soon(lambda: [d.submit(Flow(n)) for n in range(SLICE + 3)])
    loop.call_soon(loop.stop)  # runs before the pump those submits scheduled
    loop.run_forever()
    loop.close()
    d.close()
    assert len([u for b in sink.batches for u in b]) == SLICE + 3 and sink.closed


def test_body_files_are_prepared_on_the_loop_and_records_stay_there(tmp_path: Path) -> None:
    """The body-file sink (on whenever rules are loaded) keeps only files to write:
    no record crosses to the writer thread, and flows without bodies cost nothing there."""
    out = tmp_path / "bodies"

    @dataclass
    class WithBody(Flow):
        def to_record(self) -> FlowRecord:
            record = super().to_record()
            if self.n % 3:
                return record
            bodies = CapturedBodies(str(out), b"up %d" % self.n, None, False, False)
            return replace(record, bodies=bodies)

    sink = BodyFileSink()
    assert isinstance(sink, PreparedSink)
    flows = [WithBody(i) for i in range(10)]

    async def run() -> list[list[object]]:
        d = Dispatcher([sink], interval=0.01)
        for flow in flows:
            d.submit(flow)
        await asyncio.sleep(0)
        ready = [list(items) for items in d._ready]
        d.close()
        return ready

    ready = asyncio.run(run())
    assert all(not isinstance(item, FlowRecord) for items in ready for item in items)
    written = sorted(p.name for p in out.iterdir())
    assert written == [f"{n:016x}.request.body" for n in (0, 3, 6, 9)]
    assert (out / f"{9:016x}.request.body").read_bytes() == b"up 9"
    assert oct(out.stat().st_mode & 0o777) == "0o700"
    assert sink.written == 4 and sink.errors == 0


def test_the_backlog_stays_bounded_when_a_turn_finishes_more_than_a_slice() -> None:
    """HTTP/2 ends hundreds of flows per turn: the dispatcher catches up instead
    of holding a growing backlog (each waiting flow holds its exchange)."""
    backlog: list[int] = []

    async def run() -> None:
        d = Dispatcher([RecordSink()], interval=10)
        for turn in range(200):
            for n in range(5 * SLICE):  # five slices' worth finish in each turn
                d.submit(Flow(turn * 1000 + n))
            await asyncio.sleep(0)
            backlog.append(len(d._pending))
        d.close()

    asyncio.run(run())
    assert max(backlog) <= 5 * 5 * SLICE, max(backlog)  # a few turns' worth, not growing
    assert backlog[-1] <= backlog[50]
