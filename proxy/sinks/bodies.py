"""Writes captured body files (see ``proxy.session.capture``), on the writer thread.

Files are named ``<dir>/<flow id>.request.body`` and ``.response.body`` and
referenced from the flow record (``body_file``). Directories are created
0700: bodies can hold credentials. A write error is reported once.

A prepared sink (``proxy.sinks.dispatch.PreparedSink``): on the event loop it
picks the few records with bodies and keeps only their files to write, so
records do not cross to the writer thread (it is on whenever rules are
loaded, since rules may capture bodies).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from proxy.flow.record import FlowRecord
from proxy.oserrors import reason

#: One file to write: (directory, path, contents).
BodyFile = tuple[str, str, bytes]


class BodyFileSink:
    label = "body_files"
    unit = ("body file", "body files")

    def __init__(self) -> None:
        self.errors = 0
        self.written = 0
        self.lost = 0  # body files that could not be written

    def prepare(self, records: Sequence[FlowRecord]) -> list[BodyFile]:
        """The files the records' captured bodies go to (pure: runs on the event loop)."""
        files: list[BodyFile] = []
        for r in records:
            bodies = r.bodies
            if bodies is None or not bodies.files:
                continue
            for request, data in ((True, bodies.request), (False, bodies.response)):
                if data is not None:
                    files.append((bodies.directory, bodies.path(r.id, request), data))
        return files

    def write_prepared(self, files: list[BodyFile]) -> None:
        for directory, path, data in files:
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                self.written += 1
            except OSError as e:
                self.errors += 1
                self.lost += 1
                if self.errors == 1:
                    print(
                        f"tapproxy: cannot write body file {path}: {reason(e)}; body files that "
                        "cannot be written are counted as lost (SIGUSR1 stats, exit summary)",
                        file=sys.stderr,
                    )

    def write_batch(self, records: Sequence[FlowRecord]) -> None:
        self.write_prepared(self.prepare(records))

    def write_dropped(self, count: int) -> None:
        pass

    def close(self) -> None:
        pass
