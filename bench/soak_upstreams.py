"""The soak's upstreams, a child process (``python -m bench.soak --serve-upstreams DIR``).

The aiohttp test app of ``tests/support/upstreams.py`` over HTTP and over
HTTPS (a throwaway test CA, ``tests/support/certs.py``), and three faulty
raw servers: ``reset`` (RST before the response, or in the middle of its
body), ``garbage`` (bytes that are not HTTP, or a broken chunked body) and
``silent`` (reads the request, never answers). Their ports and the CA are
printed as one JSON line; SIGTERM stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import struct
from pathlib import Path


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _fault_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RST right after the request head, or after a response head and part of the body."""
    try:
        async with asyncio.timeout(30):
            head = await reader.readuntil(b"\r\n\r\n")
        if b" /mid" in head.split(b"\r\n", 1)[0]:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
            await writer.drain()
            await asyncio.sleep(0.02)
        _rst(writer)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        writer.close()


async def _fault_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Not HTTP at all, or a valid head followed by a broken chunked body."""
    try:
        async with asyncio.timeout(30):
            head = await reader.readuntil(b"\r\n\r\n")
            if b" /mid" in head.split(b"\r\n", 1)[0]:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n"
                )
            else:
                writer.write(b"\x16\x03\x01 this is not HTTP \x00\xff\r\n\r\n")
            await writer.drain()
            await reader.read()  # until the proxy gives up on us
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        pass
    finally:
        writer.close()


async def _fault_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the request and never answer (until the proxy closes, at most 60 s)."""
    try:
        async with asyncio.timeout(60):
            await reader.readuntil(b"\r\n\r\n")
            while await reader.read(65536):
                pass
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        pass
    finally:
        writer.close()


async def serve_upstreams(workdir: Path) -> None:
    from aiohttp import web

    from tests.support.certs import CertAuthority
    from tests.support.upstreams import make_app, start_https

    ca = CertAuthority.create(workdir / "testca")
    cert = ca.server_cert(["localhost", "127.0.0.1"], "upstream.pem")
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    https_runner, https_port = await start_https(make_app(), str(cert))
    servers = {
        name: await asyncio.start_server(handler, "127.0.0.1", 0)
        for name, handler in (
            ("reset", _fault_reset),
            ("garbage", _fault_garbage),
            ("silent", _fault_silent),
        )
    }
    ports = {name: s.sockets[0].getsockname()[1] for name, s in servers.items()}
    ports.update(http=http_port, https=https_port)
    print(json.dumps({"ports": ports, "ca": str(ca.cert_path)}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers.values():
        s.close()
    await https_runner.cleanup()
    await runner.cleanup()
