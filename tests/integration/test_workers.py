"""--workers N: processes share the port; every record reaches the one flow log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.support.proxyproc import start_proxy
from tests.support.upstreams import Upstreams


async def _load(proxy: str, url: str, clients: int, each: int) -> int:
    done = 0

    async def client(n: int) -> None:
        nonlocal done
        for i in range(each):  # a new connection each time: spread over the workers
            async with aiohttp.ClientSession() as s, s.get(f"{url}/echo/{n}/{i}", proxy=proxy) as r:
                await r.read()
                done += r.status == 200

    await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(clients))), 120)
    return done


def test_two_workers_one_flow_log(upstreams: Upstreams, tmp_path: Path) -> None:
    p = start_proxy("--workers", "2", flow_log=tmp_path / "flows.jsonl")
    try:
        completed = asyncio.run(_load(p.url, upstreams.url, clients=8, each=50))
    finally:
        assert p.stop() == 0
    records = p.records(completed)
    assert completed == 400 and len(records) == 400
    assert len({r["id"] for r in records}) == 400
    # Both workers served (their flow ids have different per-process prefixes).
    assert len({r["id"][:8] for r in records}) == 2


def test_two_workers_rotate_one_flow_log_together(upstreams: Upstreams, tmp_path: Path) -> None:
    """Rotation under a lock: every record in exactly one file, no file over the size."""
    log, max_size = tmp_path / "flows.jsonl", 16 * 1024
    p = start_proxy(
        "--workers", "2", "--flow-log-max-size", str(max_size), "--flow-log-keep", "500",
        flow_log=log,
    )  # fmt: skip
    try:
        completed = asyncio.run(_load(p.url, upstreams.url, clients=8, each=50))
    finally:
        assert p.stop() == 0
    files = [log, *sorted(tmp_path.glob("flows.jsonl.[0-9]*"))]
    assert len(files) > 10  # ~1 KB records: it rotated many times
    ids = []
    for f in files:
        data = f.read_bytes()
        assert len(data) <= max_size and data.endswith(b"\n"), f
        ids += [json.loads(line)["id"] for line in data.splitlines()]
    assert completed == 400 and len(ids) == 400 and len(set(ids)) == 400
    assert len({i[:8] for i in ids}) == 2  # both workers wrote


def test_single_writer_outputs_refused_with_workers(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "--workers", "2", "-p", "0", "--har", str(tmp_path / "h")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2 and "--har writes one file" in out.stderr
