"""Reading the flow store: pages of summaries, a filtered scan, one flow,
its record, bodies and messages (``FlowStore`` is a ``StoreReader``).

Every read takes the reading connection's lock for one short statement; a
filtered scan reads ``SCAN_CHUNK`` rows at a time and holds no lock while
the predicate runs (it may read a flow's record or bodies itself).

A page without a filter is SQL's LIMIT/OFFSET on the primary key (a few ms
at any offset of 100,000 flows); a filter visits every flow, and one that
parses each record costs ~15-40 µs a flow (bench/web_store.py): seconds
for a full store, so a server calls ``query`` with a predicate from a
worker thread (``asyncio.to_thread``), not on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from proxy.web.rows import Summary
from proxy.web.storedb import COLUMNS, Connection

_loads: Callable[[bytes | str], Any]
try:
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - platforms without an orjson wheel
    import json

    _loads = json.loads
else:
    _loads = _orjson_loads

#: Rows read per lock taken in a filtered scan.
SCAN_CHUNK = 1000


class _Records:
    """The records of one chunk of a filtered scan, read in one statement the
    first time a flow of the chunk asks for its record (a filter on headers
    reads them all: one query per chunk instead of one per flow)."""

    __slots__ = ("_blobs", "_reader", "_seqs")

    def __init__(self, reader: StoreReader, seqs: tuple[int, int]) -> None:
        self._reader = reader
        self._seqs = seqs
        self._blobs: dict[int, bytes] | None = None

    def record(self, seq: int) -> dict[str, Any]:
        if self._blobs is None:
            self._blobs = self._reader.record_blobs(*self._seqs)
        blob = self._blobs.get(seq)
        return {} if blob is None else _record(blob)


class StoredFlow:
    """A stored flow as a filter sees it: the summary at once, the record and
    the bodies read when asked (``json_subject(flow.record, flow.body, marked)``)."""

    __slots__ = ("_batch", "_record", "_store", "seq", "summary")

    def __init__(self, store: StoreReader, summary: Summary, batch: _Records | None = None) -> None:
        self._store = store
        self._batch = batch
        self.summary = summary
        self.seq: int = summary["seq"]
        self._record: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return str(self.summary["id"])

    @property
    def record(self) -> dict[str, Any]:
        """The flow-log record (docs/flow-log.md), parsed on first use."""
        if self._record is None:
            batch, seq = self._batch, self.seq
            self._record = self._store.record_of(seq) if batch is None else batch.record(seq)
        return self._record

    def body(self, side: str) -> bytes | None:
        """The stored body (its first ``max_body`` bytes), None when there is none."""
        return self._store.body_of(self.seq, side)


def _record(blob: bytes) -> dict[str, Any]:
    record = _loads(blob)
    return record if isinstance(record, dict) else {}


Predicate = Callable[[StoredFlow], bool]


def summary_of(row: Sequence[Any]) -> Summary:
    """A summary (docs/api.md) from the columns ``storedb.COLUMNS``."""
    (seq, id_, start, duration, protocol, kind, method, url, host, path,
     status, type_, size, error, rules, changed, marked) = row  # fmt: skip
    return {
        "id": id_, "seq": seq, "start": start, "duration": duration, "state": "done",
        "held": None, "protocol": protocol, "kind": kind, "method": method, "url": url,
        "host": host, "path": path, "status": status, "type": type_, "size": size,
        "error": error, "marked": bool(marked),
        "rules": [] if rules == "[]" else _loads(rules), "changed": bool(changed),
    }  # fmt: skip


class StoreReader:
    """The reads; ``_r`` is the reading connection (opened by ``FlowStore``)."""

    _r: Connection

    def query(
        self,
        predicate: Predicate | None = None,
        offset: int = 0,
        limit: int = 500,
        newest_first: bool = True,
    ) -> tuple[list[Summary], int]:
        """A page of summaries and how many flows match (all of them without a predicate)."""
        order = "DESC" if newest_first else "ASC"
        if predicate is None:
            with self._r as db:
                db.execute("BEGIN")  # one snapshot for the page and the count
                try:
                    rows = db.execute(
                        f"SELECT {COLUMNS} FROM flows ORDER BY seq {order} LIMIT ? OFFSET ?",
                        (max(limit, 0), max(offset, 0)),
                    ).fetchall()
                    (total,) = db.execute("SELECT count(*) FROM flows").fetchone()
                finally:
                    db.execute("COMMIT")
            return [summary_of(row) for row in rows], total
        return self._scan(predicate, offset, limit, order)

    def _scan(
        self, predicate: Predicate, offset: int, limit: int, order: str
    ) -> tuple[list[Summary], int]:
        after = "<" if order == "DESC" else ">"
        page: list[Summary] = []
        total = 0
        last: int | None = None
        while True:
            with self._r as db:
                if last is None:
                    sql = f"SELECT {COLUMNS} FROM flows ORDER BY seq {order} LIMIT ?"
                    rows = db.execute(sql, (SCAN_CHUNK,)).fetchall()
                else:
                    sql = f"SELECT {COLUMNS} FROM flows WHERE seq {after} ? ORDER BY seq {order} LIMIT ?"  # noqa: E501
                    rows = db.execute(sql, (last, SCAN_CHUNK)).fetchall()
            if not rows:
                return page, total
            seqs = (rows[0][0], rows[-1][0])
            batch = _Records(self, (min(seqs), max(seqs)))
            for row in rows:
                flow = StoredFlow(self, summary_of(row), batch)
                if predicate(flow):
                    if offset <= total < offset + limit:
                        page.append(flow.summary)
                    total += 1
            if len(rows) < SCAN_CHUNK:
                return page, total
            last = rows[-1][0]

    def get(self, flow_id: str) -> StoredFlow | None:
        with self._r as db:
            row = db.execute(f"SELECT {COLUMNS} FROM flows WHERE id = ?", (flow_id,)).fetchone()
        return None if row is None else StoredFlow(self, summary_of(row))

    def record_of(self, seq: int) -> dict[str, Any]:
        with self._r as db:
            row = db.execute("SELECT json FROM records WHERE seq = ?", (seq,)).fetchone()
        return {} if row is None else _record(row[0])

    def record_blobs(self, first: int, last: int) -> dict[int, bytes]:
        """The records' JSON of the flows ``first`` to ``last`` (seqs), unparsed."""
        with self._r as db:
            rows = db.execute(
                "SELECT seq, json FROM records WHERE seq BETWEEN ? AND ?", (first, last)
            ).fetchall()
        return dict(rows)

    def body_of(self, seq: int, side: str) -> bytes | None:
        with self._r as db:
            row = db.execute(
                "SELECT data FROM bodies WHERE flow_seq = ? AND side = ?", (seq, side)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def body(self, flow_id: str, side: str) -> bytes | None:
        """A flow's body on ``side`` (``rows.SIDES``), None when none is stored."""
        with self._r as db:
            row = db.execute(
                "SELECT b.data FROM bodies b JOIN flows f ON b.flow_seq = f.seq "
                "WHERE f.id = ? AND b.side = ?",
                (flow_id, side),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def bodies(self, flow_id: str) -> dict[str, dict[str, Any]]:
        """``{SIDE: {"size", "stored", "truncated"}}`` of the bodies stored (docs/api.md)."""
        with self._r as db:
            rows = db.execute(
                "SELECT b.side, b.size, length(b.data), b.truncated FROM bodies b "
                "JOIN flows f ON b.flow_seq = f.seq WHERE f.id = ?",
                (flow_id,),
            ).fetchall()
        return {
            side: {"size": size, "stored": stored, "truncated": bool(truncated)}
            for side, size, stored, truncated in rows
        }

    def messages(self, flow_id: str, offset: int = 0, limit: int = -1) -> list[dict[str, Any]]:
        """The flow's messages in order (``limit`` -1: all): direction, type,
        size, ``text`` or ``base64``, time (``proxy.web.messagerows``)."""
        with self._r as db:
            rows = db.execute(
                "SELECT detail FROM messages WHERE flow = ? ORDER BY seq LIMIT ? OFFSET ?",
                (flow_id, limit, max(offset, 0)),
            ).fetchall()
        return [dict(_loads(detail)) for (detail,) in rows]
