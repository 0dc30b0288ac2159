"""Flood guards for HTTP/2 clients: frames that cost us work and the client nothing.

Each kind is counted over a sliding window of ``WINDOW`` seconds; a client
over a limit gets GOAWAY with ENHANCE_YOUR_CALM (RFC 9113 §7) and its
connection ends, while every other client is served as before:

* ``RST_STREAM``: "rapid reset" (CVE-2023-44487): open a stream, reset it,
  repeat, so that the proxy starts work (and upstream connections) for
  requests nobody waits for;
* ``PING`` and ``SETTINGS``: each must be answered (CVE-2019-9512, -9515),
  so a flood of them makes us write without the client reading;
* empty ``DATA`` and ``PRIORITY`` frames (CVE-2019-9518, -9513): work for
  nothing.

CONTINUATION floods (CVE-2024-27316) are bounded by h2 itself: a header
block may span at most 64 frames and decodes to at most
``MAX_HEADER_LIST_SIZE``; beyond, a connection error. docs/limits.md lists
the numbers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import Enum

import h2.events as ev

WINDOW = 10.0  # seconds


class Flood(Enum):
    RESET = "RST_STREAM"
    PING = "PING"
    SETTINGS = "SETTINGS"
    EMPTY = "empty DATA or PRIORITY"


LIMITS = {Flood.RESET: 200, Flood.PING: 100, Flood.SETTINGS: 100, Flood.EMPTY: 1000}


class FloodGuard:
    """Counts a client's costly frames; ``count`` says when a limit is passed."""

    __slots__ = ("clock", "seen")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.seen: dict[Flood, deque[float]] = {}

    def count(self, kind: Flood) -> bool:
        """One more frame of ``kind``: True when the client is over its limit."""
        now = self.clock()
        times = self.seen.get(kind)
        if times is None:
            times = self.seen[kind] = deque()
        times.append(now)
        while times and times[0] < now - WINDOW:
            times.popleft()
        return len(times) > LIMITS[kind]


def flood_kind(event: object) -> Flood | None:
    """Which flood guard a client's frame counts toward, if any."""
    kind = type(event)
    if kind is ev.StreamReset:
        return Flood.RESET
    if kind is ev.PingReceived:
        return Flood.PING
    if kind is ev.RemoteSettingsChanged:
        return Flood.SETTINGS
    if kind is ev.PriorityUpdated:
        return Flood.EMPTY
    if kind is ev.DataReceived and not event.data and event.stream_ended is None:  # type: ignore[attr-defined]
        return Flood.EMPTY
    return None
