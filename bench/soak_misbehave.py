"""The soak's misbehaving clients, and the requests to the faulty upstreams.

Slow readers (~1 MB/s: the proxy must hold the upstream back), slow-header
clients (a stalled head and a trickled head: closed within
``--client-head-timeout``), and requests to the ``reset``, ``garbage`` and
``silent`` upstreams (the proxy's 502 or 504, or a cut connection when the
fault hit mid-body).
"""

from __future__ import annotations

import asyncio
import random
import socket
import time

from bench.soak_load import CLIENT_HEAD_TIMEOUT, RESPONSE_HEAD_TIMEOUT, WATCHDOG_SLACK, Load
from bench.soak_tally import TRICKLE_BUG
from bench.soak_wire import (
    Incomplete,
    MiB,
    close_writer,
    expect,
    pattern_sha,
    read_response,
    request_bytes,
)


async def slow_reader(load: Load, name: str) -> None:
    rng = random.Random(load.rng.random())
    i = 0
    while load.running(i):
        i += 1
        await load.limiter.take()
        n = rng.randrange(1 * MiB, 4 * MiB)
        try:
            async with asyncio.timeout(60):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                sock.setblocking(False)
                await asyncio.get_running_loop().sock_connect(
                    sock, ("127.0.0.1", load.s.proxy_port)
                )
                reader, writer = await asyncio.open_connection(sock=sock, limit=16384)
                try:
                    writer.write(request_bytes("GET", f"http://{load.http}/bytes/{n}",
                                               load.http))  # fmt: skip
                    # ~1 MB/s: the proxy has to hold the upstream back (backpressure).
                    r = await read_response(reader, keep=0, piece=16384, pace=0.015)
                    expect(r.status == 200 and r.size == n and r.sha256 == pattern_sha(n),
                           f"slow bytes/{n}: {r.size} bytes")  # fmt: skip
                finally:
                    await close_writer(writer)
        except (Exception, TimeoutError) as e:
            load.tally.error(name, e)
        else:
            load.tally.ok(name)


async def slowloris(load: Load, name: str) -> None:
    """A request head that never completes: stalled, or trickled a byte at a time.

    The proxy must close it within --client-head-timeout (+ watchdog slack);
    no flow record is expected. The client gives up a little later.
    """
    i = 0
    while load.running(i):
        i += 1
        await load.limiter.take()
        trickle = i % 2 == 0
        label = TRICKLE_BUG if trickle else "slowloris (stall)"
        try:
            async with asyncio.timeout(CLIENT_HEAD_TIMEOUT + 30):
                await _slowloris_one(load, name, label, trickle)
        except (Exception, TimeoutError) as e:
            load.tally.error(name, e, exchange=False)


async def _slowloris_one(load: Load, name: str, label: str, trickle: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", load.s.proxy_port)
    t0 = time.monotonic()
    limit = CLIENT_HEAD_TIMEOUT + WATCHDOG_SLACK
    try:
        writer.write(f"GET http://{load.http}/echo/slow HTTP/1.1\r\nHost: {load.http}\r\n"
                     "X-Slow: ".encode())  # fmt: skip
        closed = False
        while time.monotonic() - t0 < limit:
            try:
                async with asyncio.timeout(0.5):
                    data = await reader.read(4096)
            except TimeoutError:
                if trickle:
                    writer.write(b"a")
                continue
            except ConnectionError:
                data = b""
            if data:
                load.tally.error(name, f"{label}: the proxy answered {data[:40]!r}",
                                 exchange=False)  # fmt: skip
                return
            closed = True
            break
        elapsed = time.monotonic() - t0
        if not closed:
            load.tally.error(
                name,
                f"{label}: head still incomplete and the connection still open after "
                f"{limit:.1f} s (--client-head-timeout {CLIENT_HEAD_TIMEOUT:g})",
                exchange=False,
            )
        elif elapsed < CLIENT_HEAD_TIMEOUT - 0.5:
            load.tally.error(name, f"{label}: closed after only {elapsed:.1f} s",
                             exchange=False)  # fmt: skip
        else:
            load.tally.closed_head(name)
    finally:
        await close_writer(writer)


async def _fault(load: Load, name: str, port_name: str, expect_status: int) -> None:
    rng = random.Random(load.rng.random())
    port = load.s.ports[port_name]
    authority = f"127.0.0.1:{port}"
    i = 0
    while load.running(i):
        i += 1
        await load.limiter.take()
        mid = port_name != "silent" and rng.random() < 0.5
        path = "/mid" if mid else "/early"
        try:
            async with asyncio.timeout(RESPONSE_HEAD_TIMEOUT + 30):
                outcome = await _fault_one(load, authority, path, mid, expect_status)
        except (Exception, TimeoutError) as e:
            load.tally.error(name, e)
        else:
            if outcome is None:
                load.tally.fault(name)
            else:
                load.tally.error(name, f"{port_name}{path}: {outcome}")
        await load.pause(0.1)


async def _fault_one(
    load: Load, authority: str, path: str, mid: bool, expect_status: int
) -> str | None:
    """None if the client saw what the injected fault should cause, else what it saw."""
    reader, writer = await asyncio.open_connection("127.0.0.1", load.s.proxy_port)
    try:
        writer.write(request_bytes("GET", f"http://{authority}{path}", authority))
        try:
            r = await read_response(reader)
        except (Incomplete, ConnectionError) as e:
            return None if mid else f"connection cut before an error response: {e}"
        if mid:
            return f"complete response {r.status} although the upstream broke mid-body"
        if r.status != expect_status:
            return f"status {r.status}, expected {expect_status}"
        return None
    finally:
        await close_writer(writer)


async def fault_reset(load: Load, name: str) -> None:
    await _fault(load, name, "reset", 502)


async def fault_garbage(load: Load, name: str) -> None:
    await _fault(load, name, "garbage", 502)


async def fault_silent(load: Load, name: str) -> None:
    await _fault(load, name, "silent", 504)
