"""The JSON Lines flow log (schema in docs/flow-log.md).

Runs on the dispatcher's writer thread. A write error (disk full, path gone)
is reported once on stderr and counted; the proxy keeps proxying.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from proxy.sinks.record import SCHEMA_VERSION, FlowRecord


class JsonlSink:
    def __init__(self, path: str) -> None:
        self.path = path
        self.errors = 0
        self._file: IO[str]
        if path == "-":
            self._file = sys.stdout
        else:
            self._file = open(path, "a", encoding="utf-8", buffering=1024 * 1024)  # noqa: SIM115

    def _write(self, lines: list[str]) -> None:
        try:
            self._file.write("".join(lines))
            self._file.flush()
        except OSError as e:
            self.errors += 1
            if self.errors == 1:
                print(f"tapproxy: cannot write flow log {self.path}: {e}", file=sys.stderr)

    def write_batch(self, records: Sequence[FlowRecord]) -> None:
        dumps = json.dumps
        self._write([dumps(r.to_json(), separators=(",", ":")) + "\n" for r in records])

    def write_dropped(self, count: int) -> None:
        rec: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "kind": "dropped",
            "time": time.time(),
            "count": count,
            "error": "flow log queue overflowed; records were dropped",
        }
        self._write([json.dumps(rec) + "\n"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.flush()
        if self._file is not sys.stdout:
            self._file.close()
