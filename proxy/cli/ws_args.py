"""WebSocket options: the message limit and the inflation ratio cap (docs/websocket.md)."""

from __future__ import annotations

import argparse

from proxy.layers.websocket.settings import DEFAULT_MAX_MESSAGE, DEFAULT_RATIO, WsSettings
from proxy.sinks.rotate import size_arg


def add_ws_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("WebSocket (docs/websocket.md)")
    g.add_argument(
        "--ws-max-message",
        type=size_arg,
        default=DEFAULT_MAX_MESSAGE,
        metavar="SIZE",
        help="a WebSocket frame or message (inflated) longer than this closes the connection "
        "with 1009 (default 64M); messages over --max-body stream past the rules untouched",
    )
    g.add_argument(
        "--ws-inflate-ratio",
        type=int,
        default=DEFAULT_RATIO,
        metavar="N",
        help="a permessage-deflate message that inflates past 1 MiB and more than N times its "
        "compressed size closes the connection with 1009 (default 100)",
    )


def ws_settings(args: argparse.Namespace) -> WsSettings:
    return WsSettings(max(1, int(args.ws_max_message)), max(1, int(args.ws_inflate_ratio)))
