"""--workers N: processes share the port; every record reaches the one flow log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp
from haralyzer import HarParser

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


def test_har_to_stdout_refused_with_workers() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "--workers", "2", "-p", "0", "--har", "-"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2
    assert "several --workers cannot share; give --har a file" in out.stderr


def test_two_workers_one_har_and_one_pcap(upstreams: Upstreams, tmp_path: Path) -> None:
    """Issue 14 item 10: --har and --pcap with --workers: one valid HAR with every
    exchange, one pcapng tshark reads whole, in time order per connection."""
    har, cap = tmp_path / "s.har", tmp_path / "s.pcapng"
    p = start_proxy(
        "--workers", "2", "--har", str(har), "--pcap", str(cap), flow_log=tmp_path / "f.jsonl"
    )
    try:
        # 20 connections: SO_REUSEPORT puts them all on one worker with p = 2^-19.
        completed = asyncio.run(_load(p.url, upstreams.url, clients=20, each=10))
        records = p.records(completed)
    finally:
        assert p.stop() == 0
    assert completed == 200 and len(records) == 200
    assert len({r["id"][:8] for r in records}) == 2  # both workers served
    doc = json.loads(har.read_bytes())
    entries = doc["log"]["entries"]
    assert sorted(e["_tapproxy"]["id"] for e in entries) == sorted(r["id"] for r in records)
    assert HarParser(doc).pages[0].entries  # haralyzer reads it
    assert doc["log"]["_tapproxy"] == {"dropped": 0, "skipped": {}}

    def tshark(*args: str) -> str:
        done = subprocess.run(["tshark", "-r", str(cap), *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    uris = tshark("-Y", f"http.request && tcp.dstport == {p.port}", "-T", "fields",
                  "-e", "http.request.uri").split()  # fmt: skip
    assert len(uris) == 200
    assert "Malformed" not in tshark("-q", "-z", "expert,warn")
    # Per connection, time never goes back (batches of the two workers interleave).
    rows = tshark("-o", "tcp.calculate_timestamps:TRUE", "-T", "fields",
                  "-e", "tcp.stream", "-e", "tcp.time_delta").split("\n")  # fmt: skip
    deltas = [float(r.split("\t")[1]) for r in rows if "\t" in r]
    assert len(deltas) > 200 * 5 and min(deltas) >= 0
