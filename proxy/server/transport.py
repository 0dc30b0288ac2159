"""Socket settings every proxied connection gets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

# Above this many bytes queued for a socket, reading from the other side
# pauses (backpressure); below a quarter of it, reading resumes.
WRITE_HIGH_WATER = 256 * 1024


def tune(transport: asyncio.Transport) -> None:
    """The write high-water mark.

    TCP_NODELAY (a small head goes out at once) is already set: asyncio's
    socket transports set it on every TCP socket, and so does uvloop. Setting
    it again cost a syscall per socket, which this VM makes dear (scenario d
    opens two sockets per connection; b, two per request).
    """
    transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)


def reset(transport: asyncio.Transport) -> None:
    """Abort with an RST, not a FIN: ``abort()`` alone only closes the socket.

    SO_LINGER with a zero timeout makes close() discard unsent data and send
    RST (RFC 9293 §3.10.7.1), which is what a peer must see for a reset.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
