"""WebSocket messages in HAR entries, as Chrome DevTools writes them.

DevTools gives a WebSocket's entry ``"_resourceType": "websocket"`` and
``"_webSocketMessages": [{"type": "send"|"receive", "time": SECONDS,
"opcode": 1|2, "data": TEXT}]`` (binary data in base64). Message records
come before their connection's record (docs/flow-log.md), so ``WsMessages``
keeps each open connection's messages until its entry is built: at most
``MAX_MESSAGES`` and ``MAX_BYTES`` of data per connection (the rest is
counted in ``_tapproxy.websocket_messages_omitted``), and what is left
unclaimed is bounded by ``MAX_OPEN`` connections.
"""

from __future__ import annotations

import base64
import calendar
import time
from collections import OrderedDict
from typing import Any

Json = dict[str, Any]
MAX_MESSAGES = 10_000
MAX_BYTES = 16 * 1024 * 1024
MAX_OPEN = 1024


def _seconds(iso: str) -> float:
    """The record's ISO 8601 UTC time as seconds since the epoch."""
    whole, _, rest = iso.partition(".")
    frac = float("0." + rest[:6]) if rest else 0.0
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + frac


class _Pending:
    __slots__ = ("bytes", "messages", "omitted")

    def __init__(self) -> None:
        self.messages: list[Json] = []
        self.bytes = 0
        self.omitted = 0


class WsMessages:
    """``websocket_message`` records held for their connection's HAR entry."""

    def __init__(self) -> None:
        self._open: OrderedDict[str, _Pending] = OrderedDict()

    def add(self, rec: Json) -> None:
        m = rec["websocket_message"]
        flow = str(m["flow"])
        pending = self._open.get(flow)
        if pending is None:
            pending = self._open[flow] = _Pending()
            if len(self._open) > MAX_OPEN:
                self._open.popitem(last=False)
        preview = m["preview"]
        data = str(preview["data"])
        if len(pending.messages) >= MAX_MESSAGES or pending.bytes + len(data) > MAX_BYTES:
            pending.omitted += 1
            return
        pending.bytes += len(data)
        pending.messages.append(
            {
                "type": "send" if m["direction"] == "upstream" else "receive",
                "time": round(_seconds(str(rec["time"])), 6),
                "opcode": 1 if m["opcode"] == "text" else 2,
                "data": data if m["opcode"] == "text" else _base64(data, preview["encoding"]),
            }
        )

    def attach(self, rec: Json, entry: Json) -> None:
        """Put the connection's messages on its entry (a ``websocket`` record)."""
        pending = self._open.pop(str(rec.get("id")), None)
        entry["_resourceType"] = "websocket"
        entry["_webSocketMessages"] = pending.messages if pending else []
        if pending and pending.omitted:
            entry["_tapproxy"]["websocket_messages_omitted"] = pending.omitted


def _base64(data: str, encoding: str) -> str:
    if encoding == "base64":
        return data
    return base64.b64encode(data.encode("utf-8")).decode("ascii")
