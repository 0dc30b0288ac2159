"""Asyncio clients that misbehave on purpose, for the fault tests.

They are plain asyncio streams (``exchange``, ``run_many`` and the read
helpers): a test states what to send, how to misbehave (stall, reset with
SO_LINGER 0, close early), and gets back what the proxy answered and how the
connection ended (``eof``, ``reset`` or ``timeout``), as an ``Outcome``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


# -- misbehaving clients ---------------------------------------------------------------------


@dataclass
class Outcome:
    """What a client got back, and how its connection ended."""

    data: bytes
    end: str  # "eof" (FIN), "reset" (RST) or "timeout" (still open)

    @property
    def status(self) -> int | None:
        if not self.data.startswith(b"HTTP/1.1 "):
            return None
        return int(self.data[9:12])

    @property
    def body(self) -> bytes:
        return self.data.partition(b"\r\n\r\n")[2]


def set_linger_zero(writer: asyncio.StreamWriter) -> None:
    """Make the next close send RST instead of FIN (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def read_to_end(
    reader: asyncio.StreamReader, timeout: float, limit: int = 1 << 26
) -> tuple[bytes, str]:
    """Everything until the peer closes (or ``timeout``): (data, how it ended)."""
    out = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while len(out) < limit:
                data = await reader.read(65536)
                if not data:
                    return bytes(out), "eof"
                out += data
    except (ConnectionResetError, BrokenPipeError):
        return bytes(out), "reset"
    except TimeoutError:
        return bytes(out), "timeout"
    return bytes(out), "limit"


async def read_until(reader: asyncio.StreamReader, n: int, timeout: float) -> bytes:
    """At least ``n`` bytes (fewer if the peer closes first)."""
    out = bytearray()
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(timeout):
            while len(out) < n:
                data = await reader.read(65536)
                if not data:
                    break
                out += data
    return bytes(out)


async def open_client(
    port: int, timeout: float = 10.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(timeout):
        return await asyncio.open_connection("127.0.0.1", port)


def close_writer(writer: asyncio.StreamWriter, reset: bool = False) -> None:
    if reset:
        with contextlib.suppress(OSError):
            set_linger_zero(writer)
    writer.close()


async def exchange(port: int, request: bytes, timeout: float = 10.0) -> Outcome:
    """Send ``request``, read until the proxy closes the connection."""
    reader, writer = await open_client(port)
    try:
        writer.write(request)
        data, end = await read_to_end(reader, timeout)
        return Outcome(data, end)
    finally:
        close_writer(writer)


def get(url: str, extra: bytes = b"") -> bytes:
    """A GET in absolute form for the proxy, asking it to close afterwards."""
    return b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n" % (url.encode(), extra)


async def run_many(n: int, concurrency: int, make: Callable[[int], Awaitable[T]]) -> list[T]:
    """``make(i)`` for i in range(n), at most ``concurrency`` at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> T:
        async with sem:
            return await make(i)

    return list(await asyncio.gather(*(one(i) for i in range(n))))
