"""The ceiling for a Python forward proxy: a bare asyncio byte relay.

    python bench/bare_relay.py [PORT]      # 0 or nothing picks a port

Prints ``bare_relay listening at 127.0.0.1:PORT`` on stderr. On a new client
connection it reads just enough of the first request line
(``GET http://host:port/... HTTP/1.1``) to find the upstream, connects, and
from then on relays bytes both ways with asyncio Protocols and write-buffer
backpressure. No parsing, no logging, no per-request work: later requests on
the same connection go to the same upstream untouched. Whatever a real proxy
does on top of this is its overhead.
"""

from __future__ import annotations

import asyncio
import re
import sys

_TARGET = re.compile(rb"^[A-Z]+ http://([^/:\s]+)(?::(\d+))?[/\s]")
HIGH_WATER = 1 << 20


class Half(asyncio.Protocol):
    def __init__(self, peer: Half | None = None) -> None:
        self.peer, self.got_eof, self.buf = peer, False, b""
        self.transport: asyncio.Transport = None  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(HIGH_WATER)
        if self.peer is not None:  # we are the upstream side: pair up, flush, go
            self.peer.peer = self
            self.transport.write(self.peer.buf)
            self.peer.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.transport.write(data)
            return
        self.buf += data
        if b"\n" not in self.buf:
            return
        m = _TARGET.match(self.buf)
        if m is None:
            self.transport.close()
            return
        self.transport.pause_reading()
        host, port = m.group(1).decode(), int(m.group(2) or 80)
        task = asyncio.ensure_future(
            asyncio.get_running_loop().create_connection(lambda: Half(self), host, port)
        )
        task.add_done_callback(lambda t: t.exception() and self.transport.close())

    def eof_received(self) -> bool:
        self.got_eof = True
        if self.peer is None or self.peer.got_eof:
            self.connection_lost(None)
            return False
        self.peer.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport.close()
        if self.peer is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.resume_reading()


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Half, "127.0.0.1", port, backlog=4096)
    print(
        f"bare_relay listening at 127.0.0.1:{server.sockets[0].getsockname()[1]}",
        file=sys.stderr,
        flush=True,
    )
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
