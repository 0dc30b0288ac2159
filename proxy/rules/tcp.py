"""Sans-IO TCP fault transformers (Toxiproxy's toxics, plus byte replace).

A ``Transformer`` handles one direction of one connection. The IO layer
tells it what happened (``start``, ``feed(now, data)``, ``eof``, ``tick``)
and gets back instructions to execute:

* ``Send(at, data)``: write ``data`` to the destination at time ``at``;
* ``Shutdown(at)``: half-close toward the destination (forward the EOF);
* ``Close(at)``: close the whole connection gracefully;
* ``Reset(at)``: abort the whole connection with an RST;
* ``Wake(at)``: call ``tick(at)`` then (a timer; bytes are being held).

``Send``/``Shutdown``/``Close`` come in non-decreasing ``at`` order across
calls, so the IO layer may queue them and sleep until each one is due;
``Reset`` is meant to be executed at its time even if sends are queued, and
``Wake`` is an independent timer. Times are seconds on the caller's clock
(``loop.time()``). After a close or reset, the transformer emits nothing more.

Stages run in a fixed order within a rule (replace, limit_data, slicer,
bandwidth, latency, slow_close; timeout and reset_peer act on the
connection) and rules chain in file order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Send:
    at: float
    data: bytes


@dataclass(frozen=True, slots=True)
class Shutdown:
    at: float


@dataclass(frozen=True, slots=True)
class Close:
    at: float


@dataclass(frozen=True, slots=True)
class Reset:
    at: float


@dataclass(frozen=True, slots=True)
class Wake:
    at: float


Instruction = Send | Shutdown | Close | Reset | Wake
Random = Callable[[], float]


class Stage:
    """One toxic. Default behaviour: pass everything through, keeping order."""

    def __init__(self) -> None:
        self.last = 0.0  # time of the latest instruction emitted, to keep order

    def start(self, now: float) -> list[Instruction]:
        return []

    def data(self, at: float, data: bytes) -> list[Instruction]:
        self.last = max(at, self.last)
        return [Send(self.last, data)]

    def eof(self, at: float) -> list[Instruction]:
        return [Shutdown(max(at, self.last))]

    def close(self, at: float) -> list[Instruction]:
        return [Close(max(at, self.last))]

    def tick(self, now: float) -> list[Instruction]:
        return []


class Latency(Stage):
    """Delay each chunk by ``ms`` ± ``jitter_ms`` (never reordering chunks)."""

    def __init__(self, ms: float, jitter_ms: float, rng: Random) -> None:
        super().__init__()
        self.ms, self.jitter, self.rng = ms / 1000, jitter_ms / 1000, rng

    def data(self, at: float, data: bytes) -> list[Instruction]:
        delay = max(0.0, self.ms + (2 * self.rng() - 1) * self.jitter)
        self.last = max(at + delay, self.last)
        return [Send(self.last, data)]

    def eof(self, at: float) -> list[Instruction]:
        return [Shutdown(max(at + self.ms, self.last))]


class Bandwidth(Stage):
    """Pace bytes at ``rate`` bytes/s, in pieces of at most 1/10 s worth."""

    def __init__(self, rate: int) -> None:
        super().__init__()
        self.rate, self.piece = rate, max(1, rate // 10)

    def data(self, at: float, data: bytes) -> list[Instruction]:
        out: list[Instruction] = []
        for i in range(0, len(data), self.piece):
            piece = data[i : i + self.piece]
            start = max(at, self.last)
            out.append(Send(start, piece))
            self.last = start + len(piece) / self.rate
        return out


class Slicer(Stage):
    """Split chunks into slices of ``average`` ± ``variation`` bytes, ``delay`` apart."""

    def __init__(self, average: int, variation: int, delay_ms: float, rng: Random) -> None:
        super().__init__()
        self.average, self.variation, self.delay, self.rng = (
            average,
            variation,
            delay_ms / 1000,
            rng,
        )

    def data(self, at: float, data: bytes) -> list[Instruction]:
        out: list[Instruction] = []
        t, i = max(at, self.last), 0
        while i < len(data):
            size = self.average + round((2 * self.rng() - 1) * self.variation)
            size = max(1, size)
            out.append(Send(t, data[i : i + size]))
            i += size
            self.last = t
            t += self.delay
        return out


class LimitData(Stage):
    """Let ``limit`` bytes through, then close the connection."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.left = limit
        self.closed = False

    def start(self, now: float) -> list[Instruction]:
        self.closed = self.left == 0
        return [Close(now)] if self.closed else []

    def data(self, at: float, data: bytes) -> list[Instruction]:
        if self.closed:
            return []
        if len(data) < self.left:
            self.left -= len(data)
            return super().data(at, data)
        head, self.left, self.closed = data[: self.left], 0, True
        return [*(super().data(at, head) if head else []), Close(max(at, self.last))]


class SlowClose(Stage):
    """Delay the close (or half-close) by ``delay_ms``."""

    def __init__(self, delay_ms: float) -> None:
        super().__init__()
        self.delay = delay_ms / 1000

    def eof(self, at: float) -> list[Instruction]:
        return [Shutdown(max(at, self.last) + self.delay)]

    def close(self, at: float) -> list[Instruction]:
        return [Close(max(at, self.last) + self.delay)]


class Timeout(Stage):
    """Drop all data; close after ``ms`` (``0``: never close, the peer hangs)."""

    def __init__(self, ms: float) -> None:
        super().__init__()
        self.ms = ms / 1000

    def start(self, now: float) -> list[Instruction]:
        return [Close(now + self.ms)] if self.ms > 0 else []

    def data(self, at: float, data: bytes) -> list[Instruction]:
        return []

    def eof(self, at: float) -> list[Instruction]:
        return []


class ResetPeer(Stage):
    """Reset the connection ``timeout_ms`` after it starts."""

    def __init__(self, timeout_ms: float) -> None:
        super().__init__()
        self.timeout = timeout_ms / 1000

    def start(self, now: float) -> list[Instruction]:
        return [Reset(now + self.timeout)]


class Replace(Stage):
    """Regex replace on the byte stream, matches allowed to span reads.

    Semantics: the last ``window`` bytes received are held back until more
    data arrives, the stream ends, or ``flush_ms`` pass without data; a match
    is replaced once it starts at least ``window`` bytes before the end of
    what has arrived (or at a flush). So any match of at most ``window`` bytes
    is found even when split across reads, and up to ``window`` already-sent
    bytes stay visible to lookbehind assertions. A match that needs more
    than ``window`` bytes, or one cut by a flush, may be missed. Empty
    matches are ignored.
    """

    def __init__(
        self, regex: re.Pattern[bytes], template: bytes, window: int, flush_ms: float
    ) -> None:
        super().__init__()
        self.regex, self.template, self.window = regex, template, window
        self.flush = flush_ms / 1000
        self.context = b""  # bytes already passed on, for lookbehind
        self.held = b""
        self.deadline = 0.0

    def data(self, at: float, data: bytes) -> list[Instruction]:
        out = self._scan(at, self.held + data, final=False)
        if self.held:
            self.deadline = at + self.flush
            out.append(Wake(self.deadline))
        return out

    def tick(self, now: float) -> list[Instruction]:
        if self.held and now >= self.deadline:
            return self._scan(now, self.held, final=True)
        return []

    def eof(self, at: float) -> list[Instruction]:
        return [*self._scan(at, self.held, final=True), *super().eof(at)]

    def close(self, at: float) -> list[Instruction]:
        return [*self._scan(at, self.held, final=True), *super().close(at)]

    def _scan(self, at: float, pending: bytes, final: bool) -> list[Instruction]:
        buf, start = self.context + pending, len(self.context)
        limit = len(buf) if final else len(buf) - self.window
        parts: list[bytes] = []
        pos = cut = start
        stopped = False
        for m in self.regex.finditer(buf, start):
            if m.end() == m.start():
                continue
            if not final and (m.start() >= limit or m.end() == len(buf)):
                cut, stopped = max(pos, min(m.start(), limit)), True
                break
            parts += (buf[pos : m.start()], m.expand(self.template))
            pos = m.end()
        if not stopped:
            cut = max(pos, limit)
        parts.append(buf[pos:cut])
        self.context = buf[max(0, cut - self.window) : cut]
        self.held = buf[cut:]
        data = b"".join(parts)
        return super().data(at, data) if data else []


class Transformer:
    """One direction of one connection: a chain of stages."""

    def __init__(self, stages: Sequence[Stage] = ()) -> None:
        self.stages = tuple(stages)
        self.done = False

    @property
    def passthrough(self) -> bool:
        """No toxics: the IO layer may skip the transformer entirely."""
        return not self.stages

    def start(self, now: float) -> list[Instruction]:
        out: list[Instruction] = []
        for i, stage in enumerate(self.stages):
            out += self._down(i + 1, stage.start(now))
        return out  # may schedule a future close or reset; data flows until then

    def feed(self, now: float, data: bytes) -> list[Instruction]:
        if self.done:
            return []
        if not self.stages:
            return [Send(now, data)]
        return self._finish(self._down(0, [Send(now, data)]))

    def eof(self, now: float) -> list[Instruction]:
        return [] if self.done else self._finish(self._down(0, [Shutdown(now)]))

    def tick(self, now: float) -> list[Instruction]:
        if self.done:
            return []
        out: list[Instruction] = []
        for i, stage in enumerate(self.stages):
            out += self._down(i + 1, stage.tick(now))
        return self._finish(out)

    def _down(self, index: int, instructions: list[Instruction]) -> list[Instruction]:
        """Pass instructions through stages ``index`` onwards."""
        for stage in self.stages[index:]:
            nxt: list[Instruction] = []
            for ins in instructions:
                if isinstance(ins, Send):
                    nxt += stage.data(ins.at, ins.data)
                elif isinstance(ins, Shutdown):
                    nxt += stage.eof(ins.at)
                elif isinstance(ins, Close):
                    nxt += stage.close(ins.at)
                else:
                    nxt.append(ins)
            instructions = nxt
        return instructions

    def _finish(self, out: list[Instruction]) -> list[Instruction]:
        """Stop after the first close: nothing is sent on a closed connection."""
        for i, ins in enumerate(out):
            if isinstance(ins, Close | Reset | Shutdown):
                self.done = True
                return out[: i + 1] + [w for w in out[i + 1 :] if isinstance(w, Reset)]
        return out
