"""A WebSocket message as its own record (kind ``websocket_message``), through
``Hook(MESSAGE)``: the same path gRPC messages take to the sinks."""

from __future__ import annotations

from proxy.flow.hooks import HookKind
from proxy.flow.record import FlowRecord
from proxy.flow.wsinfo import WS_MESSAGE_KIND, WsMessage
from proxy.layers.commands import Hook
from proxy.layers.websocket.direction import Msg
from proxy.layers.websocket.wssetup import WsSetup
from proxy.rules.wsrules import DOWNSTREAM, UPSTREAM, WsVerdict


def message_hook(setup: WsSetup, up: bool, msg: Msg, verdict: WsVerdict | None, at: float) -> Hook:
    """The record of a message that went on (or was dropped), as a hook."""
    message = WsMessage(
        setup.flow,
        UPSTREAM if up else DOWNSTREAM,
        msg.index,
        "text" if msg.text else "binary",
        msg.size,
        msg.wire,
        msg.frames,
        msg.compressed,
        bytes(msg.preview[: setup.preview]),
        msg.truncated,
        None if verdict is None else verdict.action,
        () if verdict is None else tuple(verdict.rules),
        at,
        bytes(msg.preview) if setup.keep else None,
    )
    return record_hook(setup, message, f"{message.direction}:{msg.index}")


def record_hook(setup: WsSetup, message: WsMessage, suffix: str) -> Hook:
    record = FlowRecord(
        id=f"{setup.flow}:{suffix}",
        kind=WS_MESSAGE_KIND,
        mode=setup.mode,
        start=message.at,
        end=message.at,
        client=("", 0),  # the connection's record has the addresses
        server=None,
        message=message,
    )
    return Hook(HookKind.MESSAGE, record)
