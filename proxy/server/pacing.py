"""Writes that are due later: fault delays, bandwidth limits, TCP toxics.

Rules decide *when* bytes may leave (pure code, see ``proxy.rules.tcp`` and
the session's faults); ``DelayedWriter`` makes it happen on the event loop:
a queue of (due time, action) in order, one timer for the head of the queue.
While more than ``limit`` bytes wait, ``on_backlog(True)`` asks the caller
to stop reading the source, so a slowed connection holds bounded memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class DelayedWriter:
    def __init__(
        self,
        write: Callable[[bytes], None],
        on_backlog: Callable[[bool], None],
        limit: int = 1024 * 1024,
    ) -> None:
        self._write = write
        self._on_backlog = on_backlog
        self._limit = limit
        self.loop = asyncio.get_running_loop()
        self._queue: deque[tuple[float, bytes | Callable[[], None]]] = deque()
        self._queued = 0
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._blocked = False
        self.closed = False

    @property
    def busy(self) -> bool:
        return bool(self._queue)

    def write_at(self, at: float, data: bytes) -> None:
        """Write ``data`` at loop time ``at`` (now if past), after anything queued."""
        self._push(at, data)
        self._queued += len(data)
        if self._queued > self._limit and not self._blocked:
            self._blocked = True
            self._on_backlog(True)

    def call_at(self, at: float, action: Callable[[], None]) -> None:
        """Run ``action`` at ``at``, in order with the queued writes (EOF, close)."""
        self._push(at, action)

    def _push(self, at: float, item: bytes | Callable[[], None]) -> None:
        if self.closed:
            return
        at = max(at, self._last)
        self._last = at
        if not self._queue and at <= self.loop.time():
            self._run(item)
            return
        self._queue.append((at, item))
        if self._timer is None:
            self._timer = self.loop.call_at(self._queue[0][0], self._fire)

    def _run(self, item: bytes | Callable[[], None]) -> None:
        if isinstance(item, bytes):
            self._write(item)
        else:
            item()

    def _fire(self) -> None:
        self._timer = None
        now = self.loop.time()
        while self._queue and self._queue[0][0] <= now and not self.closed:
            _, item = self._queue.popleft()
            if isinstance(item, bytes):
                self._queued -= len(item)
            self._run(item)
        if self._blocked and self._queued <= self._limit // 2:
            self._blocked = False
            self._on_backlog(False)
        if self._queue and not self.closed:
            self._timer = self.loop.call_at(self._queue[0][0], self._fire)

    def cancel(self) -> None:
        """Drop everything queued (the connection is gone)."""
        self.closed = True
        self._queue.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
