"""The soak clients' raw HTTP/1.1: requests as bytes, responses read and checked.

``read_response`` reads one response (1xx skipped; Content-Length, chunked
or until close), hashing the body and keeping its start; a connection that
ends inside a response raises ``Incomplete``, anything malformed or not as
expected ``Unexpected`` (``expect``). ``pattern_sha`` is the SHA-256 of the
upstream's pattern body of a size (cached).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass

MiB = 1024 * 1024


class Unexpected(Exception):
    """A response the client did not expect (wrong status, body, size...)."""


class Incomplete(Exception):
    """The connection ended in the middle of a response."""


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise Unexpected(message)


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes
    size: int
    sha256: str


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        raise Incomplete(f"connection ended in the response head ({len(e.partial)} bytes)") from e
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise Unexpected(f"bad status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return int(parts[1]), headers


async def read_response(
    reader: asyncio.StreamReader,
    *,
    method: str = "GET",
    keep: int = 1 * MiB,
    piece: int = 65536,
    pace: float = 0.0,
) -> Resp:
    """One response; the body is hashed, and kept when not larger than ``keep``."""
    status, headers = await read_head(reader)
    while 100 <= status < 200:
        status, headers = await read_head(reader)
    h = hashlib.sha256()
    kept = bytearray()
    size = 0

    async def take(n: int | None) -> None:
        nonlocal size
        left = n
        while left is None or left > 0:
            data = await reader.read(piece if left is None else min(piece, left))
            if not data:
                if left is None:
                    return
                raise Incomplete(f"connection ended {left} bytes before the end of the body")
            h.update(data)
            if size < keep:
                kept.extend(data[: keep - size])
            size += len(data)
            if left is not None:
                left -= len(data)
            if pace:
                await asyncio.sleep(pace)

    try:
        if method == "HEAD" or status in (204, 304):
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                line = await reader.readuntil(b"\r\n")
                n = int(line.split(b";")[0].strip(), 16)
                if n == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass
                    break
                await take(n)
                if await reader.readexactly(2) != b"\r\n":
                    raise Unexpected("bad chunk terminator")
        elif "content-length" in headers:
            await take(int(headers["content-length"]))
        else:
            await take(None)
    except asyncio.IncompleteReadError as e:
        raise Incomplete("connection ended inside the chunked body") from e
    except ValueError as e:
        raise Unexpected(f"bad chunk size line: {e}") from e
    return Resp(status, headers, bytes(kept), size, h.hexdigest())


def request_bytes(
    method: str, target: str, host: str, *, body: bytes = b"", close: bool = False, extra: str = ""
) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}"
    if body or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode("latin-1") + body


_SHA_CACHE: dict[int, str] = {}


def pattern_sha(size: int) -> str:
    from tests.support.upstreams import pattern_sha256

    if size not in _SHA_CACHE:
        if len(_SHA_CACHE) > 256:
            _SHA_CACHE.clear()
        _SHA_CACHE[size] = pattern_sha256(size)
    return _SHA_CACHE[size]


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            await writer.wait_closed()
