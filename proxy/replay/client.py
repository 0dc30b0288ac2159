"""``tapproxy replay``: send recorded requests again and compare the responses.

Each recorded HTTP request is sent with aiohttp's client, to the recorded
URL or, with ``to``, to the same path and query on another origin. The
request carries its recorded method, header fields and body; fields that
belong to one connection (RFC 9110 §7.6.1: ``Connection`` and the fields it
names, ``Keep-Alive``, ``TE``, ``Upgrade``, ``Proxy-*``) and the framing are
left to the client, ``Host`` follows the target. aiohttp adds nothing of
its own (no ``User-Agent``, ``Accept``, ``Accept-Encoding``) and leaves the
response's content coding alone, so both sides are compared as sent.

``concurrency`` requests are in flight at once; ``rate`` spaces their
starts (requests per second). Results keep the recording's order.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from proxy.replay.diff import Differences, DiffOptions, Seen, compare
from proxy.replay.format import Fields, RecordedFlow

_NOT_RESENT = frozenset(
    {b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"te",
     b"upgrade", b"proxy-connection", b"proxy-authorization", b"expect", b"trailer"}
)  # fmt: skip
_NO_AUTO = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


@dataclass(frozen=True, slots=True)
class ClientOptions:
    to: str | None = None  # scheme://host[:port] replacing the recorded origin
    concurrency: int = 1
    rate: float | None = None  # requests per second
    timeout: float = 30.0
    insecure: bool = False
    diff: DiffOptions = field(default_factory=DiffOptions)


@dataclass(frozen=True, slots=True)
class Outcome:
    flow: RecordedFlow
    url: str
    differences: Differences | None = None  # None: not compared (error, or not replayable)
    error: str | None = None  # sent, and no response came (refused, reset, timeout)
    skipped: str | None = None  # not sent: why
    seconds: float = 0.0

    @property
    def differs(self) -> bool:
        return self.error is not None or bool(self.differences)


def target_url(recorded: str, to: str | None) -> str:
    if to is None:
        return recorded
    base, parts = urlsplit(to), urlsplit(recorded)
    return urlunsplit((base.scheme, base.netloc, parts.path or "/", parts.query, ""))


def outgoing_headers(fields: Fields) -> list[tuple[str, str]]:
    named = {
        token.strip().lower().encode("latin-1")
        for k, v in fields
        if k.lower() == b"connection"
        for token in v.decode("latin-1").split(",")
    }
    return [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in fields
        if k.lower() not in _NOT_RESENT and k.lower() not in named
        and not k.lower().startswith(b"proxy-")
    ]  # fmt: skip


def replayable(f: RecordedFlow) -> str | None:
    """Why ``f`` cannot be replayed, or None."""
    if f.kind != "http" or f.request is None:
        return f"a {f.kind} flow, not an HTTP exchange"
    if f.response is None:
        return "no recorded response to compare with"
    if f.request.body.truncated:
        return "its request body was cut at --capture-max-body when recorded"
    return None


async def _send(session: aiohttp.ClientSession, f: RecordedFlow, opts: ClientOptions) -> Outcome:
    assert f.request is not None and f.response is not None
    url = target_url(f.request.url, opts.to)
    r = f.request
    started = time.monotonic()
    try:
        async with session.request(
            r.method.decode("latin-1"), url, headers=outgoing_headers(r.headers),
            data=r.body.data if r.body.size else None, allow_redirects=False,
        ) as resp:  # fmt: skip
            body = await resp.read()
            fields = tuple((bytes(k), bytes(v)) for k, v in resp.raw_headers)
            got = Seen(resp.status, fields, body)
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        return Outcome(f, url, error=f"{type(e).__name__}: {e}".rstrip(": "))
    rec = f.response
    recorded = Seen(rec.status, rec.headers, rec.body.data)
    diff = compare(recorded, got, opts.diff)
    if rec.body.truncated and diff.body:
        diff.body = [f"{d} (the recorded body was cut at --capture-max-body)" for d in diff.body]
    return Outcome(f, url, diff, seconds=time.monotonic() - started)


async def replay(flows: Sequence[RecordedFlow], opts: ClientOptions) -> list[Outcome]:
    """Every flow's outcome, in the recording's order."""
    results: list[Outcome | None] = [None] * len(flows)
    todo = []
    for i, f in enumerate(flows):
        why = replayable(f)
        if why is not None:
            results[i] = Outcome(f, f.request.url if f.request else "", skipped=why)
        else:
            todo.append(i)
    gate = asyncio.Semaphore(max(1, opts.concurrency))
    interval = 1.0 / opts.rate if opts.rate else 0.0
    start = time.monotonic()
    ctx: ssl.SSLContext | bool = not opts.insecure
    connector = aiohttp.TCPConnector(limit=max(1, opts.concurrency), ssl=ctx)
    timeout = aiohttp.ClientTimeout(total=opts.timeout)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, skip_auto_headers=_NO_AUTO
    ) as session:

        async def one(n: int, i: int) -> None:
            if interval:
                await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
            async with gate:
                results[i] = await _send(session, flows[i], opts)

        await asyncio.gather(*(one(n, i) for n, i in enumerate(todo)))
    return [r for r in results if r is not None]
