"""tune(): what every proxied socket gets; TCP_NODELAY comes from the event loop."""

from __future__ import annotations

import asyncio
import socket

from proxy.server.transport import WRITE_HIGH_WATER, tune


def test_both_ends_of_a_proxied_connection_have_nodelay_and_our_high_water() -> None:
    """tune() no longer sets TCP_NODELAY itself: asyncio's transports must have it."""
    seen: list[asyncio.Transport] = []
    both = asyncio.Event()

    class Tuned(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            tune(transport)
            seen.append(transport)
            if len(seen) == 2:
                both.set()

    async def run() -> list[tuple[int, int]]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Tuned, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client, _ = await asyncio.wait_for(
            loop.create_connection(Tuned, "127.0.0.1", port), timeout=5
        )
        await asyncio.wait_for(both.wait(), timeout=5)  # the accepted side comes later
        out = []
        for transport in seen:
            sock = transport.get_extra_info("socket")
            out.append(
                (
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
                    transport.get_write_buffer_limits()[1],
                )
            )
        client.close()
        server.close()
        await server.wait_closed()
        return out

    result = asyncio.run(run())
    assert len(result) == 2
    assert all(nodelay and high == WRITE_HIGH_WATER for nodelay, high in result)
