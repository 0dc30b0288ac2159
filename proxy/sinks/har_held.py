"""Messages held for their flow's HAR entry, bounded.

Message records (gRPC, WebSocket) come before their flow's record
(docs/flow-log.md), so the HAR sink keeps each open flow's messages until
its entry is built: at most ``MAX_MESSAGES`` and ``MAX_BYTES`` per flow
(the rest only counted, in ``omitted``), and at most ``MAX_OPEN`` flows
left unclaimed (the oldest is dropped first).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

MAX_MESSAGES = 10_000
MAX_BYTES = 16 * 1024 * 1024
MAX_OPEN = 1024


class Held:
    """One flow's messages: ``(direction, value)`` pairs, in order."""

    __slots__ = ("bytes", "messages", "omitted")

    def __init__(self) -> None:
        self.messages: list[tuple[str, Any]] = []
        self.bytes = 0
        self.omitted = 0

    def keep(self, direction: str, value: Any, size: int) -> None:
        if len(self.messages) >= MAX_MESSAGES or self.bytes + size > MAX_BYTES:
            self.omitted += 1
            return
        self.bytes += size
        self.messages.append((direction, value))


class HeldByFlow:
    def __init__(self) -> None:
        self._open: OrderedDict[str, Held] = OrderedDict()

    def held(self, flow: str) -> Held:
        """The flow's held messages (a new, empty set for a flow not seen yet)."""
        held = self._open.get(flow)
        if held is None:
            held = self._open[flow] = Held()
            if len(self._open) > MAX_OPEN:
                self._open.popitem(last=False)
        return held

    def claim(self, flow: str) -> Held:
        """The flow's messages, for its entry: none are held any more."""
        return self._open.pop(flow, None) or Held()
