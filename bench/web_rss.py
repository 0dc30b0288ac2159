"""Issue 18's memory bar through a real proxy: ``--web --web-max-flows 10000``
and 200,000 flows; the store holds 10,000, the RSS after 200,000 is within
15% of the RSS after 10,000, and the UI's flow list loads in under 2 s.

    python -m bench.web_rss                       # 200,000 flows, cap 10,000
    python -m bench.web_rss --flows 50000 --cap 5000

tapproxy runs as ``python -m proxy -q --web`` (a temporary store) on CPU 0;
the origin (bench/upstream.py, 100-byte answers) and wrk (keep-alive,
absolute-form requests, bench/loadgen.py) share CPU 1. wrk runs in short
rounds until the proxy has seen enough flows (the store's ``stored`` plus
``dropped`` from ``/api/status``). Each RSS figure is read right after the
proxy printed its SIGUSR1 stats, which run a full collection and a heap trim
first: live memory, not garbage waiting for the collector.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import (
    PROXY_CPU,
    Proc,
    free_port,
    machine_line,
    rss_kb,
    start_tapproxy,
    start_upstream,
)
from bench.loadgen import run_wrk, wrk_script

TOKEN = "bench-web-rss"


def api(port: int, path: str) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def seen(port: int) -> int:
    status = api(port, "/api/status")
    return int(status["stored"]) + int(status["dropped"])


def live_rss_mb(proxy: Proc) -> float:
    """RSS after the proxy's SIGUSR1 stats (a full collection and a heap trim)."""
    assert proxy.popen.stderr is not None
    proxy.popen.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proxy.popen.stderr.readline()
        if line.startswith(b"tapproxy-stats "):
            return rss_kb(proxy.pid) / 1024
        if not line:
            break
    raise RuntimeError("no stats line from tapproxy")


def drive(proxy: Proc, web: int, script: Path, until: int, connections: int) -> float:
    """wrk rounds until the proxy has seen ``until`` flows; returns the req/s of the last."""
    rps = 0.0
    while seen(web) < until:
        left = until - seen(web)
        result = run_wrk(
            f"http://127.0.0.1:{proxy.port}",
            script,
            connections=connections,
            duration=max(1, min(10, round(left / max(rps, 1000.0)))),
        )
        rps = result.rps
    # The store is written off the data path: let the last batches land.
    deadline = time.monotonic() + 10
    last = -1
    while time.monotonic() < deadline and seen(web) != last:
        last = seen(web)
        time.sleep(0.2)
    return rps


def list_ms(web: int, query: str, repeat: int = 5) -> tuple[float, int]:
    runs, total = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        page = api(web, "/api/flows?" + query)
        runs.append((time.perf_counter() - t) * 1000)
        total = int(page["total"])
    return statistics.median(runs), total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flows", type=int, default=200_000)
    ap.add_argument("--cap", type=int, default=10_000)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    upstream = start_upstream(cpu=1)
    web = free_port()
    proxy = start_tapproxy(
        "--web", "--web-port", str(web), "--web-token", TOKEN,
        "--web-max-flows", str(args.cap), cpu=PROXY_CPU,
    )  # fmt: skip
    try:
        with tempfile.TemporaryDirectory() as tmp:
            origin = f"127.0.0.1:{upstream.port}"
            script = wrk_script(Path(tmp), target=f"http://{origin}/bytes/100", host=origin)
            drive(proxy, web, script, args.cap, args.connections)
            at_cap = live_rss_mb(proxy)
            seen_cap = seen(web)
            rps = drive(proxy, web, script, args.flows, args.connections)
            at_end = live_rss_mb(proxy)
            status = api(web, "/api/status")
            page_ms, total = list_ms(web, "limit=500")
            deep_ms, _ = list_ms(web, f"limit=500&offset={max(total - 500, 0)}")
            filter_ms, matched = list_ms(web, "limit=500&filter=" + urllib.request.quote("~c 200"))
    finally:
        proxy.stop()
        upstream.stop()
    print(f"# bench/web_rss.py: {args.flows:,} flows, --web-max-flows {args.cap:,}\n")
    print(f"- machine: {machine_line()}")
    print(f"- last wrk round: {rps:,.0f} req/s through the proxy\n")
    print("| point | figure |\n|---|---|")
    print(f"| RSS after {seen_cap:,} flows | {at_cap:.1f} MiB |")
    print(f"| RSS after {status['stored'] + status['dropped']:,} flows | {at_end:.1f} MiB |")
    print(f"| growth | {(at_end / at_cap - 1) * 100:+.1f}% (bar: within 15%) |")
    print(f"| stored / dropped | {status['stored']:,} / {status['dropped']:,} |")
    print(f"| store bytes | {status['store_bytes'] / 2**20:.1f} MiB |")
    print(f"| GET /api/flows?limit=500 | {page_ms:.1f} ms (bar: under 2 s) |")
    print(f"| the same at the oldest page | {deep_ms:.1f} ms |")
    print(f"| with filter ~c 200 ({matched:,} match) | {filter_ms:.1f} ms |")


if __name__ == "__main__":
    main()
