"""Flows waiting to be indexed: what the web UI's store costs while nobody looks.

A finished flow is first appended to a spool file beside the store as it
came: its flow-log JSON (the bytes the flow log writes, encoded once for
both) and its bodies packed in one blob; a message record as its row. That
is one ``write`` per batch and no Python work per flow beyond packing the
bodies. (A SQLite table did the same for ~10 µs a flow: its commit writes
every page twice, to the WAL and at the checkpoint.) Its summary, its
metrics and its place in SQLite are made later, in order
(``proxy.web.storesink.StoreSink.index``): at once while a browser
watches, else when a browser or an API client next asks. So a ``--web``
proxy with no browser connected pays almost nothing per flow (issue 18;
docs/performance.md, "The web UI's cost").

The spool is a series of segment files, ``<store>.waiting-<n>``, each
starting with ``HEADER`` (its format's version). A segment holds at most
an eighth of the caps; past ``max_flows`` waiting flows or ``max_size``
waiting bytes, the oldest segments go whole (``trim``), counted as dropped,
as indexing them would only have dropped them again. Rows are consumed
after SQLite committed them; a crash between the two indexes a few again,
which replaces them (a flow stored again under its id replaces its row).
Left by a crash, segments are read again when the store is opened.
"""

from __future__ import annotations

import contextlib
import glob
import os
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from proxy.flow.record import FlowRecord, Message
from proxy.web.rows import SIDES, BodyRow
from proxy.web.storedb import StoreError

#: A row's kind: a flow, or a message of a flow.
FLOW, MESSAGE = 1, 2
#: The first bytes of a segment: the spool format and its version.
HEADER = b"tapproxy-waiting 1\n"
#: A segment is closed past this share of the caps (and at least this size).
SEGMENT_SHARE, MIN_SEGMENT = 8, 1 << 20
#: Bytes read from a segment at a time.
READ_CHUNK = 1 << 20

# A row: kind, length of ``a``, length of ``b``; then ``a`` and ``b``.
_ROW = struct.Struct("<BII")
# One body in a packed blob: side (index in SIDES), size on the wire,
# truncated, length of the kept bytes; then the bytes.
_BODY = struct.Struct("<BQ?I")


def packed_bodies(r: FlowRecord, max_body: int) -> bytes:
    """A flow's bodies as one blob, each capped at ``max_body``: the captured
    bytes when capture was on (``SessionConfig.capture.record``), else the
    previews that hold a body whole; empty bodies are left out. Straight to
    bytes, as this runs for every flow on the event loop."""
    c = r.bodies
    parts: list[bytes] = []
    if r.request is not None:
        m = r.request.message
        data = None if c is None else c.request
        trunc = c is not None and data is not None and c.request_truncated
        _pack(parts, 0, _whole(m) if data is None else data, m.body_size, trunc, max_body)
        fwd = r.request.forwarded
        if fwd is not None:
            data = None if c is None else c.forwarded
            sent = _whole(fwd.message) if data is None else data
            _pack(parts, 1, sent, fwd.message.body_size, False, max_body)
    if r.response is not None:
        m = r.response.message
        data = None if c is None else c.response
        trunc = c is not None and data is not None and c.response_truncated
        _pack(parts, 2, _whole(m) if data is None else data, m.body_size, trunc, max_body)
        up = r.response.upstream
        if up is not None:
            _pack(parts, 3, _whole(up.message), up.message.body_size, False, max_body)
    return b"".join(parts)


def _whole(m: Message) -> bytes | None:
    """The body when the record's preview holds all of it (small bodies need no capture)."""
    return m.preview if len(m.preview) == m.body_size else None


def _pack(
    parts: list[bytes], side: int, data: bytes | None, size: int, trunc: bool, max_body: int
) -> None:
    """Append body ``side`` (its index in ``SIDES``) unless it is empty."""
    if not data or not size:
        return
    kept = data[:max_body]
    truncated = trunc or len(kept) < size
    parts += (_BODY.pack(side, size, truncated, len(kept)), kept)


def unpack_bodies(blob: bytes) -> tuple[BodyRow, ...]:
    """The bodies of a packed blob; ValueError when it is not one."""
    out: list[BodyRow] = []
    at = 0
    while at < len(blob):
        try:
            side, size, truncated, n = _BODY.unpack_from(blob, at)
        except struct.error as e:
            raise ValueError(f"a packed body cut short at byte {at}") from e
        at += _BODY.size
        if side >= len(SIDES) or at + n > len(blob):
            raise ValueError(f"a packed body out of bounds at byte {at}")
        out.append(BodyRow(SIDES[side], bytes(blob[at : at + n]), size, truncated))
        at += n
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Waiting:
    """A row as taken from ``waiting``, in the order the flows finished."""

    at: int  # its offset in its segment
    kind: int  # FLOW or MESSAGE
    a: bytes  # a flow's JSON, or a message's flow id
    b: bytes  # a flow's packed bodies, or a message row's JSON

    @property
    def nbytes(self) -> int:
        """What the row counts against the store's size cap (its row header aside)."""
        return len(self.a) + len(self.b)


class SpoolError(StoreError):
    """A segment that is not one (another format version): named, not misread."""


class _Segment:
    """One spool file: rows appended at its end, read from ``read_at``."""

    __slots__ = (
        "fd", "flows", "nbytes", "path", "read_at", "read_bytes", "read_flows", "read_rows",
        "rows", "size",
    )  # fmt: skip

    def __init__(self, path: str, *, new: bool) -> None:
        self.path = path
        flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if new else 0)
        self.fd = os.open(path, flags, 0o600)
        self.read_at = len(HEADER)
        self.rows = self.flows = self.nbytes = 0
        self.read_rows = self.read_flows = self.read_bytes = 0
        if new:
            os.write(self.fd, HEADER)
            self.size = len(HEADER)
        else:
            self._count()

    def _count(self) -> None:
        """Counters of a segment left by an earlier run; a torn last row is cut off."""
        if os.pread(self.fd, len(HEADER), 0) != HEADER:
            os.close(self.fd)
            raise SpoolError(f"{self.path}: not a spool segment of this version ({HEADER!r})")
        self.size = len(HEADER)
        stop = os.fstat(self.fd).st_size
        while rows := self.read(self.size, 4096, stop):
            for row, end in rows:
                self.rows += 1
                self.flows += row.kind == FLOW
                self.nbytes += row.nbytes
                self.size = end
        os.ftruncate(self.fd, self.size)
        os.lseek(self.fd, self.size, os.SEEK_SET)

    def append(self, data: bytes, rows: int, flows: int, nbytes: int) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:  # a disk full: what was written of these rows goes again
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
                os.lseek(self.fd, self.size, os.SEEK_SET)
            raise
        self.size += len(data)
        self.rows += rows
        self.flows += flows
        self.nbytes += nbytes

    def read(self, at: int, limit: int, stop: int) -> list[tuple[Waiting, int]]:
        """Up to ``limit`` whole rows between offsets ``at`` and ``stop``, each
        with the offset after it; a row that would end past ``stop`` is torn
        (cut short by a crash) and ends the reading."""
        out: list[tuple[Waiting, int]] = []
        buf = os.pread(self.fd, min(READ_CHUNK, stop - at), at)
        pos = 0
        while len(out) < limit and pos + _ROW.size <= len(buf):
            kind, na, nb = _ROW.unpack_from(buf, pos)
            end = pos + _ROW.size + na + nb
            if at + end > stop:
                break
            if end > len(buf):
                if pos:  # the next read starts with it
                    break
                buf = os.pread(self.fd, end, at)  # a row larger than a chunk
            a = buf[pos + _ROW.size : pos + _ROW.size + na]
            b = buf[pos + _ROW.size + na : end]
            out.append((Waiting(at + pos, kind, a, b), at + end))
            pos = end
        return out

    def reset(self) -> None:
        """Empty again (read through, and the last segment: kept for what comes)."""
        os.ftruncate(self.fd, len(HEADER))
        os.lseek(self.fd, len(HEADER), os.SEEK_SET)
        self.size = self.read_at = len(HEADER)
        self.rows = self.flows = self.nbytes = 0
        self.read_rows = self.read_flows = self.read_bytes = 0

    def close(self, *, remove: bool) -> None:
        os.close(self.fd)
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


class Spool:
    """The waiting rows of a store at ``base``, in segment files; see the module docstring."""

    def __init__(self, base: str, max_flows: int, max_size: int) -> None:
        self.base = base
        self.max_flows, self.max_size = max_flows, max_size
        self.dropped = 0  # flows trimmed before they were indexed
        self._segments: deque[_Segment] = deque()
        found = glob.glob(glob.escape(base) + ".waiting-*")
        for path in sorted((p for p in found if _number(p)), key=_number):
            self._segments.append(_Segment(path, new=False))
        self._next = _number(self._segments[-1].path) + 1 if self._segments else 1

    @property
    def flows(self) -> int:
        return sum(s.flows - s.read_flows for s in self._segments)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes - s.read_bytes for s in self._segments)

    @property
    def rows(self) -> int:
        """Flows and messages waiting."""
        return sum(s.rows - s.read_rows for s in self._segments)

    def add(self, rows: Sequence[tuple[int, bytes, bytes]]) -> None:
        """Append ``(kind, a, b)`` rows, oldest first, in one write."""
        if not rows:
            return
        parts: list[bytes] = []
        for kind, a, b in rows:
            parts += (_ROW.pack(kind, len(a), len(b)), a, b)
        flows = sum(1 for kind, _a, _b in rows if kind == FLOW)
        nbytes = sum(len(a) + len(b) for _kind, a, b in rows)
        self._current().append(b"".join(parts), len(rows), flows, nbytes)

    def _current(self) -> _Segment:
        last = self._segments[-1] if self._segments else None
        if (
            last is None
            or last.flows * SEGMENT_SHARE >= self.max_flows
            or last.size >= max(self.max_size // SEGMENT_SHARE, MIN_SEGMENT)
        ):
            last = _Segment(f"{self.base}.waiting-{self._next}", new=True)
            self._next += 1
            self._segments.append(last)
        return last

    def take(self, limit: int) -> list[Waiting]:
        """The oldest ``limit`` rows of the first segment with any (consumed by ``consumed``)."""
        for seg in self._segments:
            if seg.read_at < seg.size:
                return [row for row, _end in seg.read(seg.read_at, limit, seg.size)]
        return []

    def consumed(self, taken: Sequence[Waiting]) -> None:
        """``taken`` (from ``take``) is indexed now; a segment read through goes."""
        if not taken:
            return
        seg = self._segments[0]
        while seg.read_at >= seg.size and len(self._segments) > 1:
            self._drop_first()
            seg = self._segments[0]
        last = taken[-1]
        seg.read_at = last.at + _ROW.size + last.nbytes
        seg.read_rows += len(taken)
        seg.read_flows += sum(1 for w in taken if w.kind == FLOW)
        seg.read_bytes += sum(w.nbytes for w in taken)
        if seg.read_at >= seg.size:
            if len(self._segments) > 1:
                self._drop_first()
            else:
                seg.reset()

    def trim(self) -> int:
        """Drop the oldest segments while the rest still fill a cap; the flows dropped."""
        gone = 0
        flows, nbytes = self.flows, self.nbytes
        while len(self._segments) > 1:
            first = self._segments[0]
            left, left_bytes = first.flows - first.read_flows, first.nbytes - first.read_bytes
            if flows - left < self.max_flows and nbytes - left_bytes < self.max_size:
                break
            self._drop_first()
            gone += left
            flows, nbytes = flows - left, nbytes - left_bytes
        self.dropped += gone
        return gone

    def _drop_first(self) -> None:
        self._segments.popleft().close(remove=True)

    def clear(self) -> None:
        while self._segments:
            self._drop_first()

    def close(self, *, remove: bool) -> None:
        """Close the files; ``remove``: delete them (a temporary store, or all indexed)."""
        while self._segments:
            self._segments.popleft().close(remove=remove)


def _number(path: str) -> int:
    """A segment's number (0: not a segment's name)."""
    tail = path.rsplit("-", 1)[1]
    return int(tail) if tail.isdigit() else 0
