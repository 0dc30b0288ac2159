"""Getting finished flows to their sinks without slowing the data path.

``submit`` only appends to a list. A timer on the event loop hands the batch
to a writer thread through a bounded queue; the thread turns records into
text and writes them. If the queue is full (the disk cannot keep up), the
batch is dropped, counted, and a ``dropped`` record says how many were lost.
At shutdown ``close`` drains everything that was queued.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from proxy.sinks.record import FlowRecord

if TYPE_CHECKING:
    from proxy.session.commands import FlowSource


class Sink(Protocol):
    """Something that writes records; called on the writer thread only."""

    def write_batch(self, records: Sequence[FlowRecord]) -> None: ...
    def write_dropped(self, count: int) -> None: ...
    def close(self) -> None: ...


class Dispatcher:
    def __init__(
        self, sinks: Sequence[Sink], max_batches: int = 1024, interval: float = 0.05
    ) -> None:
        self.sinks = list(sinks)
        self.interval = interval
        self.submitted = 0
        self.dropped = 0
        self._batch: list[FlowSource] = []
        self._queue: queue.Queue[list[FlowSource] | None] = queue.Queue(max_batches)
        self._thread = threading.Thread(target=self._run, name="tapproxy-sinks", daemon=True)
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dropped_unreported = 0
        if self.sinks:
            self._thread.start()

    def submit(self, flow: FlowSource) -> None:
        """Queue a finished flow; its record is built on the writer thread."""
        if not self.sinks:
            return
        self.submitted += 1
        self._batch.append(flow)
        if self._timer is None:
            loop = self._loop or asyncio.get_running_loop()
            self._loop = loop
            self._timer = loop.call_later(self.interval, self.flush)
        elif len(self._batch) >= 512:
            self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, []
        if not batch:
            return
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self.dropped += len(batch)
            self._dropped_unreported += len(batch)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is pending and wait for the writer thread to finish."""
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
            self._each(Sink.write_batch, self._records(batch))

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
            except Exception as e:  # a sink must never stop the others
                print(f"tapproxy: sink {type(sink).__name__} failed: {e}", file=sys.stderr)
