"""What the WebSocket layer knows of its connection from the handshake and the config."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.flow.hooks import HoldSwitch
from proxy.layers.websocket.deflate import Deflate
from proxy.layers.websocket.settings import WsSettings


@dataclass(frozen=True, slots=True)
class WsSetup:
    """What the layer knows of its connection from the handshake and the config."""

    flow: str  # the upgrade's flow id (message records point to it)
    mode: str
    extensions: str  # Sec-WebSocket-Extensions of the 101
    deflate: Deflate | None
    settings: WsSettings
    limit: int  # messages held whole for rules up to this (--max-body)
    preview: int  # bytes of each message kept for its record
    keep: int = 0  # bytes of each message kept whole for a recording (--save)
    url: str = ""  # the upgrade's URL as the client asked for it
    switch: HoldSwitch | None = None  # breakpoints on messages, armed at run time
