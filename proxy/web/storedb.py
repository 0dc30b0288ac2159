"""The flow store's SQLite file: its schema, its settings, its two connections.

One file, WAL mode (readers never wait for the writer, the writer never for
a reader). The event loop writes through one connection (the store sink
indexing the spool; at exit, the dispatcher's writer thread) and reads
through the other; each is used under its own lock, so either may also be
used from another thread (a filter scan in an executor).

Memory: each connection's page cache is capped at ``CACHE_KIB`` KiB
(``PRAGMA cache_size``), SQLite's heap as a whole is held to
``SOFT_HEAP_LIMIT`` (32 MiB), and nothing is memory-mapped (``mmap_size``
0: mapped pages of the file would count in the proxy's RSS), so the store
costs the proxy at most ~2 x 8 MiB of cache whatever it holds; the rest is
on disk (or in the OS's page cache, which the kernel reclaims).

The file carries its schema version in ``PRAGMA user_version``; a file of
another version is refused rather than misread.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import threading

#: Bump on any incompatible change of the tables below.
SCHEMA_VERSION = 1
#: Page cache per connection, in KiB (two connections: writer and reader).
CACHE_KIB = 8192
#: SQLite's own heap in this process (both caches, statements, sorting), as a
#: soft limit: past it SQLite frees cache pages before it allocates more.
SOFT_HEAP_LIMIT = 2 * CACHE_KIB * 1024 + 16 * 1024 * 1024
#: The WAL file is truncated to this after a checkpoint (it grows with a burst).
WAL_LIMIT = 64 * 1024 * 1024

_SCHEMA = """
CREATE TABLE flows (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    start REAL, duration REAL, protocol TEXT, kind TEXT, method TEXT, url TEXT,
    host TEXT, path TEXT, status INTEGER, type TEXT, size INTEGER, error TEXT,
    rules TEXT NOT NULL, changed INTEGER NOT NULL, marked INTEGER NOT NULL,
    nbytes INTEGER NOT NULL
);
CREATE TABLE records (seq INTEGER PRIMARY KEY, json BLOB NOT NULL);
CREATE TABLE bodies (
    flow_seq INTEGER NOT NULL, side TEXT NOT NULL, size INTEGER NOT NULL,
    truncated INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE UNIQUE INDEX bodies_flow ON bodies (flow_seq, side);
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    flow TEXT NOT NULL, flow_seq INTEGER, nbytes INTEGER NOT NULL, detail BLOB NOT NULL
);
CREATE INDEX messages_flow ON messages (flow, seq);
CREATE INDEX messages_flow_seq ON messages (flow_seq);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta VALUES ('dropped', 0);
"""

#: The summary columns, in the order ``proxy.web.store`` reads them.
COLUMNS = (
    "seq, id, start, duration, protocol, kind, method, url, host, path, "
    "status, type, size, error, rules, changed, marked"
)


class StoreError(Exception):
    """The store's file cannot be used (another schema version, not SQLite)."""


class Connection:
    """A connection and the lock its users take (``with conn as db``)."""

    def __init__(self, path: str, *, reader: bool) -> None:
        self.lock = threading.Lock()
        # Autocommit (isolation_level None): transactions are explicit (BEGIN).
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self.db.execute("PRAGMA mmap_size = 0")
        if reader:
            self.db.execute("PRAGMA query_only = 1")

    def __enter__(self) -> sqlite3.Connection:
        """``with conn as db``: the connection, under its lock (a class, not
        ``contextlib.contextmanager``: a filtered scan enters it per flow)."""
        self.lock.acquire()
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    def close(self) -> None:
        with self.lock:
            self.db.close()


def temp_path() -> str:
    """A new, empty file for a store that lives as long as the proxy."""
    fd, path = tempfile.mkstemp(prefix="tapproxy-flows-", suffix=".sqlite")
    os.close(fd)
    return path


def open_writer(path: str, *, durable: bool) -> Connection:
    """The writing connection, with the schema created or checked.

    ``durable`` False (a temp store): no fsync at all, nothing survives a
    crash anyway. True: WAL's ``synchronous = NORMAL`` (a crash loses at most
    the last transactions, never the file).
    """
    try:
        conn = Connection(path, reader=False)
        db = conn.db
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: SQLite would not use WAL mode here ({mode})")
        db.execute(f"PRAGMA synchronous = {'NORMAL' if durable else 'OFF'}")
        db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
        db.execute(f"PRAGMA soft_heap_limit = {SOFT_HEAP_LIMIT}")
        _schema(db, path)
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path}: {e}") from e
    return conn


def _schema(db: sqlite3.Connection, path: str) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if version != 0 or tables:
        raise StoreError(
            f"{path}: a flow store of schema {version}, this tapproxy writes schema "
            f"{SCHEMA_VERSION}; give another file or remove this one"
        )
    db.execute("BEGIN IMMEDIATE")
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.execute("COMMIT")


def remove_files(path: str) -> None:
    """The database and its WAL and shared-memory files (a temp store at close)."""
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
