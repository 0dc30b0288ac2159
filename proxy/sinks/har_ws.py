"""WebSocket messages in HAR entries, as Chrome DevTools writes them.

DevTools gives a WebSocket's entry ``"_resourceType": "websocket"`` and
``"_webSocketMessages": [{"type": "send"|"receive", "time": SECONDS,
"opcode": 1|2, "data": TEXT}]`` (binary data in base64). ``WsMessages``
holds each open connection's messages until its entry is built, bounded as
``har_held`` says (what was left out is counted in
``_tapproxy.websocket_messages_omitted``).
"""

from __future__ import annotations

import base64
import calendar
import time
from typing import Any

from proxy.sinks.har_held import HeldByFlow

Json = dict[str, Any]


def _seconds(iso: str) -> float:
    """The record's ISO 8601 UTC time as seconds since the epoch."""
    whole, _, rest = iso.partition(".")
    frac = float("0." + rest[:6]) if rest else 0.0
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + frac


class WsMessages:
    """``websocket_message`` records held for their connection's HAR entry."""

    def __init__(self) -> None:
        self._flows = HeldByFlow()

    def add(self, rec: Json) -> None:
        m = rec["websocket_message"]
        preview = m["preview"]
        data = str(preview["data"])
        direction = "send" if m["direction"] == "upstream" else "receive"
        message = {
            "type": direction,
            "time": round(_seconds(str(rec["time"])), 6),
            "opcode": 1 if m["opcode"] == "text" else 2,
            "data": data if m["opcode"] == "text" else _base64(data, preview["encoding"]),
        }
        self._flows.held(str(m["flow"])).keep(direction, message, len(data))

    def attach(self, rec: Json, entry: Json) -> None:
        """Put the connection's messages on its entry (a ``websocket`` record)."""
        held = self._flows.claim(str(rec.get("id")))
        entry["_resourceType"] = "websocket"
        entry["_webSocketMessages"] = [message for _, message in held.messages]
        if held.omitted:
            entry["_tapproxy"]["websocket_messages_omitted"] = held.omitted


def _base64(data: str, encoding: str) -> str:
    if encoding == "base64":
        return data
    return base64.b64encode(data.encode("utf-8")).decode("ascii")
