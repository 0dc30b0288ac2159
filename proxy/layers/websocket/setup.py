"""Whether a ``101`` starts a WebSocket we can read, and with what (RFC 6455 §4).

The proxy relays the handshake as the peers wrote it; afterwards the
exchange that switched says whether the upgrade was to ``websocket`` and
which extensions the server accepted. Only permessage-deflate is known: a
connection with another extension (it could give meaning to the reserved
bits) stays an opaque tunnel.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from proxy.flow.hooks import ScriptedMessage
from proxy.http1.events import Fields
from proxy.layers.commands import Conn
from proxy.layers.websocket.deflate import extension_names, negotiated
from proxy.layers.websocket.layer import WebSocketLayer
from proxy.layers.websocket.replayed import ReplayedServer
from proxy.layers.websocket.wssetup import WsSetup
from proxy.rules.wsrules import WsPlan
from proxy.session.config import SessionConfig
from proxy.session.exchange import Exchange


def _values(fields: Fields, name: bytes) -> str:
    return ", ".join(v.decode("latin-1") for k, v in fields if k.lower() == name)


def websocket_setup(ex: Exchange, config: SessionConfig) -> WsSetup | None:
    """The layer's setup when ``ex`` switched to a WebSocket we can decode, else None."""
    head = ex.response
    if head is None or head.status != 101 or not ex.upgrade:
        return None
    upgrade = [p.strip().lower() for p in _values(ex.request.fields, b"upgrade").split(",")]
    if "websocket" not in upgrade:
        return None
    extensions = _values(head.fields, b"sec-websocket-extensions")
    deflate = negotiated(extensions) if extensions else None
    if any(name != "permessage-deflate" for name in extension_names(extensions)):
        return None
    return WsSetup(
        ex.id,
        config.mode,
        extensions,
        deflate,
        config.websocket,
        config.max_body,
        config.preview_bytes,
        config.capture.max_body if config.capture.record else 0,  # --save keeps payloads
        ex.received_url,
        config.hooks.switch,
    )


def websocket_plan(ex: Exchange, config: SessionConfig) -> WsPlan | None:
    """The message rules for this connection, by the upgrade's host and path as
    the client asked for them (before a rule's map_remote, as HTTP rules match)."""
    rules = ex.ruleset
    if rules is None and config.rules is not None:
        rules = config.rules()
    if rules is None or ex.target is None:
        return None
    asked = urlsplit(ex.received_url)
    return rules.ws_for(asked.hostname or ex.target.host, asked.path or "/")


def websocket_layer(
    ex: Exchange | None,
    config: SessionConfig,
    server: Conn,
    replay: tuple[ScriptedMessage, ...] | None = None,
) -> WebSocketLayer | None:
    """The layer for a 101 that upgraded to WebSocket (None: not one, or an
    extension we do not read: the connection stays an opaque tunnel);
    ``replay``: no server, this recorded session answers (server replay)."""
    setup = websocket_setup(ex, config) if ex is not None else None
    if setup is None or ex is None:
        return None
    replayed = None
    if replay is not None:
        replayed = ReplayedServer(replay, config.websocket.max_message)
    return WebSocketLayer(server, setup, config.clock, websocket_plan(ex, config), replayed)
