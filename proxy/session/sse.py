"""Server-sent events seen in a ``text/event-stream`` response, one record each.

The response streams to the client as it comes (nothing here holds it);
``SseObserver`` reads a copy of the server's bytes as the WHATWG HTML
standard's event-stream interpretation says (§9.2.6): lines end with CRLF,
LF or CR; ``field: value`` (one optional space after the colon); ``data``
lines join with LF; ``event``, ``id`` and ``retry`` set the event's type,
id and reconnection time; a line starting with ``:`` is a comment; a blank
line dispatches the event. Only the first ``preview`` bytes of an event's
data are kept, and a line is never held beyond that, so an endless line
costs nothing. Each dispatched event becomes a ``sse_event`` record through
``Hook(MESSAGE)``, before the response's own record.
"""

from __future__ import annotations

from proxy.flow.hooks import HookKind
from proxy.flow.record import FlowRecord
from proxy.flow.wsinfo import SSE_EVENT_KIND, SseEvent
from proxy.http1.events import Fields
from proxy.layers.commands import Command, Hook

_FIELD_CAP = 1024  # bytes of a field name, id or event type kept


def is_event_stream(fields: Fields) -> bool:
    for name, value in fields:
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"text/event-stream"
    return False


class SseObserver:
    """Events of one response; ``feed`` the server's body bytes as they come."""

    __slots__ = (
        "_cr", "_data", "_event", "_field", "_has_data", "_id", "_in_value", "_line_size",
        "_retry", "_size", "_space", "_value", "events", "flow", "index", "mode", "preview",
    )  # fmt: skip

    def __init__(self, flow: str, mode: str, preview: int) -> None:
        self.flow = flow
        self.mode = mode
        self.preview = preview
        self.index = 0
        self.events: list[SseEvent] = []  # dispatched, not yet taken
        self._id: str | None = None  # the last event id persists (§9.2.6)
        self._reset_event()
        self._reset_line()
        self._cr = False  # the previous byte was CR: a following LF ends nothing

    def _reset_event(self) -> None:
        self._event = ""
        self._data = bytearray()
        self._size = 0
        self._has_data = False
        self._retry: int | None = None

    def _reset_line(self) -> None:
        self._field = bytearray()
        self._value = bytearray()
        self._in_value = False
        self._space = False
        self._line_size = 0

    def feed(self, data: bytes, at: float) -> None:
        start = 0
        n = len(data)
        while start < n:
            if self._cr and data[start] == 0x0A:  # CRLF: the line already ended
                start += 1
                self._cr = False
                continue
            self._cr = False
            cr, lf = data.find(b"\r", start), data.find(b"\n", start)
            ends = [p for p in (cr, lf) if p >= 0]
            if not ends:
                self._take(data[start:])
                return
            end = min(ends)
            self._take(data[start:end])
            self._cr = data[end] == 0x0D
            self._line(at)
            start = end + 1

    def _take(self, piece: bytes) -> None:
        """Part of a line: the field name up to ':', then (the start of) the value."""
        if not self._in_value:
            colon = piece.find(b":")
            if colon < 0:
                self._field += piece[: max(0, _FIELD_CAP - len(self._field))]
                return
            self._field += piece[: max(0, min(colon, _FIELD_CAP - len(self._field)))]
            self._in_value = True
            self._space = True  # one space after the colon is not part of the value
            piece = piece[colon + 1 :]
        if self._space and piece:
            self._space = False
            if piece.startswith(b" "):
                piece = piece[1:]
        self._line_size += len(piece)
        room = self._cap() - len(self._value)
        if room > 0:
            self._value += piece[:room]

    def _cap(self) -> int:
        return self.preview if self._field == b"data" else _FIELD_CAP

    def _line(self, at: float) -> None:
        name, value, size = bytes(self._field), bytes(self._value), self._line_size
        in_value = self._in_value
        self._reset_line()
        if not name and not in_value:  # a blank line: dispatch
            self._dispatch(at)
        elif not name:  # ":comment"
            return
        elif name == b"data":
            if self._has_data:
                self._size += 1
                if len(self._data) < self.preview:
                    self._data += b"\n"
            self._has_data = True
            self._size += size if in_value else 0
            self._data += value[: max(0, self.preview - len(self._data))]
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\x00" not in value:
            self._id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)

    def _dispatch(self, at: float) -> None:
        if self._has_data:
            event = SseEvent(
                self.flow,
                self.index,
                self._id,
                self._event or "message",
                bytes(self._data),
                self._size,
                self._retry,
                None,
                at,
            )
            self.events.append(event)
            self.index += 1
        self._reset_event()

    def drain(self, out: list[Command]) -> None:
        """Each dispatched event's record, as a ``Hook(MESSAGE)``."""
        for e in self.events:
            record = FlowRecord(
                id=f"{self.flow}:event:{e.index}",
                kind=SSE_EVENT_KIND,
                mode=self.mode,
                start=e.at,
                end=e.at,
                client=("", 0),  # the response's record has the addresses
                server=None,
                message=e,
            )
            out.append(Hook(HookKind.MESSAGE, record))
        self.events.clear()
