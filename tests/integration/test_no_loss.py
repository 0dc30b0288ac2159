"""Under load, every completed exchange reaches the flow log exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.support.proxyproc import start_proxy
from tests.support.upstreams import Upstreams


async def _load(proxy: str, url: str, clients: int, each: int) -> int:
    done = 0

    async def client(n: int) -> None:
        nonlocal done
        async with aiohttp.ClientSession() as s:
            for i in range(each):
                async with s.get(f"{url}/echo/{n}/{i}", proxy=proxy) as r:
                    await r.read()
                    if r.status == 200:
                        done += 1

    await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(clients))), 120)
    return done


def test_records_equal_completed_requests(upstreams: Upstreams, tmp_path: Path) -> None:
    p = start_proxy("--har", str(tmp_path / "f.har"), flow_log=tmp_path / "flows.jsonl")
    try:
        completed = asyncio.run(_load(p.url, upstreams.url, clients=16, each=125))
    finally:
        assert p.stop() == 0  # graceful: queued records are flushed
    records = p.records(completed)
    assert completed == 2000
    assert len(records) == completed
    assert len({r["id"] for r in records}) == completed  # each exactly once
    urls = {r["request"]["url"] for r in records}
    assert len(urls) == completed
