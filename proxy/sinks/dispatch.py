"""Getting finished flows to their sinks without slowing the data path.

``submit`` only appends to a list. The records are built, and what the
prepared sinks will write made (lines, body files), on the event loop, a
slice of ``SLICE`` flows per turn of the loop (more when more wait,
``CATCH_UP``); only the writing is left to a
writer thread. A timer hands what
is ready to that thread through a bounded queue. If the queue is full (the
disk cannot keep up), the batch is dropped, counted, and a ``dropped`` record
says how many were lost. At shutdown ``close`` drains everything.

Why encode on the loop: the thread cannot run Python in parallel with the
loop (the GIL), so encoding there saved no CPU, and it held the GIL in long
stretches that the loop's thread had to win back, one OS context switch at a
time: scenario a's p99 latency was 11 ms with the flow log and 3.5 ms
without (docs/performance.md). In slices on the loop, the same work never
stalls the loop for more than about a millisecond, and the thread only
blocks in ``write``, which releases the GIL. Records handed to the thread
(for the sinks that still take them, HAR) live until the thread is done
with them and are freed there; those that do not cross are freed at once on
the loop, still in the cache: the body-file sink, which took every record
to find the few with bodies, cost ~8 µs per request in scenario a until it
prepared its files on the loop too.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from proxy.flow.record import FlowRecord
from proxy.words import plural

if TYPE_CHECKING:
    from proxy.flow.record import FlowSource

#: Flows turned into records and lines per turn of the event loop (~15 µs each)...
SLICE = 64
#: ...or more when more wait: a ``1/CATCH_UP`` share of those waiting. One turn
#: of the loop can finish hundreds of flows (HTTP/2: 100 streams on each of
#: several connections); a fixed slice then fell behind for as long as the load
#: lasted, every waiting flow holding its exchange (~2.6 KB: scenario h's RSS
#: grew 52 MB per 20,000 requests back to back, flat once the load paused).
#: A share keeps the backlog within a few turns' worth of flows.
CATCH_UP = 4
#: Flows ready for the writer thread that trigger a hand-over before the timer.
FLUSH_AT = 512


class Sink(Protocol):
    """Something that writes records; ``write_batch`` runs on the writer thread."""

    def write_batch(self, records: Sequence[FlowRecord]) -> None: ...
    def write_dropped(self, count: int) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class PreparedSink(Sink, Protocol):
    """A sink whose records become what it writes on the event loop (``prepare``,
    pure: lines, files to write); the writer thread only writes them
    (``write_prepared``), and records never cross to it."""

    def prepare(self, records: Sequence[FlowRecord]) -> list[Any]: ...
    def write_prepared(self, items: list[Any]) -> None: ...


@runtime_checkable
class LossCounting(Protocol):
    """A sink that counts what it could not write (disk full, path gone).

    ``label`` names the output in stats keys (``lost_<label>``); ``unit`` is
    what ``lost`` counts, singular and plural, for the exit summary.
    """

    label: str
    unit: tuple[str, str]
    lost: int


# What one hand-over carries: per sink, its prepared items or its records.
_Batch = tuple[list[list[Any]], int]


class Dispatcher:
    def __init__(
        self, sinks: Sequence[Sink], max_batches: int = 1024, interval: float = 0.05
    ) -> None:
        self.sinks = list(sinks)
        # isinstance against a runtime-checkable Protocol inspects every
        # member (~10 µs); the answer cannot change, so ask once.
        self._prepared = [isinstance(sink, PreparedSink) for sink in self.sinks]
        self.interval = interval
        self.submitted = 0
        self.dropped = 0
        self._pending: list[FlowSource] = []
        self._pumping = False
        self._ready: list[list[Any]] = [[] for _ in self.sinks]
        self._ready_flows = 0
        self._queue: queue.Queue[_Batch | None] = queue.Queue(max_batches)
        self._thread = threading.Thread(target=self._run, name="tapproxy-sinks", daemon=True)
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dropped_unreported = 0
        if self.sinks:
            self._thread.start()

    def losses(self) -> dict[str, int]:
        """``lost_<label>``: what each output could not write so far (stats, exit)."""
        return {f"lost_{s.label}": s.lost for s in self.sinks if isinstance(s, LossCounting)}

    def loss_summary(self) -> list[str]:
        """What was lost, in words ("3 flow-log records"), for the exit summary."""
        return [
            plural(s.lost, *s.unit) for s in self.sinks if isinstance(s, LossCounting) and s.lost
        ]

    def submit(self, flow: FlowSource) -> None:
        """Queue a finished flow; its record is built on a later turn of the loop."""
        if not self.sinks:
            return
        self.submitted += 1
        self._pending.append(flow)
        if not self._pumping:
            self._pumping = True
            self._event_loop().call_soon(self._pump)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _pump(self) -> None:
        pending = self._pending
        take = max(SLICE, len(pending) // CATCH_UP)
        flows = pending[:take]
        del pending[:take]
        self._prepare(flows)
        if self._pending:
            self._event_loop().call_soon(self._pump)
        else:
            self._pumping = False

    def _prepare(self, flows: list[FlowSource], *, on_loop: bool = True) -> None:
        if not flows:
            return
        records = self._records(flows)
        for sink, prepared, ready in zip(self.sinks, self._prepared, self._ready, strict=True):
            if not prepared:
                ready.extend(records)
                continue
            try:
                ready.extend(cast(PreparedSink, sink).prepare(records))
            except Exception as e:
                _sink_failed(sink, e)
        self._ready_flows += len(flows)
        if self._ready_flows >= FLUSH_AT:
            self.flush()
        elif self._timer is None and on_loop:
            self._timer = self._event_loop().call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Hand what is ready to the writer thread."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._ready_flows:
            return
        batch: _Batch = (self._ready, self._ready_flows)
        self._ready = [[] for _ in self.sinks]
        self._ready_flows = 0
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self.dropped += batch[1]
            self._dropped_unreported += batch[1]

    def close(self, timeout: float = 10.0) -> None:
        """Encode and flush what is pending, and wait for the writer thread to finish.

        Called after the event loop has stopped, so nothing here may use it.
        """
        pending, self._pending = self._pending, []
        self._prepare(pending, on_loop=False)
        self.flush()
        if not self.sinks:
            return
        self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if self._dropped_unreported:
                count, self._dropped_unreported = self._dropped_unreported, 0
                self._each(Sink.write_dropped, count)
            if batch is None:
                self._each(Sink.close)
                return
            for sink, prepared, items in zip(self.sinks, self._prepared, batch[0], strict=True):
                try:
                    if prepared:
                        cast(PreparedSink, sink).write_prepared(items)
                    else:
                        sink.write_batch(items)
                except Exception as e:
                    _sink_failed(sink, e)

    @staticmethod
    def _records(batch: list[FlowSource]) -> list[FlowRecord]:
        records = []
        for flow in batch:
            try:
                records.append(flow.to_record())
            except Exception as e:  # one bad flow must not lose the batch
                print(f"tapproxy: cannot record a flow: {e!r}", file=sys.stderr)
        return records

    def _each(self, method: Callable[..., None], *args: object) -> None:
        for sink in self.sinks:
            try:
                getattr(sink, method.__name__)(*args)
            except Exception as e:
                _sink_failed(sink, e)


def _sink_failed(sink: Sink, e: Exception) -> None:
    """A sink must never stop the others: say which failed, and go on."""
    print(f"tapproxy: sink {type(sink).__name__} failed: {e}", file=sys.stderr)
