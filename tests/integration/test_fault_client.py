"""Fault survival, client side: clients that abort, stall or never speak.

Same shape as test_fault_upstream.py (see its docstring and
docs/reliability.md): each misbehaving client gets the documented treatment,
a normal client is served meanwhile, and after the repetitions the proxy's
connections, tasks, descriptors and RSS are back at their baseline. Where a
client aborts while the proxy holds an upstream connection for it, the
scripted upstream also checks that the proxy closed that connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.support.faultclients import Outcome, close_writer, open_client, read_to_end, read_until
from tests.support.faults import (
    CONCURRENCY,
    REPEAT,
    WARMUP,
    Counter,
    FaultEnv,
    fault_env,
    records_for,
    wait_closed_by_peer,
)
from tests.support.upstreams import RawConnection, Upstreams


@pytest.fixture(scope="module")
def env(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultEnv]:
    log = tmp_path_factory.mktemp("fault-client") / "flows.jsonl"
    # The upstreams here answer at once; a longer --response-head-timeout keeps a
    # loaded test machine from turning a slow answer into a 504 (none is tested here).
    with fault_env(upstreams.url, "--response-head-timeout", "5", flow_log=log) as e:
        yield e


HOW = pytest.mark.parametrize("how", ["rst", "fin"])


# -- aborts while the proxy holds an upstream connection --------------------------------------

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@HOW
def test_client_aborts_mid_upload(env: FaultEnv, upstreams: Upstreams, how: str) -> None:
    closed = Counter()

    async def sink(conn: RawConnection) -> None:
        await conn.read_until(b"\r\n\r\n")
        await conn.read_exactly_total(conn.received.index(b"\r\n\r\n") + 5)
        # Some of the body is here: tell the client (through the proxy) so it
        # aborts exactly mid-upload, then wait for the proxy to let go of us.
        conn.send(CONTINUE)
        await conn.writer.drain()
        closed.add(await wait_closed_by_peer(conn, 15))

    server = upstreams.raw(sink)
    head = (
        b"POST http://127.0.0.1:%d/upload HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 1000000\r\n\r\n" % server.port
    )

    async def one(i: int) -> Outcome:
        reader, writer = await open_client(env.proxy.port)
        writer.write(head + b"u" * 65536)
        got = await read_until(reader, len(CONTINUE), timeout=10)
        close_writer(writer, reset=how == "rst")  # 934,464 bytes short
        return Outcome(got, "aborted")

    def check(o: Outcome) -> None:
        assert o.data == CONTINUE

    env.survive(f"client aborts mid-upload ({how})", one, check)
    total = REPEAT + WARMUP
    # Every upstream connection the aborted uploads used was closed by the proxy.
    assert closed.wait(total, "eof", "reset") == total, closed.counts
    recs = records_for(env.proxy, f"127.0.0.1:{server.port}/", total)
    errors = {r["error"] for r in recs}
    if how == "rst":
        assert errors == {"client closed the connection"}, errors
    else:  # a FIN inside a Content-Length body is a truncated request
        assert len(errors) == 1 and next(iter(errors)).startswith("client: "), errors


SENT = 100_000
DOWNLOAD_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"


@HOW
def test_client_aborts_mid_download(env: FaultEnv, upstreams: Upstreams, how: str) -> None:
    closed = Counter()

    async def source(conn: RawConnection) -> None:
        await conn.read_until(b"\r\n\r\n")
        conn.send(DOWNLOAD_HEAD + b"d" * SENT)  # a tenth of the body, then nothing
        await conn.writer.drain()
        closed.add(await wait_closed_by_peer(conn, 15))

    server = upstreams.raw(source)
    request = b"GET http://127.0.0.1:%d/download HTTP/1.1\r\nHost: x\r\n\r\n" % server.port
    want = len(DOWNLOAD_HEAD) + SENT

    async def one(i: int) -> Outcome:
        reader, writer = await open_client(env.proxy.port)
        writer.write(request)
        got = await read_until(reader, want, timeout=10)
        # All that was sent has been read: "fin" really sends a FIN (a close with
        # unread bytes would be a reset), "rst" resets (SO_LINGER 0).
        close_writer(writer, reset=how == "rst")
        return Outcome(got, "aborted")

    def check(o: Outcome) -> None:
        assert o.status == 200 and len(o.body) == SENT

    # A FIN while the response streams is a half-close: the client may still be
    # reading, so the proxy keeps the exchange until the upstream goes quiet for
    # --transfer-idle-timeout (1 s): those run all at once.
    n, concurrency = (REPEAT, CONCURRENCY) if how == "rst" else (500, 500)
    env.survive(
        f"client aborts mid-download ({how})",
        one,
        check,
        n=n,
        concurrency=concurrency,
        warmup=WARMUP if how == "rst" else n,
        warmups=1 if how == "rst" else 2,
    )
    total = n + (WARMUP if how == "rst" else 2 * n)
    assert closed.wait(total, "eof", "reset") == total, closed.counts
    recs = records_for(env.proxy, f"127.0.0.1:{server.port}/", total)
    errors = {r["error"] for r in recs}
    url = f"http://127.0.0.1:{server.port}/download"
    if how == "rst":
        assert errors == {"client closed the connection"}, errors
    else:
        assert errors == {f"timeout (transfer_idle) waiting for {url}"}, errors


# -- clients that stall or never speak -----------------------------------------------------------


async def _open_many(env: FaultEnv, n: int, first: bytes, batch: int = 100) -> list[Outcome]:
    """Open ``n`` connections in batches, send ``first`` on each, and read each
    until the proxy closes it; ``Outcome.data`` is what came back, followed by
    the seconds from open to close (b"|1.234")."""
    port = env.proxy.port
    done: list[asyncio.Task[Outcome]] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Outcome:
        opened = time.monotonic()
        try:
            if first:
                writer.write(first)
            data, end = await read_to_end(reader, timeout=20)
        finally:
            close_writer(writer)
        return Outcome(data + b"|%.3f" % (time.monotonic() - opened), end)

    for start in range(0, n, batch):
        clients = await asyncio.gather(*(open_client(port) for _ in range(min(batch, n - start))))
        done += [asyncio.ensure_future(hold(r, w)) for r, w in clients]
        # Pace the batches by what the proxy has accepted (its listen backlog is
        # small): bounded polling of its live-connection count.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            live = (await asyncio.to_thread(env.probe.stats))["connections"]
            if live + sum(t.done() for t in done) >= len(done):
                break
            await asyncio.sleep(0.02)
    return list(await asyncio.gather(*done))


def _split(o: Outcome) -> tuple[bytes, float]:
    data, _, elapsed = o.data.rpartition(b"|")
    return data, float(elapsed)


def test_client_sends_half_a_head_and_stalls(env: FaultEnv, upstreams: Upstreams) -> None:
    half = b"GET %s/bytes/10 HTTP/1.1\r\nHost: x\r\nUser-Ag" % upstreams.url.encode()

    def check(o: Outcome) -> None:
        data, elapsed = _split(o)
        # Told why (RFC 9110 §15.5.9), then closed: the head never completed.
        assert data.startswith(b"HTTP/1.1 408 ") and o.end == "eof"
        assert 1.0 <= elapsed < 8.0, elapsed  # --client-head-timeout 1, 1 s watchdog

    env.survive_batch(
        "half a head, stalled", lambda n: _open_many(env, n, half), check, REPEAT, REPEAT, 0
    )


def test_thousand_silent_clients(env: FaultEnv) -> None:
    def check(o: Outcome) -> None:
        data, elapsed = _split(o)
        assert data == b"" and o.end == "eof"
        assert 1.0 <= elapsed < 8.0, elapsed  # --client-idle-timeout 1, 1 s watchdog

    env.survive_batch(
        "1,000 silent connections", lambda n: _open_many(env, n, b""), check, REPEAT, REPEAT, 0
    )


def test_client_head_timeout_is_in_the_flow_log(env: FaultEnv, upstreams: Upstreams) -> None:
    marker = "/bytes/77"
    half = b"GET %s%s HTTP/1.1\r\nHost: x\r\n" % (upstreams.url.encode(), marker.encode())
    (out,) = asyncio.run(_open_many(env, 1, half))
    assert _split(out)[0].startswith(b"HTTP/1.1 408 ")
    recs = records_for(env.proxy, marker, 1, timeout=3)
    assert recs and "client_head" in str(recs[0]["error"])
    assert recs[0]["response"]["status"] == 408 and recs[0]["response"]["source"] == "proxy"
    assert recs[0]["refused"]["data"] == half.decode().replace("\r\n", "\\r\\n")
