"""The web UI's flow store: bounded, in SQLite, on disk (issue 18 item 8).

mitmweb keeps every flow in Python objects, without a cap (its issues
#2175, #6398, #8246: an OOM on a 32 GB machine). Here a flow is a row of a
SQLite file (``proxy.web.storedb``: a temp file deleted at close, or
``--web-store FILE``): its summary in columns, its flow-log record as
compact JSON, its bodies each capped at ``max_body``, and the messages of a
WebSocket, an event stream or a gRPC call in a table of their own keyed by
the flow's id. Nothing per flow stays in Python, so the proxy's memory does
not grow with the flows it has seen.

Caps: ``max_flows`` and ``max_size`` (bytes of records, bodies and messages
as stored). Past either, the oldest flows go first, with their bodies and
messages, in one DELETE per table after each written batch, and
``dropped`` counts them. Messages arrive before their flow's record (the
record is written when the flow ends): until it comes they are "pending",
at most ``MAX_PENDING`` of them (the oldest dropped first), counted in the
size all the same. ``max_size`` counts what is stored; the file is larger
by its indexes and summary columns (about 1.4 times in bench/web_store.py)
and by the WAL (truncated to ``storedb.WAL_LIMIT`` after a checkpoint);
pages freed by drops are reused, so it stops growing once the caps are reached.

Flows come in through ``waiting`` first (``wait_many``; why and how:
``proxy.web.storewait``) and are indexed from there in order (``take_waiting``,
then ``add_many`` with what was taken). Writes go through one connection,
reads (``proxy.web.storeread``) through another, each under its own lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

from proxy.sinks.jsonenc import dumps
from proxy.web.rows import BodyRow, FlowRow, MessageRow, Row
from proxy.web.storedb import COLUMNS, Connection, open_writer, remove_files, temp_path
from proxy.web.storeread import Predicate, StoredFlow, StoreReader
from proxy.web.storewait import Spool, Waiting

__all__ = ["FlowStore", "Predicate", "StoredFlow"]

DEFAULT_MAX_FLOWS = 100_000
DEFAULT_MAX_SIZE = 1 << 30  # 1 GiB
DEFAULT_MAX_BODY = 1 << 20  # 1 MiB per body
#: Messages whose flow has not ended (no row yet) kept at most.
MAX_PENDING = 100_000
#: Bound parameters per ``IN (...)`` list (SQLite allows 32766 since 3.32).
_IN_CHUNK = 500


class FlowStore(StoreReader):
    """Flows in SQLite, bounded by count and size; see the module docstring."""

    def __init__(
        self,
        path: str | None = None,
        *,
        max_flows: int = DEFAULT_MAX_FLOWS,
        max_size: int = DEFAULT_MAX_SIZE,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.temporary = path is None
        self.path = temp_path() if path is None else path
        self.max_flows = max_flows
        self.max_size = max_size
        self.max_body = max_body
        try:
            self._w = open_writer(self.path, durable=not self.temporary)
            self._r = Connection(self.path, reader=True)
            # Flows and messages not indexed yet (``proxy.web.storewait``).
            self.waiting = Spool(self.path, max_flows, max_size)
        except BaseException:
            for conn in ("_r", "_w"):
                if hasattr(self, conn):
                    getattr(self, conn).close()
            if self.temporary:
                remove_files(self.path)
            raise
        self.count = 0  # flows stored
        self.size_bytes = 0  # records, bodies and messages, as counted against max_size
        self.dropped = 0  # flows dropped to stay within the caps (kept in the file)
        self.pending = 0  # messages whose flow has no row yet
        self._next_seq = 1
        self._next_msg = 1
        self._seq_lock = threading.Lock()
        with self._w as db:
            self._load_counters(db)
            self._write(db, self._evict)  # a file from a run with larger caps

    # -- writing (the event loop; the writer thread at exit) -------------------------
    def reserve(self, n: int) -> int:
        """The first of ``n`` new flow seqs, in order (any thread): the sink gives
        flows their seq on the event loop, so live updates can name it."""
        with self._seq_lock:
            first = self._next_seq
            self._next_seq += n
            return first

    def wait_many(self, rows: Sequence[tuple[int, bytes, bytes]]) -> None:
        """Append finished flows and messages to the spool (``storewait``'s rows)."""
        w = self.waiting
        w.add(rows)
        if self.count and (w.flows >= self.max_flows or w.nbytes >= self.max_size):
            # Indexing the waiting flows would drop every indexed one: now, at once.
            with self._w as db:
                self._write(db, self._drop_all)
        trimmed = w.trim()
        if trimmed:
            with self._w as db:
                self._write(db, lambda db: self._count_dropped(db, trimmed))

    def take_waiting(self, limit: int) -> list[Waiting]:
        """The oldest ``limit`` waiting rows; ``add_many(rows, taken)`` consumes them."""
        return self.waiting.take(limit)

    def add_many(self, rows: Sequence[Row], consumed: Sequence[Waiting] = ()) -> None:
        """Store finished flows and messages, then drop the oldest past the caps;
        ``consumed``, the waiting rows they were made of, leave the spool once
        SQLite has them (a crash in between indexes them again, replacing)."""
        flows = list({r.id: self._capped(r) for r in rows if isinstance(r, FlowRow)}.values())
        messages = [r for r in rows if isinstance(r, MessageRow)]
        if flows or messages:
            with self._w as db:
                self._write(db, lambda db: self._insert(db, flows, messages))
        self.waiting.consumed(consumed)  # once SQLite has them

    def set_marked(self, flow_id: str, marked: bool) -> bool:
        """Mark or unmark a flow (``~marked``); False when it is not stored."""
        with self._w as db:
            cur = db.execute("UPDATE flows SET marked = ? WHERE id = ?", (int(marked), flow_id))
            return cur.rowcount > 0

    def clear(self) -> None:
        """Forget every flow and message (``dropped`` is kept: they were not dropped)."""

        def clear(db: sqlite3.Connection) -> None:
            for table in ("flows", "records", "bodies", "messages"):
                db.execute(f"DELETE FROM {table}")
            self.count = self.size_bytes = self.pending = 0

        self.waiting.clear()
        with self._w as db:
            self._write(db, clear)

    def close(self) -> None:
        """Close the connections; a temporary store's files are deleted, and
        the spool's once nothing waits in it."""
        self.waiting.close(remove=self.temporary or not self.waiting.rows)
        self._r.close()
        self._w.close()
        if self.temporary:
            remove_files(self.path)

    def _write(self, db: sqlite3.Connection, work: Callable[[sqlite3.Connection], None]) -> None:
        """``work`` in one transaction; on failure the counters are read back."""
        db.execute("BEGIN IMMEDIATE")
        try:
            work(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._load_counters(db)
            raise

    def _drop_all(self, db: sqlite3.Connection) -> None:
        (last,) = db.execute("SELECT max(seq) FROM flows").fetchone()
        self._drop_through(db, last)

    def _count_dropped(self, db: sqlite3.Connection, n: int) -> None:
        self.dropped += n
        db.execute("UPDATE meta SET value = ? WHERE key = 'dropped'", (self.dropped,))

    def _load_counters(self, db: sqlite3.Connection) -> None:
        self.count, flow_bytes = db.execute(
            "SELECT count(*), coalesce(sum(nbytes), 0) FROM flows"
        ).fetchone()
        msg_bytes, self.pending = db.execute(
            "SELECT coalesce(sum(nbytes), 0), count(*) - count(flow_seq) FROM messages"
        ).fetchone()
        self.size_bytes = flow_bytes + msg_bytes
        self.dropped = db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0]
        seqs = dict(db.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        with self._seq_lock:
            self._next_seq = max(self._next_seq, seqs.get("flows", 0) + 1)
        self._next_msg = seqs.get("messages", 0) + 1

    def _capped(self, row: FlowRow) -> FlowRow:
        """The row with every body within ``max_body`` (the sink caps them already)."""
        if all(len(b.data) <= self.max_body for b in row.bodies):
            return row
        bodies = tuple(
            BodyRow(b.side, b.data[: self.max_body], b.size, True)
            if len(b.data) > self.max_body
            else b
            for b in row.bodies
        )
        return FlowRow(row.summary, row.record, bodies, row.seq)

    def _insert(
        self, db: sqlite3.Connection, flows: list[FlowRow], messages: list[MessageRow]
    ) -> None:
        self._replace(db, [f.id for f in flows])
        unnumbered = sum(1 for f in flows if not f.seq)
        first = self.reserve(unnumbered) if unnumbered else 0
        seqs = []
        for f in flows:
            seqs.append(f.seq or first)
            first += not f.seq
        db.executemany(
            f"INSERT INTO flows ({COLUMNS}, nbytes) VALUES ({', '.join('?' * 18)})",
            [_flow_values(seq, f) for seq, f in zip(seqs, flows, strict=True)],
        )
        db.executemany(
            "INSERT INTO records (seq, json) VALUES (?, ?)",
            [(seq, f.record) for seq, f in zip(seqs, flows, strict=True)],
        )
        db.executemany(
            "INSERT INTO bodies (flow_seq, side, size, truncated, data) VALUES (?, ?, ?, ?, ?)",
            [
                (seq, b.side, b.size, int(b.truncated), b.data)
                for seq, f in zip(seqs, flows, strict=True)
                for b in f.bodies
            ],
        )
        # Messages that came before their flow's record join it now.
        attached = db.executemany(
            "UPDATE messages SET flow_seq = ? WHERE flow = ? AND flow_seq IS NULL",
            [(seq, f.id) for seq, f in zip(seqs, flows, strict=True)],
        ).rowcount
        self.pending -= max(attached, 0)
        self.count += len(flows)
        self.size_bytes += sum(f.nbytes for f in flows)
        self._insert_messages(db, messages)
        self._evict(db)

    def _insert_messages(self, db: sqlite3.Connection, messages: list[MessageRow]) -> None:
        if not messages:
            return
        first = self._next_msg
        self._next_msg += len(messages)
        db.executemany(
            "INSERT INTO messages (seq, flow, flow_seq, nbytes, detail) "
            "VALUES (?, ?, (SELECT seq FROM flows WHERE id = ?), ?, ?)",
            [(first + i, m.flow, m.flow, m.nbytes, m.detail) for i, m in enumerate(messages)],
        )
        self.pending += db.execute(
            "SELECT count(*) FROM messages WHERE seq >= ? AND flow_seq IS NULL", (first,)
        ).fetchone()[0]
        self.size_bytes += sum(m.nbytes for m in messages)

    def _replace(self, db: sqlite3.Connection, ids: list[str]) -> None:
        """Flows stored again under an id already there replace the old row;
        its messages wait for the new one."""
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            old = db.execute(
                f"SELECT seq, nbytes FROM flows WHERE id IN ({marks})",
                chunk,
            ).fetchall()
            for seq, nbytes in old:
                self.pending += db.execute(
                    "UPDATE messages SET flow_seq = NULL WHERE flow_seq = ?", (seq,)
                ).rowcount
                for table, key in (("flows", "seq"), ("records", "seq"), ("bodies", "flow_seq")):
                    db.execute(f"DELETE FROM {table} WHERE {key} = ?", (seq,))
                self.count -= 1
                self.size_bytes -= nbytes

    # -- dropping the oldest ---------------------------------------------------------
    def _evict(self, db: sqlite3.Connection) -> None:
        excess = self.count - self.max_flows
        if excess > 0:
            cut = db.execute(
                "SELECT seq FROM flows ORDER BY seq LIMIT 1 OFFSET ?", (excess - 1,)
            ).fetchone()[0]
            self._drop_through(db, cut)
        if self.size_bytes > self.max_size and self.count:
            self._drop_through(db, self._size_cut(db, self.size_bytes - self.max_size))
        over = max(self.pending - MAX_PENDING, 0)
        if self.size_bytes > self.max_size:  # only pending messages are left
            over = self.pending
        if over:
            self._drop_pending(db, over)

    def _size_cut(self, db: sqlite3.Connection, over: int) -> int:
        """The seq through which the oldest flows (with their messages) free ``over`` bytes."""
        cur = db.execute(
            "SELECT f.seq, f.nbytes + coalesce("
            "(SELECT sum(m.nbytes) FROM messages m WHERE m.flow_seq = f.seq), 0) "
            "FROM flows f ORDER BY f.seq"
        )
        cut = 0
        try:
            while over > 0:
                chunk = cur.fetchmany(256)
                if not chunk:
                    break
                for seq, nbytes in chunk:
                    over -= nbytes
                    cut = seq
                    if over <= 0:
                        break
        finally:
            cur.close()
        return cut

    def _drop_through(self, db: sqlite3.Connection, cut: int) -> None:
        n, flow_bytes = db.execute(
            "SELECT count(*), coalesce(sum(nbytes), 0) FROM flows WHERE seq <= ?", (cut,)
        ).fetchone()
        (msg_bytes,) = db.execute(
            "SELECT coalesce(sum(nbytes), 0) FROM messages WHERE flow_seq <= ?", (cut,)
        ).fetchone()
        for table, key in (
            ("messages", "flow_seq"),
            ("bodies", "flow_seq"),
            ("records", "seq"),
            ("flows", "seq"),
        ):
            db.execute(f"DELETE FROM {table} WHERE {key} <= ?", (cut,))
        self.count -= n
        self.size_bytes -= flow_bytes + msg_bytes
        self._count_dropped(db, n)

    def _drop_pending(self, db: sqlite3.Connection, n: int) -> None:
        row = db.execute(
            "SELECT seq FROM messages WHERE flow_seq IS NULL ORDER BY seq LIMIT 1 OFFSET ?",
            (min(n, self.pending) - 1,),
        ).fetchone()
        if row is None:
            return
        gone, nbytes = db.execute(
            "SELECT count(*), coalesce(sum(nbytes), 0) FROM messages "
            "WHERE flow_seq IS NULL AND seq <= ?",
            row,
        ).fetchone()
        db.execute("DELETE FROM messages WHERE flow_seq IS NULL AND seq <= ?", row)
        self.pending -= gone
        self.size_bytes -= nbytes


def _flow_values(seq: int, f: FlowRow) -> tuple[Any, ...]:
    s = f.summary
    return (
        seq, s["id"], s["start"], s["duration"], s["protocol"], s["kind"], s["method"],
        s["url"], s["host"], s["path"], s["status"], s["type"], s["size"], s["error"],
        dumps(list(s["rules"])).decode(), int(bool(s["changed"])), int(bool(s["marked"])),
        f.nbytes,
    )  # fmt: skip
