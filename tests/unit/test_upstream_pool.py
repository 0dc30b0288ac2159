"""The upstream pool's bounds, over real loopback connections."""

from __future__ import annotations

import asyncio

from proxy.layers.http2.link import MAX_CONCURRENT_STREAMS
from proxy.server.upstream import Pool, UpstreamConnection


async def _connections(
    keys: list[tuple[str, int, str | None, str | None]],
) -> list[UpstreamConnection]:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    conns = []
    for key in keys:  # the key only labels the connection here; all are plain TCP
        _, conn = await loop.create_connection(
            lambda k=key: UpstreamConnection(k), "127.0.0.1", port
        )
        conns.append(conn)
    server.close()
    return conns


def test_idle_tls_connections_have_their_own_smaller_bound() -> None:
    async def run() -> tuple[list[bool], list[bool], int]:
        tls = [("127.0.0.1", 443, f"h{i}.example", None) for i in range(10)]
        plain = [("127.0.0.1", 80, None, None)] * 10
        conns = await _connections(tls + plain)
        pool = Pool(total=16, total_tls=4)
        for c in conns:
            pool.put(c)
        count = pool.idle_count
        kept = [pool.take(c.key) is c for c in conns[:10]]
        pool.close()
        return kept, [c.closed for c in conns[:10]], count

    kept, closed, count = asyncio.run(run())
    assert count == 14  # 4 TLS (the bound) + 10 plain
    assert kept == [False] * 6 + [True] * 4  # the TLS ones idle longest went first
    assert closed[:6] == [True] * 6


def test_the_total_bound_closes_the_connection_idle_longest() -> None:
    async def run() -> tuple[int, list[bool]]:
        conns = await _connections(
            [("127.0.0.1", 80, None, None)] * 3 + [("127.0.0.1", 81, None, None)] * 3
        )
        pool = Pool(total=4)
        for c in conns:
            pool.put(c)
        count = pool.idle_count
        closed = [c.closed for c in conns]
        pool.close()
        return count, closed

    count, closed = asyncio.run(run())
    assert count == 4 and closed == [True, True, False, False, False, False]


def test_one_http2_clients_streams_fit_in_the_pool() -> None:
    """Every stream of an HTTP/2 client translated to HTTP/1.1 holds an upstream
    connection; when they all come back at once, none is closed (with 32 per
    host, one h2load request in five had to connect anew)."""

    async def run() -> tuple[int, int]:
        conns = await _connections([("127.0.0.1", 80, None, None)] * MAX_CONCURRENT_STREAMS)
        pool = Pool()
        for c in conns:
            pool.put(c)
        count, closed = pool.idle_count, sum(c.closed for c in conns)
        pool.close()
        return count, closed

    assert asyncio.run(run()) == (MAX_CONCURRENT_STREAMS, 0)
