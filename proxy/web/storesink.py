"""The dispatcher's sink that fills the web UI's flow store.

``prepare`` runs on the event loop (``proxy.sinks.dispatch``): each record
becomes a row (its summary, its flow-log JSON, its bodies capped at the
store's ``max_body``; a message record a message row), the metrics count
it, and ``on_rows`` hears the new summaries there, on the loop, where the
web server can push them to browsers without crossing threads. The rows
are inserted there too for a temporary store, or by the writer thread for
a ``--web-store`` file (``write_prepared``; why: the comment above it).
Records are never kept: what crosses to the thread is bytes and small dicts.

Bodies are in the record only when capture is on
(``SessionConfig.capture.record``, as ``--save`` turns it on); otherwise
the store keeps the bodies that fit in the record's preview whole.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from proxy.flow.record import FlowRecord
from proxy.flow.wsinfo import MESSAGE_KINDS
from proxy.sinks.encoded import EncodedRecords
from proxy.web.messagerows import message_row
from proxy.web.rows import FlowRow, Row, Summary
from proxy.web.store import FlowStore
from proxy.web.summary import bodies, summary


class Observer(Protocol):
    """Counts records as they are prepared (``proxy.web.metrics.Metrics``)."""

    def observe(self, records: Sequence[FlowRecord]) -> None: ...


class StoreSink:
    """A ``PreparedSink`` writing into a ``FlowStore``; at the end it closes the
    store too, unless ``close_store`` is False (its owner closes it later)."""

    label = "web_store"
    unit = ("web store flow", "web store flows")

    def __init__(
        self,
        store: FlowStore,
        on_rows: Callable[[list[Summary]], None] | None = None,
        observer: Observer | None = None,
        *,
        close_store: bool = True,
        encoded: EncodedRecords | None = None,
    ) -> None:
        self.store = store
        self.encoded = encoded or EncodedRecords()  # shared with the flow log's sink
        self.close_store = close_store
        self.on_rows = on_rows
        self.observer = observer
        self.lost = 0  # flows not stored (a write error)
        self.errors = 0

    def rows(self, records: Sequence[FlowRecord]) -> tuple[list[Row], list[Summary]]:
        """The rows of ``records``, and the summaries of the flows among them."""
        flows = [r for r in records if r.kind not in MESSAGE_KINDS]
        first = self.store.reserve(len(flows)) if flows else 0
        rows: list[Row] = []
        summaries: list[Summary] = []
        max_body = self.store.max_body
        lines = self.encoded.lines(records)
        for r, line in zip(records, lines, strict=True):
            if r.kind in MESSAGE_KINDS:
                message = message_row(r)
                if message is not None:
                    rows.append(message)
                continue
            s = summary(r)
            s["seq"], s["state"], s["held"] = first, "done", None
            rows.append(FlowRow(s, line, bodies(r, max_body), first))
            summaries.append(s)
            first += 1
        return rows, summaries

    def prepare(self, records: Sequence[FlowRecord]) -> list[Row]:
        """Rows for the writer thread; metrics and ``on_rows`` hear of them here, on the loop."""
        rows, summaries = self.rows(records)
        if self.observer is not None:
            self.observer.observe(records)
        if self.on_rows is not None and summaries:
            self.on_rows(summaries)
        if self.store.temporary:  # no fsync ever: inserting is CPU, done here (below)
            self.write_prepared(rows)
            return []
        return rows

    # Where rows are inserted: a temporary store (the default; ``synchronous =
    # OFF``, no fsync) takes them here on the loop, a slice of the
    # dispatcher's at a time; a ``--web-store`` file on the writer thread,
    # as its WAL checkpoints fsync. Measured (bench a, 5 runs): inserting on
    # the writer thread raised tapproxy --web's p99 latency from 16.5 to
    # 24.0 ms, the loop waiting for the GIL while SQLite's binding held it;
    # on the loop, 18.8 against 20.2 ms, for the same CPU.
    def write_prepared(self, rows: list[Row]) -> None:
        try:
            self.store.add_many(rows)
        except sqlite3.Error as e:
            self.lost += sum(1 for r in rows if isinstance(r, FlowRow))
            self.errors += 1
            if self.errors == 1:
                print(
                    f"tapproxy: cannot write the web UI's flow store {self.store.path}: {e}; "
                    "flows not stored are counted as lost (SIGUSR1 stats, exit summary)",
                    file=sys.stderr,
                )

    def write_batch(self, records: Sequence[FlowRecord]) -> None:
        self.write_prepared(self.rows(records)[0])

    def write_dropped(self, count: int) -> None:
        """The dispatcher's queue overflowed; it counts and reports those flows itself."""

    def close(self) -> None:
        if self.close_store:
            self.store.close()
