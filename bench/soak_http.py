"""The soak's well-behaved HTTP clients, through the proxy.

Keep-alive aiohttp clients (small GETs and POSTs on every rule path),
raw new-connection-per-request clients (with ``Connection: close`` the
proxy must close, RFC 9112 §9.6), and large downloads and uploads (20-50
MiB, checked by size and SHA-256).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from bench.soak_load import Load
from bench.soak_tally import CLOSE_BUG, CLOSE_WAIT
from bench.soak_wire import (
    MiB,
    close_writer,
    expect,
    pattern_sha,
    read_response,
    request_bytes,
)


async def keepalive(load: Load, name: str) -> None:
    import aiohttp

    rng = random.Random(load.rng.random())
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=2)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        i = 0
        while load.running(i):
            i += 1
            await load.limiter.take()
            try:
                await _keepalive_one(load, session, rng)
            except (Exception, TimeoutError) as e:
                load.tally.error(name, e)
            else:
                load.tally.ok(name)


async def _keepalive_one(load: Load, session: Any, rng: random.Random) -> None:
    base = f"http://{load.http}"
    p = load.proxy_url
    kind = rng.choice(["echo", "post", "bytes", "chunked", "upload", "replace", "delay",
                       "blocked", "mock"])  # fmt: skip
    if kind == "echo":
        async with session.get(f"{base}/echo/ka?n={rng.randrange(10**6)}", proxy=p) as r:
            data = await r.json()
            expect(r.status == 200, f"echo status {r.status}")
            expect(["x-soak", "1"] in [[k.lower(), v] for k, v in data["headers"]],
                   "rule header x-soak missing upstream")  # fmt: skip
            expect(r.headers.get("x-soak-rule") == "echo", "rule response header missing")
    elif kind == "post":
        body = os.urandom(rng.randrange(1, 4096)).hex()
        async with session.post(f"{base}/echo/post", data=body, proxy=p) as r:
            data = await r.json()
            expect(r.status == 200 and data["body"] == body, "POST echo body differs")
    elif kind in ("bytes", "chunked"):
        n = rng.randrange(0, 256 * 1024)
        async with session.get(f"{base}/{kind}/{n}", proxy=p) as r:
            got = await r.read()
            expect(r.status == 200, f"{kind} status {r.status}")
            expect(len(got) == n and hashlib.sha256(got).hexdigest() == pattern_sha(n),
                   f"{kind}/{n}: {len(got)} bytes, content differs")  # fmt: skip
    elif kind == "upload":
        from tests.support.upstreams import pattern_chunks

        n = rng.randrange(1, 512 * 1024)
        blob = b"".join(pattern_chunks(n))
        async with session.post(f"{base}/upload", data=blob, proxy=p) as r:
            data = await r.json()
            expect(data["size"] == n and data["sha256"] == pattern_sha(n), "upload differs")
    elif kind == "replace":
        async with session.post(f"{base}/echo/replace", data="a needle here", proxy=p) as r:
            text = await r.text()
            expect(r.status == 200, f"replace status {r.status}")
            expect("a thread here" in text and "needle" not in text, "body not replaced")
    elif kind == "delay":
        t0 = time.monotonic()
        async with session.get(f"{base}/echo/delay", proxy=p) as r:
            await r.read()
            expect(r.status == 200, f"delay status {r.status}")
        expect(time.monotonic() - t0 >= 0.045, "rule delay of 50 ms not applied")
    elif kind == "blocked":
        async with session.get(f"{base}/blocked", proxy=p) as r:
            text = await r.text()
            expect(r.status == 403 and text == "blocked by soak\n", f"block: {r.status}")
    else:
        async with session.get(f"{base}/mock", proxy=p) as r:
            text = await r.text()
            expect(r.status == 200 and text == "mocked\n", f"mock: {r.status} {text!r}")


async def newconn(load: Load, name: str) -> None:
    rng = random.Random(load.rng.random())
    i = 0
    while load.running(i):
        i += 1
        await load.limiter.take()
        try:
            async with asyncio.timeout(30):
                await _newconn_one(load, name, rng)
        except (Exception, TimeoutError) as e:
            load.tally.error(name, e)


async def _newconn_one(load: Load, name: str, rng: random.Random) -> None:
    """One request on a new connection; with ``Connection: close`` the proxy must close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", load.s.proxy_port)
    handed_over = False
    try:
        close = rng.random() < 0.5  # else: keep-alive, and the client just leaves
        which = rng.choice(["bytes"] * 5 + ["echo"] * 3 + ["blocked", "mock"])
        body = b""
        if which == "bytes":
            n = rng.randrange(0, 64 * 1024)
            target = f"http://{load.http}/bytes/{n}"
        elif which == "echo":
            target, body = f"http://{load.http}/echo/new", os.urandom(64).hex().encode()
        else:
            target = f"http://{load.http}/{which}"
        method = "POST" if body else "GET"
        writer.write(request_bytes(method, target, load.http, body=body, close=close))
        r = await read_response(reader)
        if which == "bytes":
            expect(r.status == 200 and r.size == n and r.sha256 == pattern_sha(n),
                   f"bytes/{n}: status {r.status}, {r.size} bytes")  # fmt: skip
        elif which == "echo":
            expect(r.status == 200 and json.loads(r.body)["body"] == body.decode(),
                   "echo body differs")  # fmt: skip
        elif which == "blocked":
            expect(r.status == 403, f"blocked: status {r.status}")
        else:
            expect(r.status == 200 and r.body == b"mocked\n", f"mock: status {r.status}")
        if not close:
            load.tally.ok(name)
            return
        handed_over = True
        load.later(_closed_after(load, name, which, reader, writer))
    finally:
        if not handed_over:
            await close_writer(writer)


async def _closed_after(
    load: Load, name: str, which: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """After the response to ``Connection: close``: the proxy must close (RFC 9112 9.6)."""
    try:
        async with asyncio.timeout(CLOSE_WAIT):
            rest = await reader.read(1)
    except TimeoutError:
        how = "a rule's answer" if which in ("blocked", "mock") else "a forwarded response"
        load.tally.error(
            name, f"/{which}: connection {CLOSE_BUG} ({how}; waited {CLOSE_WAIT:g} s)",
            complete=True,
        )  # fmt: skip
    except Exception as e:
        load.tally.error(name, f"/{which}: after the response: {type(e).__name__}: {e}",
                         complete=True)  # fmt: skip
    else:
        if rest:
            load.tally.error(name, f"/{which}: data after a `Connection: close` response",
                             complete=True)  # fmt: skip
        else:
            load.tally.ok(name)
    finally:
        await close_writer(writer)


async def large_download(load: Load, name: str) -> None:
    import aiohttp

    rng = random.Random(load.rng.random())
    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        i = 0
        while load.running(i):
            i += 1
            await load.limiter.take()
            n = rng.randrange(20 * MiB, 50 * MiB + 1)
            path = rng.choice(["bytes", "chunked"])
            try:
                h = hashlib.sha256()
                size = 0
                url = f"http://{load.http}/{path}/{n}"
                async with session.get(url, proxy=load.proxy_url) as r:
                    expect(r.status == 200, f"status {r.status}")
                    async for chunk in r.content.iter_chunked(256 * 1024):
                        h.update(chunk)
                        size += len(chunk)
                expect(size == n and h.hexdigest() == pattern_sha(n),
                       f"{path}/{n}: got {size} bytes, sha differs")  # fmt: skip
            except (Exception, TimeoutError) as e:
                load.tally.error(name, e)
            else:
                load.tally.ok(name)
                load.tally.bytes_checked += n
            await load.pause(1.0)


async def large_upload(load: Load, name: str) -> None:
    import aiohttp

    from tests.support.upstreams import pattern_chunks

    rng = random.Random(load.rng.random())
    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        i = 0
        while load.running(i):
            i += 1
            await load.limiter.take()
            n = rng.randrange(20 * MiB, 50 * MiB + 1)
            chunked = i % 2 == 0

            async def gen(n: int = n) -> AsyncIterator[bytes]:
                for c in pattern_chunks(n):
                    yield c

            try:
                data: Any = gen() if chunked else b"".join(pattern_chunks(n))
                url = f"http://{load.http}/upload"
                async with session.post(url, data=data, proxy=load.proxy_url) as r:
                    got = await r.json()
                expect(r.status == 200, f"status {r.status}")
                expect(
                    got["size"] == n and got["sha256"] == pattern_sha(n),
                    f"upload of {n}: upstream got {got['size']} bytes, sha differs",
                )
                expect(got["chunked"] == chunked, "framing changed")
            except (Exception, TimeoutError) as e:
                load.tally.error(name, e)
            else:
                load.tally.ok(name)
                load.tally.bytes_checked += n
            await load.pause(1.0)
