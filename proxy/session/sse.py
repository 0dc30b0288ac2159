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

import re
from urllib.parse import urlsplit

from proxy.flow.hooks import HookKind
from proxy.flow.record import FlowRecord
from proxy.flow.wsinfo import SSE_EVENT_KIND, SseEvent
from proxy.http1.events import KIND_CHUNKED, KIND_CLOSE, Fields, ResponseHead
from proxy.layers.commands import Command, Hook
from proxy.rules.sserules import SsePlan, SseVerdict
from proxy.session.config import SessionConfig
from proxy.session.exchange import Exchange

_FIELD_CAP = 1024  # bytes of a field name, id or event type kept


def is_event_stream(fields: Fields) -> bool:
    for name, value in fields:
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"text/event-stream"
    return False


def with_rules(o: SseObserver, ex: Exchange, head: ResponseHead, config: SessionConfig) -> None:
    """Event rules for this response, when there are any and it can take them:
    its body streams (no HTTP body rule or gRPC edit holds it) and its length
    is not fixed by a Content-Length (rewriting changes it)."""
    rules = ex.ruleset  # the rules the request was planned with, else those in force
    if rules is None and config.rules is not None:
        rules = config.rules()
    if rules is None or not rules.sse_rules or ex.target is None:
        return
    if ex.resp_buffer is not None or ex.grpc_edit is not None:
        return
    if head.framing.kind not in (KIND_CHUNKED, KIND_CLOSE):
        return
    plan = rules.sse_for(ex.target.host, urlsplit(ex.url).path or "/")
    if plan is not None:
        o.edit(plan, config.max_body)


class SseObserver:
    """Events of one response; ``feed`` the server's body bytes as they come.

    With ``edit`` (event rules), each event's bytes are held until it ends
    (at most ``limit`` of them: a longer event passes as it comes, unseen by
    the rules) and ``take`` gives what goes to the client: the event as it
    came, rewritten, or nothing.
    """

    __slots__ = (
        "_cap", "_cr", "_data", "_event", "_field", "_has_data", "_held", "_id", "_in_value",
        "_line_size", "_passing", "_retry", "_size", "_space", "_value", "_verdict", "events",
        "flow", "index", "limit", "mode", "out", "plan", "preview",
    )  # fmt: skip

    def __init__(self, flow: str, mode: str, preview: int) -> None:
        self.flow = flow
        self.mode = mode
        self.preview = preview
        self._cap = preview  # bytes of an event's data kept (all of it, to edit)
        self.plan: SsePlan | None = None
        self.limit = 0
        self.out: list[bytes] = []  # edited bytes for the client
        self._held = bytearray()  # the current event's bytes, while rules may change it
        self._passing = False  # the current event is too long to hold
        self._verdict: SseVerdict | None = None
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

    def edit(self, plan: SsePlan, limit: int) -> None:
        """Event rules apply from now on (before any body byte)."""
        self.plan, self.limit, self._cap = plan, limit, max(limit, self.preview)

    def feed(self, data: bytes, at: float) -> None:
        start = seg = 0
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
                break
            end = min(ends)
            self._take(data[start:end])
            self._cr = data[end] == 0x0D
            if self._line(at) and self.plan is not None:
                self._ended(data[seg : end + 1])
                seg = end + 1
            start = end + 1
        if self.plan is not None and seg < n:
            self._hold(data[seg:])

    def _hold(self, rest: bytes) -> None:
        if self._passing:
            self.out.append(rest)
            return
        self._held += rest
        if len(self._held) > self.limit:  # too long to hold: it goes as it comes
            self._passing = True
            self.out.append(bytes(self._held))
            self._held.clear()

    def _ended(self, tail: bytes) -> None:
        """An event (or a blank line) ended with ``tail``: what goes to the client."""
        raw = bytes(self._held) + tail
        self._held.clear()
        verdict, self._verdict = self._verdict, None
        if self._passing:
            self._passing = False
            self.out.append(tail)
        elif verdict is None or (verdict.data is None and not verdict.drop):
            self.out.append(raw)
        elif not verdict.drop:
            assert verdict.data is not None
            self.out.append(rewritten(raw, verdict.data))

    def take(self) -> bytes:
        """The bytes for the client so far (with event rules)."""
        data = b"".join(self.out)
        self.out.clear()
        return data

    def rest(self) -> bytes:
        """The end of the stream: an unfinished event goes as it was."""
        data = self.take() + bytes(self._held)
        self._held.clear()
        return data

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
        room = (self._cap if self._field == b"data" else _FIELD_CAP) - len(self._value)
        if room > 0:
            self._value += piece[:room]

    def _line(self, at: float) -> bool:
        """A line ended; True when it was blank (the event ends)."""
        name, value, size = bytes(self._field), bytes(self._value), self._line_size
        in_value = self._in_value
        self._reset_line()
        if not name and not in_value:  # a blank line: dispatch
            self._dispatch(at)
            return True
        if not name:  # ":comment"
            return False
        if name == b"data":
            if self._has_data:
                self._size += 1
                if len(self._data) < self._cap:
                    self._data += b"\n"
            self._has_data = True
            self._size += size if in_value else 0
            self._data += value[: max(0, self._cap - len(self._data))]
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\x00" not in value:
            self._id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)
        return False

    def _dispatch(self, at: float) -> None:
        if self._has_data:
            kind = self._event or "message"
            action = None
            if self.plan is not None and not self._passing:
                self._verdict = self.plan.decide(kind, self._data.decode("utf-8", "replace"))
                action = self._verdict.action
            event = SseEvent(
                self.flow,
                self.index,
                self._id,
                kind,
                bytes(self._data[: self.preview]),
                self._size,
                self._retry,
                action,
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


_LINES = re.compile(rb"\r\n|\r|\n")


def rewritten(raw: bytes, data: str) -> bytes:
    """An event with new data: its other lines as they were, then the data
    lines (one per line of ``data``), then the blank line that ends it."""
    lines = [line for line in _LINES.split(raw) if line]
    kept = [line for line in lines if line.split(b":", 1)[0] != b"data"]
    body = [b"data: " + part.encode("utf-8") for part in data.split("\n")]
    return b"".join(line + b"\n" for line in kept + body) + b"\n"
