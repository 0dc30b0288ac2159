"""``--har FILE`` with ``--workers``: one HAR document, several writers.

The parent creates the document (head and an empty tail) before forking
(``SharedHarSink.create``). Each worker maps its flows to entries as the
single-process sink does (``HarLog``), then, under the file's exclusive lock
(proxy/sinks/shared_file.py), reads the tail at the end of the file, adds
its entries where the tail starts and writes a new tail whose counts
(dropped, skipped) are the old ones plus what this worker added since its
last write. So the file is a complete HAR document between any two batches
of any workers, exactly as with one process; entries are in the order the
batches were written.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import IO

from proxy import __version__
from proxy.flow.jsonview import record_to_json
from proxy.flow.record import FlowRecord
from proxy.oserrors import reason
from proxy.sinks.har import TAIL_MARK, HarLog, cannot_write, tail_bytes
from proxy.sinks.har_bodies import RecordBodies
from proxy.sinks.shared_file import locked

__all__ = ["SharedHarSink"]

#: How far from the end the tail is looked for (it holds a few counts).
_TAIL_WINDOW = 64 * 1024


class SharedHarSink:
    """A worker's writer of the shared HAR document (see module doc)."""

    label = "har"
    unit = ("HAR entry", "HAR entries")

    def __init__(self, path: str, version: str = __version__) -> None:
        self.path = path
        self.errors = 0
        self.lost = 0  # HTTP entries that could not be written
        self.log = HarLog(version)
        self._head_size = len(self.log.head())
        self._sent_dropped = 0
        self._sent_skipped: Counter[str] = Counter()

    @staticmethod
    def create(path: str, version: str = __version__) -> None:
        """Before forking: the empty document every worker appends to."""
        log = HarLog(version)
        with open(path, "wb") as f:
            f.write(log.head() + log.tail())

    def write_batch(self, records: Sequence[FlowRecord]) -> None:
        entries = self.log.encode((record_to_json(r) for r in records), RecordBodies(records))
        self._append(entries)

    def write_dropped(self, count: int) -> None:
        self.log.dropped += count
        self._append([])

    def close(self) -> None:
        pass  # every batch was written whole; nothing is held open

    def _append(self, entries: list[bytes]) -> None:
        dropped = self.log.dropped - self._sent_dropped
        skipped = self.log.skipped - self._sent_skipped
        if not entries and not dropped and not skipped:
            return
        try:
            with locked(self.path), open(self.path, "r+b") as f:
                self._splice(f, entries, dropped, skipped)
        except (OSError, ValueError) as e:
            self.lost += len(entries)
            self._report(e)
            return
        self._sent_dropped += dropped
        self._sent_skipped += skipped

    def _splice(
        self, f: IO[bytes], entries: list[bytes], dropped: int, skipped: Counter[str]
    ) -> None:
        """Lock held: put ``entries`` where the tail starts and write the new tail."""
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - _TAIL_WINDOW)
        f.seek(start)
        end = f.read()
        at = end.rfind(TAIL_MARK)
        if at < 0 or start + at < self._head_size:
            raise ValueError("not a tapproxy HAR document (no tail found)")
        counts = json.loads(end[at + len(TAIL_MARK) :].rstrip()[:-2])
        total = Counter(counts.get("skipped", {})) + skipped
        tail_at = start + at
        first = tail_at == self._head_size  # no entry yet
        chunk = b"".join((b"\n" if first and k == 0 else b",\n") + e for k, e in enumerate(entries))
        f.seek(tail_at)
        f.write(chunk + tail_bytes(int(counts.get("dropped", 0)) + dropped, total))
        f.truncate()
        f.flush()

    def _report(self, e: Exception) -> None:
        self.errors += 1
        if self.errors == 1:
            why = reason(e) if isinstance(e, OSError) else str(e)
            print(cannot_write(self.path, why), file=sys.stderr)
