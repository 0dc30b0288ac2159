"""Keeping whole bodies for body files (``--capture-bodies``, rules' ``log.capture``)
and for a recording (``--save``, ``proxy.replay``).

The data path only appends to a per-body buffer, capped per body; the total
written to disk is bounded by a budget reserved here, on the event loop, so
a record never names a file that will not be written. The writer thread
(``proxy.sinks.bodies``) writes the files. A recording without body files
keeps bodies with an empty directory: no file, no budget (only the per-body
cap), the bytes reach the recording sink through the record.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.flow.record import CapturedBodies


class CaptureBudget:
    """Bytes of body files that may still be written (shared by all sessions)."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.refused = 0

    def take(self, n: int) -> bool:
        if n > self.left:
            self.refused += 1
            return False
        self.left -= n
        return True


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    directory: str | None = None  # --capture-bodies DIR (None: only rules capture)
    max_body: int = 10 * 1024 * 1024  # per body; beyond, the file holds the first part
    budget: CaptureBudget | None = None
    record: bool = False  # --save: every exchange keeps its bodies for the recording

    @property
    def on(self) -> bool:
        """Whether exchanges start with a capture."""
        return self.directory is not None or self.record


class BodyCapture:
    """Both bodies of one exchange, as far as the per-body cap allows."""

    __slots__ = ("directory", "every", "limit", "request", "response")

    def __init__(self, directory: str, limit: int, every: bool = False) -> None:
        self.directory = directory
        self.limit = limit
        self.every = every  # a rule asked: write bodies even when the preview holds them
        self.request = bytearray()
        self.response = bytearray()

    def add(self, data: bytes, request: bool) -> None:
        buf = self.request if request else self.response
        room = self.limit - len(buf)
        if room > 0:
            buf += data[:room]

    def finish(
        self, sizes: tuple[int, int], preview: int, budget: CaptureBudget | None
    ) -> CapturedBodies | None:
        """Decide which bodies get a file: longer than the preview (or all, for
        a rule), and only while the total budget lasts."""
        kept: list[bytes | None] = []
        for buf, size in ((self.request, sizes[0]), (self.response, sizes[1])):
            wanted = size > 0 and (self.every or size > preview)
            if wanted and (budget is None or not self.directory or budget.take(len(buf))):
                kept.append(bytes(buf))
            else:
                kept.append(None)
        if kept == [None, None]:
            return None
        return CapturedBodies(
            self.directory, kept[0], kept[1], sizes[0] > len(self.request),
            sizes[1] > len(self.response),
        )  # fmt: skip
