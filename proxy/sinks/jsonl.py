"""The JSON Lines flow log (schema in docs/flow-log.md).

Records become lines on the event loop (``prepare``) and are written on the
dispatcher's writer thread (``write_prepared``). A write error (disk full, path
gone, unwritable path) is reported once on stderr and counted; the proxy keeps
proxying, and later batches try again (a file that could not be opened is
retried, so logging resumes once the cause is fixed).

With ``max_size`` the log rotates by size through ``RotatingFile``
(proxy/sinks/rotate.py): ``flows.jsonl`` -> ``flows.jsonl.1`` ... keeping
``keep`` old files, never splitting a record. ``-`` (stdout) never rotates.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from proxy.flow.record import SCHEMA_VERSION, FlowRecord
from proxy.oserrors import reason
from proxy.sinks.encoded import EncodedRecords
from proxy.sinks.jsonenc import dumps
from proxy.sinks.rotate import RotatingFile


class JsonlSink:
    label = "flow_log"
    unit = ("flow-log record", "flow-log records")

    def __init__(
        self,
        path: str,
        max_size: int | None = None,
        keep: int = 5,
        *,
        shared: bool = False,
        only: Callable[[FlowRecord], bool] | None = None,
        encoded: EncodedRecords | None = None,
    ) -> None:
        self.path = path
        self.encoded = encoded or EncodedRecords()  # shared with the web store's sink
        self.only = only  # --view-filter: only the records it keeps are logged
        self.max_size = max_size
        self.keep = keep
        self.shared = shared
        self.errors = 0  # failed writes (the first one is reported on stderr)
        self.lost = 0  # lines (records) that did not reach the log
        self._file: RotatingFile | None = None
        if path != "-":
            self._ensure_file()

    @property
    def rotations(self) -> int:
        return 0 if self._file is None else self._file.rotations

    def _report(self, e: OSError) -> None:
        self.errors += 1
        if self.errors == 1:
            print(
                f"tapproxy: cannot write flow log {self.path}: {reason(e)}; records that do not "
                "reach it are counted as lost (SIGUSR1 stats, exit summary)",
                file=sys.stderr,
            )

    def _ensure_file(self) -> RotatingFile | None:
        if self._file is None:
            try:
                self._file = RotatingFile(
                    self.path, self.max_size, self.keep, shared=self.shared and bool(self.max_size)
                )
            except OSError as e:
                self._report(e)
        return self._file

    def _write(self, lines: list[bytes]) -> None:
        try:
            if self.path == "-":
                sys.stdout.buffer.write(b"".join(lines))
                sys.stdout.flush()
                return
            f = self._ensure_file()
            if f is None:
                self.lost += len(lines)
                return
            f.write_lines(lines)
        except OSError as e:
            self.lost += len(lines)  # an upper bound: some may have been written
            self._report(e)

    def prepare(self, records: Sequence[FlowRecord]) -> list[bytes]:
        """One JSON line per record (pure: runs on the event loop)."""
        lines = self.encoded.lines(records)
        only = self.only
        if only is None:
            return [line + b"\n" for line in lines]
        return [line + b"\n" for r, line in zip(records, lines, strict=True) if only(r)]

    def write_prepared(self, lines: list[bytes]) -> None:
        self._write(lines)

    def write_batch(self, records: Sequence[FlowRecord]) -> None:
        self._write(self.prepare(records))

    def write_dropped(self, count: int) -> None:
        rec: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "kind": "dropped",
            "time": time.time(),
            "count": count,
            "error": "flow log queue overflowed; records were dropped",
        }
        self._write([dumps(rec) + b"\n"])

    def close(self) -> None:
        if self.path == "-":
            with contextlib.suppress(OSError):
                sys.stdout.flush()
        elif self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()  # kept: its counters stay readable
