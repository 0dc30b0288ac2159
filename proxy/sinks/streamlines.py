"""Console lines (``-v``) for WebSocket messages and server-sent events.

One line each, as they happen: ``ws 397e3bec00000001 > #0 text 12b "hello"``
(``>`` client to server, ``<`` server to client), ``sse ... #3 tick 5b "..."``.
"""

from __future__ import annotations

import time

from proxy.flow.record import FlowRecord
from proxy.flow.wsinfo import WsMessage

_PREVIEW = 60


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n}b"
    for unit in ("k", "m", "g"):
        n_f = n / 1024
        if n_f < 1024 or unit == "g":
            return f"{n_f:.1f}{unit}"
        n = int(n_f)
    return f"{n}b"


def _quoted(data: bytes, size: int, text: bool) -> str:
    if not text:
        return data[:16].hex() + ("..." if size > 16 else "")
    shown = data.decode("utf-8", "replace")[:_PREVIEW]
    more = "..." if size > len(shown.encode("utf-8")) else ""
    return repr(shown) + more


def stream_line(r: FlowRecord) -> str:
    """The console line of a ``websocket_message`` or ``sse_event`` record."""
    m = r.message
    ts = time.strftime("%H:%M:%S", time.localtime(r.start))
    if isinstance(m, WsMessage):
        arrow = ">" if m.direction == "upstream" else "<"
        what = f" [{m.action}]" if m.action else ""
        cut = " (truncated)" if m.truncated else ""
        body = _quoted(m.preview, m.size, m.opcode == "text")
        return (
            f"{ts} ws {m.flow} {arrow} #{m.index} {m.opcode} {human_size(m.size)} {body}{cut}{what}"
        )
    assert m is not None
    what = f" [{m.action}]" if m.action else ""
    ident = f" id={m.id}" if m.id is not None else ""
    return (
        f"{ts} sse {m.flow} #{m.index} {m.event}{ident} {human_size(m.size)} "
        f"{_quoted(m.data, m.size, True)}{what}"
    )
