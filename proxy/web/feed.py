"""Live updates for the browsers watching (``GET /api/updates``, docs/api.md).

``LiveFeed`` is a hook subscriber: at ``STARTED`` a flow shows in the list as
``live``; the store sink hands it the finished flows' summaries (``rows``);
the breakpoints tell it which flows are held and which went on. With no
browser connected every entry point returns at once, so the proxy pays one
attribute check per flow for the UI.

Messages are gathered and sent at most every ``BATCH_SECONDS``, as one JSON
text (an array when there is more than one). A browser that cannot keep up
is not queued for: while its previous send is still going, what it misses is
dropped, and it gets ``{"type": "resync"}`` to fetch the list again. So the
proxy's memory does not grow with a slow or stalled browser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any, Protocol

from proxy.flow.hooks import HoldSwitch, HookKind, LiveFlow
from proxy.flow.record import FlowRecord
from proxy.sinks.jsonenc import dumps
from proxy.web.rows import Summary
from proxy.web.summary import split_url

#: The longest a change waits before it goes to the browsers.
BATCH_SECONDS = 0.1
#: Messages gathered for one batch at most; beyond it the browsers resync.
MAX_BATCH = 5000
#: The notices the feed wants while a browser watches.
_NOTICES = frozenset({HookKind.STARTED})


class Socket(Protocol):
    """What the feed needs of a browser's WebSocket (aiohttp's ``WebSocketResponse``)."""

    @property
    def closed(self) -> bool: ...

    async def send_str(self, data: str, compress: int | None = None) -> None: ...


class _Watcher:
    __slots__ = ("busy", "lagged", "socket")

    def __init__(self, socket: Socket) -> None:
        self.socket = socket
        self.busy = False
        self.lagged = False


def live_summary(flow: LiveFlow, now: float) -> Summary:
    """A flow that has just started, as the list shows it until it ends."""
    head = flow.request
    url = flow.url
    if "://" in url:
        host, path = split_url(url)
    else:  # origin-form (reverse, intercepted): the host from Host or :authority
        authority = next(
            (v.decode("latin-1") for k, v in head.fields if k.lower() in (b"host", b":authority")),
            "",
        )
        host, path = split_url(authority)[0], url
    version = head.version.decode("latin-1")
    return {
        "id": flow.id,
        "start": now,
        "state": "live",
        "held": None,
        "protocol": "HTTP/2" if version.startswith("2") else "HTTP/1.1",
        "kind": "http",
        "method": head.method.decode("latin-1"),
        "url": url,
        "host": host,
        "path": path,
        "status": None,
        "type": None,
        "size": None,
        "duration": None,
        "error": None,
        "marked": False,
        "rules": [],
        "changed": False,
    }


class LiveFeed:
    """Started flows are noticed only while a browser watches: the feed arms
    ``STARTED`` on the shared ``HoldSwitch`` with its first watcher and
    disarms it with its last, so no browser means no notice at all."""

    holds: frozenset[HookKind] = frozenset()

    def __init__(self, switch: HoldSwitch) -> None:
        self.switch = switch
        self._watchers: dict[int, _Watcher] = {}
        self._pending: list[dict[str, Any]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._overflow = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def watched(self) -> bool:
        return bool(self._watchers)

    @property
    def kinds(self) -> frozenset[HookKind]:
        return self.switch.notify & _NOTICES

    def add(self, socket: Socket) -> None:
        self._watchers[id(socket)] = _Watcher(socket)
        self.switch.notify |= _NOTICES

    def remove(self, socket: Socket) -> None:
        self._watchers.pop(id(socket), None)
        if not self._watchers:
            self.switch.notify -= _NOTICES

    # -- what happens -------------------------------------------------------------------
    def on_hook(self, kind: HookKind, flow: object, resume: object) -> bool:
        if self._watchers and kind is HookKind.STARTED and not isinstance(flow, FlowRecord):
            self.publish({"type": "flow", "flow": live_summary(flow, time.time())})  # type: ignore[arg-type]
        return False

    def rows(self, summaries: Iterable[Summary]) -> None:
        """Finished flows (from the store sink, on the loop)."""
        if self._watchers:
            for s in summaries:
                self.publish({"type": "flow", "flow": {**s, "state": "done", "held": None}})

    def publish(self, message: dict[str, Any]) -> None:
        if not self._watchers:
            return
        if len(self._pending) >= MAX_BATCH:
            self._overflow = True
            return
        self._pending.append(message)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(BATCH_SECONDS, self._flush)

    # -- sending ------------------------------------------------------------------------
    def _flush(self) -> None:
        self._timer = None
        pending, self._pending = self._pending, []
        if self._overflow:
            self._overflow = False
            pending = [{"type": "resync"}]
        if not pending:
            return
        text = dumps(pending[0] if len(pending) == 1 else pending).decode()
        for watcher in list(self._watchers.values()):
            if watcher.socket.closed:
                self.remove(watcher.socket)
            elif watcher.busy:
                watcher.lagged = True  # it missed this batch: it refetches later
            else:
                task = asyncio.ensure_future(self._send(watcher, text))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _send(self, watcher: _Watcher, text: str) -> None:
        watcher.busy = True
        try:
            await watcher.socket.send_str(text)
            if watcher.lagged:
                watcher.lagged = False
                await watcher.socket.send_str('{"type":"resync"}')
        except (ConnectionError, RuntimeError):
            self.remove(watcher.socket)
        finally:
            watcher.busy = False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()
