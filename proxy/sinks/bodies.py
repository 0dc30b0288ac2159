"""Writes captured body files (see ``proxy.session.capture``), on the writer thread.

Files are named ``<dir>/<flow id>.request.body`` and ``.response.body`` and
referenced from the flow record (``body_file``). Directories are created
0700: bodies can hold credentials. A write error is reported once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from proxy.sinks.record import FlowRecord


class BodyFileSink:
    def __init__(self) -> None:
        self.errors = 0
        self.written = 0

    def write_batch(self, records: Sequence[FlowRecord]) -> None:
        for r in records:
            bodies = r.bodies
            if bodies is None:
                continue
            for request, data in ((True, bodies.request), (False, bodies.response)):
                if data is None:
                    continue
                try:
                    os.makedirs(bodies.directory, mode=0o700, exist_ok=True)
                    path = bodies.path(r.id, request)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    self.written += 1
                except OSError as e:
                    self.errors += 1
                    if self.errors == 1:
                        print(f"tapproxy: cannot write body file: {e}", file=sys.stderr)

    def write_dropped(self, count: int) -> None:
        pass

    def close(self) -> None:
        pass
