"""A WebSocket message held at a breakpoint, and what waits behind it.

While a ``HoldSwitch`` arms ``HookKind.WS_MESSAGE`` (the web UI's
breakpoints), each direction holds its messages whole (up to ``--max-body``;
a longer one streams past, as for rules) and offers each, after the rules,
as a holdable hook. Until its verdict comes the connection is stopped: both
sides stop being read (``PauseReading``), and whatever had already been read
(the rest of the same read, later reads in flight) waits here in order, so
messages keep their order both ways and memory stays bounded by what was in
flight. The verdict goes on (the message as it was, or edited, or dropped)
or kills the connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.flow.hooks import Kill, LiveMessage, MessageEdit, Proceed, Verdict
from proxy.layers.websocket.direction import Item, Msg
from proxy.layers.websocket.frames import WsError
from proxy.rules.wsrules import WsVerdict


@dataclass
class Held:
    """The message waiting for its verdict, and what was read after it."""

    up: bool
    msg: Msg
    payload: bytes
    rules: WsVerdict | None  # what the rules made of it first
    rest: list[Item]  # the rest of the read the message ended in
    error: WsError | None  # the violation that ended that read, if any
    later: list[tuple[bool, bytes]] = field(default_factory=list)  # reads since, in order


def live_message(flow: str, url: str, up: bool, msg: Msg, payload: bytes) -> LiveMessage:
    direction = "upstream" if up else "downstream"
    return LiveMessage(f"{flow}:{direction}:{msg.index}", flow, url, up, msg.text, payload)


def verdict_of(held: Held, verdict: Verdict) -> WsVerdict | None:
    """The rules' verdict with the breakpoint's edit on top; None: kill."""
    if isinstance(verdict, Kill):
        return None
    base = held.rules or WsVerdict()
    edit = verdict.edit if isinstance(verdict, Proceed) else None
    if not isinstance(edit, MessageEdit):
        return base
    if edit.drop:
        base.drop = True
    elif edit.payload is not None and edit.payload != held.payload:
        base.payload = edit.payload
    return base
