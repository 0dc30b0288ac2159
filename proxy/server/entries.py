"""The layers of a new SOCKS5 or transparent connection (``ListenerContext.entry``).

The sans-IO side is ``proxy.layers.entry``; what only the shell can know is
found here: a transparent connection's original destination, read from the
accepted socket (``proxy.server.transparent``).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from proxy.flow.record import Address
from proxy.layers.entry import EntryLayers
from proxy.server.context import EntryFactory, ListenerContext
from proxy.server.transparent import original_destination


def socks5(ctx: ListenerContext, client: Address, transport: asyncio.Transport) -> EntryLayers:
    return EntryLayers(ctx.session, client, ctx.intercept_settings)


def transparent(tproxy: bool = False) -> EntryFactory:
    """``tproxy``: the listener has IP_TRANSPARENT; a local address is the destination."""

    def make(ctx: ListenerContext, client: Address, transport: asyncio.Transport) -> EntryLayers:
        sock = transport.get_extra_info("socket")
        config = ctx.session
        dst, redirected = original_destination(sock)  # asyncio's TransportSocket
        if not redirected and not tproxy:  # connected to the listener itself: a loop
            config = replace(config, own_addresses=config.own_addresses | {dst})
        return EntryLayers(config, client, ctx.intercept_settings, dst)

    return make
