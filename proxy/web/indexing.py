"""Indexing the flow store's waiting rows off the data path, a slice per loop turn.

Why flows wait: ``proxy.web.storewait``. They are indexed when someone
looks: an API request (the server's middleware awaits ``sync`` before the
handler, so every answer covers every flow finished before it), or a
browser that starts watching with a backlog (``kick``). One task does it,
a slice of rows per turn of the event loop, so the proxy's own traffic
keeps moving while thousands of flows are indexed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Indexer:
    """Runs ``index(slice)`` until it takes nothing, in one task at a time."""

    def __init__(self, index: Callable[[int], int], slice_rows: int) -> None:
        self._index = index
        self._slice = slice_rows
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> asyncio.Task[None] | None:
        """Index what waits in the background (on the running loop); the task
        doing it. Without a running loop (the dispatcher's last batch, at
        exit) it is done at once."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            while self._index(self._slice):
                pass
            return None
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return self._task

    async def sync(self) -> None:
        """Return once nothing waits (what arrived meanwhile included)."""
        task = self.kick()
        if task is not None:
            await asyncio.shield(task)

    async def _run(self) -> None:
        while self._index(self._slice):
            await asyncio.sleep(0)
