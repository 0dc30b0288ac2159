"""The dispatcher's sink that fills the web UI's flow store.

``prepare`` runs on the event loop (``proxy.sinks.dispatch``). It only
appends each finished flow to the store's waiting rows: its flow-log JSON
(encoded once for the flow log and the store, ``proxy.sinks.encoded``) and
its bodies capped at the store's ``max_body``; a message record as its
row. ``index`` then makes the summaries, the metrics and the indexed rows
from those, oldest first, and ``on_rows`` hears the new summaries there,
on the loop, where the web server can push them to browsers. While a
browser watches (``live``) a batch is indexed as soon as it is appended;
otherwise it waits until a browser or an API client asks
(``proxy.web.indexing``), so that a UI nobody looks at costs the proxy
almost nothing per flow (why: ``proxy.web.storewait``).

Bodies are in the record only when capture is on
(``SessionConfig.capture.record``, as ``--web`` and ``--save`` turn it on);
otherwise the store keeps the bodies that fit in the record's preview whole.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from proxy.flow.record import FlowRecord
from proxy.flow.wsinfo import MESSAGE_KINDS
from proxy.sinks.encoded import EncodedRecords
from proxy.web.indexing import Indexer
from proxy.web.messagerows import message_row
from proxy.web.rows import FlowRow, MessageRow, Row, Summary
from proxy.web.store import FlowStore
from proxy.web.storewait import FLOW, MESSAGE, Waiting, packed_bodies, unpack_bodies
from proxy.web.summary import Json, summary

#: Waiting rows indexed in one go: about 15 ms of the loop.
INDEX_SLICE = 256


class Observer(Protocol):
    """Counts flows as they are indexed (``proxy.web.metrics.ProxyMetrics``)."""

    def observe(self, records: Sequence[Json]) -> None: ...


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
        live: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.encoded = encoded or EncodedRecords()  # shared with the flow log's sink
        self.close_store = close_store
        self.on_rows = on_rows
        self.observer = observer
        self.live = live  # True while a browser watches: index each batch at once
        self.indexer = Indexer(self.index, INDEX_SLICE)
        self.lost = 0  # flows not stored (a write error, a waiting row unreadable)
        self.errors = 0

    def prepare(self, records: Sequence[FlowRecord]) -> list[Any]:
        """Append ``records`` to the waiting rows; index them now while a browser watches."""
        rows: list[tuple[int, bytes, bytes]] = []
        flows = 0
        max_body = self.store.max_body
        for r, line in zip(records, self.encoded.lines(records), strict=True):
            if r.kind not in MESSAGE_KINDS:
                rows.append((FLOW, line, packed_bodies(r, max_body)))
                flows += 1
            elif (message := message_row(r)) is not None:
                rows.append((MESSAGE, message.flow.encode(), message.detail))
        self._guarded(lambda: self.store.wait_many(rows), flows)
        if self.live is not None and self.live():
            if self.store.waiting.rows <= INDEX_SLICE:
                self.index(INDEX_SLICE)
            else:  # a backlog from before the browser came: a slice per loop turn
                self.indexer.kick()
        return []

    def index(self, limit: int) -> int:
        """Index up to ``limit`` waiting rows, oldest first; how many were taken."""
        try:
            taken = self.store.take_waiting(limit)
        except OSError as e:
            self._failed(e)
            return 0
        if not taken:
            return 0
        rows, summaries, records = self._rows(taken)
        self._guarded(lambda: self.store.add_many(rows, taken), len(summaries))
        if self.observer is not None:
            self.observer.observe(records)
        if self.on_rows is not None and summaries:
            self.on_rows(summaries)
        return len(taken)

    def _rows(self, taken: list[Waiting]) -> tuple[list[Row], list[Summary], list[Json]]:
        """The rows to index, the summaries of the flows among them, their records."""
        rows: list[Row] = []
        summaries: list[Summary] = []
        records: list[Json] = []
        seq = self.store.reserve(sum(1 for w in taken if w.kind == FLOW))
        for w in taken:
            if w.kind == MESSAGE:
                rows.append(MessageRow(w.a.decode("utf-8", "replace"), w.b))
                continue
            try:
                record = json.loads(w.a)
                s, body_rows = summary(record), unpack_bodies(w.b)
            except (ValueError, KeyError, TypeError):
                self.lost += 1  # not written by this sink: a damaged store file
                continue
            s["seq"], s["state"], s["held"] = seq, "done", None
            rows.append(FlowRow(s, w.a, body_rows, seq))
            summaries.append(s)
            records.append(record)
            seq += 1
        return rows, summaries, records

    def _guarded(self, write: Callable[[], None], flows: int) -> None:
        try:
            write()
        except (sqlite3.Error, OSError) as e:
            self.lost += flows
            self._failed(e)

    def _failed(self, e: sqlite3.Error | OSError) -> None:
        self.errors += 1
        if self.errors == 1:
            print(
                f"tapproxy: cannot write the web UI's flow store {self.store.path}: {e}; "
                "flows not stored are counted as lost (SIGUSR1 stats, exit summary)",
                file=sys.stderr,
            )

    def index_all(self) -> None:
        """Index everything that waits (at once: before the loop runs, or at the end)."""
        while self.index(INDEX_SLICE):
            pass

    def write_prepared(self, items: list[Any]) -> None:
        """Nothing: ``prepare`` did it all on the loop (a waiting row is one short INSERT)."""

    def write_batch(self, records: Sequence[FlowRecord]) -> None:
        self.prepare(records)

    def write_dropped(self, count: int) -> None:
        """The dispatcher's queue overflowed; it counts and reports those flows itself."""

    def close(self) -> None:
        """A store file gets what still waits, indexed, so that it is whole when
        opened again; a temporary store is deleted anyway."""
        if self.close_store:
            if not self.store.temporary:
                self.on_rows = None  # no browser to tell any more
                self.index_all()
            self.store.close()
