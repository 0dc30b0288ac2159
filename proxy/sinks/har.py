"""The HAR 1.2 export (``--har FILE``), written so the file is always valid.

``HarLog`` knows the byte layout of the document::

    {"log":{"version":"1.2","creator":{...},"pages":[],"entries":[
    {entry},
    {entry}
    ],"_tapproxy":{"dropped":0,"skipped":{"tunnel":2}}}}

The head is written once; every batch seeks back to where the tail starts,
writes ``,entry...`` and a fresh tail, and flushes. So between batches the
file is a complete HAR document, and a crash (even SIGKILL) loses only the
flows still queued in memory. The tail carries counts that change over time
(records the dispatcher dropped, non-HTTP flows skipped), which is why it is
rewritten rather than only moved. ``tapproxy convert`` writes the same bytes
sequentially through the same ``HarLog``; the mapping of a record to an
entry is ``har_entry`` (proxy/sinks/har_entry.py), shared by both.

With ``-`` (stdout) nothing can be rewritten: the head and entries stream
out and the tail is written at shutdown.

Like the flow log, the sink runs on the dispatcher's writer thread, and a
write error is reported once on stderr and counted while the proxy goes on.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from proxy import __version__
from proxy.flow.jsonview import record_to_json
from proxy.flow.record import FlowRecord
from proxy.oserrors import reason
from proxy.sinks.har_bodies import BodySource, RecordBodies
from proxy.sinks.har_entry import har_entry
from proxy.sinks.har_grpc import GrpcMessages
from proxy.sinks.har_ws import WsMessages
from proxy.sinks.jsonenc import dumps as _dumps


class HarLog:
    """The bytes of a HAR document built entry by entry, and its running counts."""

    def __init__(self, version: str = __version__) -> None:
        self.version = version
        self.entries = 0
        self.dropped = 0
        self.skipped: Counter[str] = Counter()
        self.invalid = 0  # records that could not be mapped (malformed input)
        self.ws = WsMessages()  # WebSocket messages waiting for their connection's entry
        self.grpc = GrpcMessages()  # gRPC messages waiting for their call's entry
        self.last_error: str | None = None

    def head(self) -> bytes:
        creator = _dumps({"name": "tapproxy", "version": self.version})
        return b'{"log":{"version":"1.2","creator":' + creator + b',"pages":[],"entries":['

    def tail(self) -> bytes:
        return tail_bytes(self.dropped, self.skipped)

    def add(self, records: Iterable[dict[str, Any]], bodies: BodySource | None = None) -> bytes:
        """The bytes that append these records' entries (b"" when none is HTTP);
        ``bodies`` holds the captured bodies (``--capture-bodies``)."""
        before = self.entries
        parts = self.encode(records, bodies)
        return b"".join((b",\n" if before + k else b"\n") + part for k, part in enumerate(parts))

    def encode(
        self, records: Iterable[dict[str, Any]], bodies: BodySource | None = None
    ) -> list[bytes]:
        """Each HTTP record's entry as JSON, without separators; the counts go up."""
        parts: list[bytes] = []
        for rec in records:
            try:
                if rec.get("kind") == "websocket_message":
                    self.ws.add(rec)
                    continue
                if rec.get("kind") == "grpc_message":
                    self.grpc.add(rec)
                    continue
                entry = har_entry(rec, bodies)
                if entry is not None and rec.get("kind") == "websocket":
                    self.ws.attach(rec, entry)
                if entry is not None and "grpc" in rec:
                    self.grpc.attach(rec, entry)
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                # one malformed record must not cost the batch (or the conversion)
                self.invalid += 1
                self.last_error = f"record {rec.get('id')!r}: {type(e).__name__}: {e}"
                continue
            if entry is None:
                self.skipped[str(rec.get("kind"))] += 1
                continue
            parts.append(_dumps(entry))
            self.entries += 1
        return parts


#: Where the tail starts: the end of the entries array and the custom counts.
TAIL_MARK = b'\n],"_tapproxy":'


def cannot_write(path: str, why: str) -> str:
    """The one console notice of a HAR file that cannot be written (issue 14 item 5)."""
    return (
        f"tapproxy: cannot write HAR file {path}: {why}; entries that do not "
        "reach it are counted as lost (SIGUSR1 stats, exit summary)"
    )


def tail_bytes(dropped: int, skipped: Mapping[str, int]) -> bytes:
    """The document's end: the counts that change over time, then the closing brackets."""
    custom = {"dropped": dropped, "skipped": dict(sorted(skipped.items()))}
    return TAIL_MARK + _dumps(custom) + b"}}\n"


class HarSink:
    """Keeps ``path`` a valid HAR document after every batch (see module doc)."""

    label = "har"
    unit = ("HAR entry", "HAR entries")

    def __init__(self, path: str, version: str = __version__) -> None:
        self.path = path
        self.errors = 0
        self.lost = 0  # HTTP entries that could not be written
        self.log = HarLog(version)
        self._file: IO[bytes] | None = None
        self._tail_at = 0  # file offset where the tail starts
        self._stream = path == "-"
        self._open()

    def _report(self, e: OSError) -> None:
        self.errors += 1
        if self.errors == 1:
            print(cannot_write(self.path, reason(e)), file=sys.stderr)

    def _open(self) -> bool:
        if self._file is not None:
            return True
        head = self.log.head()
        try:
            if self._stream:
                self._file = sys.stdout.buffer
                self._file.write(head)
            else:
                f = open(self.path, "wb")  # noqa: SIM115 - kept open for the proxy's life
                self._file = f
                f.write(head + self.log.tail())
            self._file.flush()
        except OSError as e:
            self._report(e)
            return False
        self._tail_at = len(head)
        return True

    def _append(self, chunk: bytes) -> bool:
        if not self._open():
            return False
        f = self._file
        assert f is not None
        if self._stream:
            f.write(chunk)
        else:
            f.seek(self._tail_at)
            f.write(chunk + self.log.tail())
            f.truncate()
        f.flush()
        self._tail_at += len(chunk)
        return True

    def _write(self, chunk: bytes, entries: int) -> None:
        try:
            written = self._append(chunk)
        except OSError as e:
            # The tail offset did not move: the next batch overwrites whatever
            # part of this one reached the disk, so the file heals itself.
            self._report(e)
            written = False
        if not written:
            self.lost += entries
            self.log.entries -= entries  # so the next entry's comma is right

    def write_batch(self, records: Sequence[FlowRecord]) -> None:
        before, invalid = self.log.entries, self.log.invalid
        chunk = self.log.add((record_to_json(r) for r in records), RecordBodies(records))
        if self.log.invalid > invalid and invalid == 0:
            print(f"tapproxy: HAR: cannot map {self.log.last_error}", file=sys.stderr)
        self._write(chunk, self.log.entries - before)

    def write_dropped(self, count: int) -> None:
        self.log.dropped += count
        if not self._stream:
            self._write(b"", 0)

    def close(self) -> None:
        f = self._file
        if f is None:
            return
        with contextlib.suppress(OSError):
            if self._stream:
                f.write(self.log.tail())
                f.flush()
            else:
                f.close()
        self._file = None
