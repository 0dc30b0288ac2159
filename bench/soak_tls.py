"""The soak's HTTPS clients: requests through intercepted CONNECT tunnels.

Raw sockets and TLS trusting the proxy's CA: a CONNECT, a handshake, one to
eight requests (now and then a large body through both TLS layers), then a
close as asyncio does it (close_notify, then wait for the proxy's).
"""

from __future__ import annotations

import asyncio
import random
import ssl

from bench.soak_load import Load
from bench.soak_tally import TLS_CLOSE_BUG, TLS_CLOSE_WAIT
from bench.soak_wire import (
    MiB,
    close_writer,
    expect,
    pattern_sha,
    read_head,
    read_response,
    request_bytes,
)


async def https(load: Load, name: str) -> None:
    rng = random.Random(load.rng.random())
    i = 0
    while load.running(i):
        i += 1
        await load.limiter.take()
        try:
            async with asyncio.timeout(120):
                await _tunnel(load, name, rng)
        except (Exception, TimeoutError) as e:
            load.tally.error(name, e)


async def _tunnel(load: Load, name: str, rng: random.Random) -> None:
    port = load.s.ports["https"]
    host = rng.choice(["localhost", "127.0.0.1"])
    authority = f"{host}:{port}"
    reader, writer = await asyncio.open_connection("127.0.0.1", load.s.proxy_port)
    opened = False
    try:
        writer.write(request_bytes("CONNECT", authority, authority))
        status, _ = await read_head(reader)
        expect(status == 200, f"CONNECT status {status}")
        await writer.start_tls(load.tls_ctx, server_hostname=host)
        opened = True
        for k in range(rng.randrange(1, 9)):
            if k:
                await load.limiter.take()
            await _https_one(load, reader, writer, authority, rng)
            load.tally.ok(name)
    finally:
        if opened:
            load.tally.tunnel(name)
            load.later(_tls_close(load, name, writer))
        else:
            await close_writer(writer)


async def _tls_close(load: Load, name: str, writer: asyncio.StreamWriter) -> None:
    """Close as asyncio does: close_notify, then wait for the proxy's (or its FIN)."""
    writer.close()
    try:
        async with asyncio.timeout(TLS_CLOSE_WAIT):
            await writer.wait_closed()
    except TimeoutError:
        load.tally.error(
            name, f"TLS close: {TLS_CLOSE_BUG} and no FIN {TLS_CLOSE_WAIT:g} s after ours",
            exchange=False,
        )  # fmt: skip
        writer.transport.abort()
    except (OSError, ssl.SSLError):
        pass  # the proxy closed first: fine


async def _https_one(
    load: Load,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    authority: str,
    rng: random.Random,
) -> None:
    which = rng.random()
    if which < 0.4:
        writer.write(request_bytes("GET", "/echo/tls", authority))
        r = await read_response(reader)
        expect(r.status == 200 and b'"x-soak", "1"' in r.body.replace(b"X-Soak", b"x-soak"),
               f"https echo: status {r.status}, rule header missing")  # fmt: skip
    elif which < 0.55:
        writer.write(request_bytes("POST", "/echo/replace", authority, body=b"needle!"))
        r = await read_response(reader)
        expect(r.status == 200 and b"thread!" in r.body, "https: body not replaced")
    elif which < 0.6:
        writer.write(request_bytes("GET", "/blocked", authority))
        r = await read_response(reader)
        expect(r.status == 403, f"https blocked: status {r.status}")
    elif which < 0.605:  # now and then a large body through both TLS layers
        n = rng.randrange(20 * MiB, 30 * MiB)
        writer.write(request_bytes("GET", f"/bytes/{n}", authority))
        r = await read_response(reader, keep=0)
        expect(r.status == 200 and r.size == n and r.sha256 == pattern_sha(n),
               f"https bytes/{n}: {r.size} bytes, sha differs")  # fmt: skip
        load.tally.bytes_checked += n
    else:
        n = rng.randrange(0, 128 * 1024)
        path = rng.choice(["bytes", "chunked"])
        writer.write(request_bytes("GET", f"/{path}/{n}", authority))
        r = await read_response(reader)
        expect(r.status == 200 and r.size == n and r.sha256 == pattern_sha(n),
               f"https {path}/{n}: status {r.status}, {r.size} bytes")  # fmt: skip
