"""``--save FILE``: the recording sink.

A recording is JSON Lines, one flow per line, bodies in base64, written as a
sequence of gzip members: each batch the dispatcher hands over becomes one
member, compressed and flushed on the writer thread (zlib releases the GIL).
Why this shape (docs/replay.md):

* a gzip file may be any number of members, so ``zcat FILE`` and any gzip
  reader see plain JSON Lines, and the file only ever grows (append-only);
* every member is complete on disk once flushed, so the file can be read
  while the proxy writes it, and after a crash a reader keeps every complete
  member and drops at most the last, cut one (``proxy.replay.reader``);
* bodies are most of a recording and compress well (JSON, HTML); base64
  costs a third more before compression, much less after.

The first member holds a header line naming the format and its
``schema_version``; a file opened again gets another header (so two
recordings concatenated are still one). Lines are encoded on the event loop
in ``prepare`` like the flow log's (``proxy.sinks.dispatch``); the header is
written when the sink is made, so the file exists from the start. ``save``
filters (addons' ``save`` hook) may change or drop a flow there first.

A WebSocket's messages come as records of their own before the connection's
record (``Hook(MESSAGE)``); with ``--save`` they carry their payloads, and
the sink holds them by connection (``HeldMessages``) until the connection's
record is written with them, in order, as its ``messages``.
"""

from __future__ import annotations

import sys
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import IO

from proxy import __version__
from proxy.flow.record import FlowRecord
from proxy.flow.wsinfo import MESSAGE_KINDS
from proxy.oserrors import reason
from proxy.replay.format import RecordedFlow, RecordedMessage, flow_json, header_line
from proxy.replay.fromrecord import recorded, recorded_message
from proxy.sinks.jsonenc import dumps

#: An addon's ``save`` hook: the flow to write (changed or not), or None to leave it out.
SaveFilter = Callable[[RecordedFlow], RecordedFlow | None]

#: zlib level: 1 is several times faster than 6 on base64'd bodies and within ~10% in size.
LEVEL = 1


#: Held WebSocket messages: connections still open, and payload bytes per connection.
MAX_OPEN = 1024
MAX_HELD_BYTES = 256 * 1024 * 1024


class HeldMessages:
    """Each open WebSocket's messages until its record comes, bounded: past
    ``MAX_HELD_BYTES`` a connection's later messages are left out (counted in
    ``omitted``), past ``MAX_OPEN`` connections the oldest is dropped."""

    def __init__(self) -> None:
        self._open: OrderedDict[str, tuple[list[RecordedMessage], list[int]]] = OrderedDict()
        self.omitted = 0

    def keep(self, flow: str, message: RecordedMessage) -> None:
        held = self._open.get(flow)
        if held is None:
            held = self._open[flow] = ([], [0])
            if len(self._open) > MAX_OPEN:
                self._open.popitem(last=False)
        messages, size = held
        if size[0] + len(message.data) > MAX_HELD_BYTES:
            self.omitted += 1
            return
        size[0] += len(message.data)
        messages.append(message)

    def claim(self, flow: str, start: float) -> tuple[RecordedMessage, ...]:
        """The connection's messages, their times made offsets from ``start``."""
        held = self._open.pop(flow, None)
        if held is None:
            return ()
        return tuple(replace(m, offset=round(m.offset - start, 6)) for m in held[0])


def gzip_member(data: bytes, level: int = LEVEL) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    return c.compress(data) + c.flush()


class RecordingSink:
    label = "recording"
    unit = ("recorded flow", "recorded flows")

    def __init__(self, path: str, filters: Sequence[SaveFilter] = ()) -> None:
        self.path = path
        self.filters = list(filters)
        self.lost = 0
        self.written = 0
        self.held = HeldMessages()
        self._file: IO[bytes] | None = None
        self._failed = False
        self._open()  # the header now: the file is there (or the failure said) from the start

    # -- on the event loop ---------------------------------------------------------
    def prepare(self, records: Sequence[FlowRecord]) -> list[bytes]:
        lines = []
        for r in records:
            if r.kind in MESSAGE_KINDS:  # a message or an event: not a flow of its own
                kept = recorded_message(r)
                if kept is not None:
                    self.held.keep(*kept)
                continue
            messages = self.held.claim(r.id, r.start) if r.kind == "websocket" else ()
            flow: RecordedFlow | None = recorded(r, messages)
            for keep in self.filters:
                if flow is None:
                    break
                flow = keep(flow)
            if flow is not None:
                lines.append(dumps(flow_json(flow)) + b"\n")
        return lines

    # -- on the writer thread ------------------------------------------------------
    def _open(self) -> IO[bytes] | None:
        if self._file is None and not self._failed:
            try:
                self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
                header = dumps(header_line(time.time(), __version__)) + b"\n"
                self._file.write(gzip_member(header))
                self._file.flush()
            except OSError as e:
                self._fail(e)
        return self._file

    def _fail(self, e: OSError) -> None:
        if not self._failed:
            print(
                f"tapproxy: cannot write the recording {self.path}: {reason(e)}; flows not "
                "recorded are counted as lost (exit summary)",
                file=sys.stderr,
            )
        self._failed = True

    def write_prepared(self, lines: list[bytes]) -> None:
        if not lines:
            return
        f = self._open()
        if f is None:
            self.lost += len(lines)
            return
        try:
            f.write(gzip_member(b"".join(lines)))
            f.flush()
            self.written += len(lines)
        except OSError as e:
            self.lost += len(lines)
            self._fail(e)

    def write_batch(self, records: Sequence[FlowRecord]) -> None:
        self.write_prepared(self.prepare(records))

    def write_dropped(self, count: int) -> None:
        self.lost += count
        self.write_prepared([dumps({"type": "dropped", "count": count}) + b"\n"])
        self.written -= 1

    def close(self) -> None:
        if self._file is None and not self._failed:
            self._open()  # an empty recording is still a recording (its header)
        if self._file is not None:
            try:
                self._file.close()
            except OSError as e:
                self._fail(e)
            self._file = None
