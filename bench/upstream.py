"""A fast benchmark upstream: GET /bytes/N streams N bytes; POST /sink reads all.

Raw asyncio Protocol, no framework, so that it is not the bottleneck:
``python bench/upstream.py PORT`` (0 picks a port; the port is printed).
``python bench/upstream.py PORT CERT KEY`` serves the same over TLS (the
fallback HTTPS origin of bench/tls_bench.py when nginx is missing).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import sys

BLOCK = memoryview(bytes(range(256)) * 4096)  # 1 MiB
_REQ = re.compile(rb"^(\w+) /(\w+)/?(\d*)")


class Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.sink_left = 0
        self.sending = 0
        self.paused = asyncio.Event()
        self.paused.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=4 * 1024 * 1024)

    def pause_writing(self) -> None:
        self.paused.clear()

    def resume_writing(self) -> None:
        self.paused.set()

    def data_received(self, data: bytes) -> None:
        if self.sink_left:
            take = min(self.sink_left, len(data))
            self.sink_left -= take
            data = data[take:]
            if not self.sink_left:
                self._reply(b"ok")
            if not data:
                return
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            m = _REQ.match(head)
            if m is None:
                assert self.transport is not None
                self.transport.close()
                return
            _, what, n = m.groups()
            if what == b"bytes":
                asyncio.get_running_loop().create_task(self._send(int(n or 0)))
            elif what == b"sink":
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                take = min(length, len(self.buf))
                self.buf = self.buf[take:]
                self.sink_left = length - take
                if not self.sink_left:
                    self._reply(b"ok")
            else:
                self._reply(b"x" * 100)

    def _reply(self, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async def _send(self, n: int) -> None:
        t = self.transport
        assert t is not None
        t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
        while n > 0 and not t.is_closing():
            await self.paused.wait()
            chunk = BLOCK[: min(n, len(BLOCK))]
            t.write(chunk)
            n -= len(chunk)


async def main(port: int, cert: str | None = None, key: str | None = None) -> None:
    loop = asyncio.get_running_loop()
    context = None
    if cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=4096, ssl=context)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(int(args[0]) if args else 0, *args[1:3]))
