"""What the web UI's flow store costs: preparing rows, writing, listing, filtering, memory.

    python -m bench.web_store                    # 100,000 flows, then the RSS run
    python -m bench.web_store --flows 20000 --rss-flows 50000

In process, no network: records shaped like a small JSON API exchange
(nine request headers, a 1 KB JSON answer, 256-byte previews; one in ten
with captured 4 KB bodies, as ``--save``'s capture gives) go through
``StoreSink.prepare`` (a waiting row each: what a flow costs while no
browser watches) and ``StoreSink.index_all`` (summaries, metrics, the
indexed tables: when someone looks), in the dispatcher's batches of 512. Then, with the
store full, the reads the UI makes: a page of 500 summaries at several
offsets (no filter: SQL LIMIT/OFFSET), filtered scans (a predicate on the
summary, one that parses every record, one that reads a body), one flow,
one body. Timings are medians of ``--repeat`` runs.

The RSS run feeds ``--rss-flows`` flows into a store capped at
``--rss-cap`` flows and reads the process's RSS (after a full collection
and a heap trim, as SIGUSR1 stats do) once the store is full and at the
end: issue 18 asks that it stay within 15% (it should not grow at all:
nothing per flow stays in Python, SQLite's page cache is capped).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable, Iterator

from proxy.flow.record import (
    CapturedBodies,
    FlowRecord,
    Message,
    RequestInfo,
    ResponseInfo,
    RulesInfo,
)
from proxy.server.heap import release_free_memory
from proxy.web.store import FlowStore, StoredFlow
from proxy.web.storedb import CACHE_KIB
from proxy.web.storesink import StoreSink

BATCH = 512  # the dispatcher's FLUSH_AT
JSON = b'{"items": [' + b", ".join(b'{"id": %d, "name": "item"}' % i for i in range(40)) + b"]}"
REQ_HEADERS = (
    (b"Host", b"api.example.test"),
    (b"User-Agent", b"curl/8.5.0"),
    (b"Accept", b"application/json"),
    (b"Accept-Encoding", b"gzip, br"),
    (b"Authorization", b"Bearer abcdefghijklmnopqrstuvwxyz0123456789"),
    (b"X-Request-Id", b"5b6c7d8e-0000-4000-8000-000000000000"),
    (b"Cookie", b"session=0123456789abcdef; theme=dark"),
    (b"Connection", b"keep-alive"),
    (b"Content-Type", b"application/json"),
)
RESP_HEADERS = (
    (b"Content-Type", b"application/json; charset=utf-8"),
    (b"Content-Length", str(len(JSON)).encode()),
    (b"Date", b"Mon, 07 Dec 2026 18:00:00 GMT"),
    (b"Server", b"nginx"),
    (b"Cache-Control", b"no-store"),
)


def record(i: int) -> FlowRecord:
    start = 1_795_000_000.0 + i * 0.001
    captured = i % 10 == 0
    body = JSON * 4 if captured else JSON
    status = 404 if i % 7 == 0 else 200
    return FlowRecord(
        id=f"5eed0000{i:08x}",
        kind="http",
        mode="regular",
        start=start,
        end=start + 0.012,
        client=("127.0.0.1", 40000 + i % 20000),
        server=("127.0.0.1", 8000),
        request=RequestInfo(
            b"GET", f"http://api.example.test/v1/items/{i}?page=2", Message(REQ_HEADERS, 0, b"")
        ),
        response=ResponseInfo(status, b"OK", Message(RESP_HEADERS, len(body), body[:256])),
        rules=RulesInfo((("tag-api", "rules.yaml:3", ("tag",)),)) if i % 5 == 0 else None,
        bodies=CapturedBodies("", None, body) if captured else None,
    )


def batches(first: int, n: int) -> Iterator[list[FlowRecord]]:
    for start in range(first, first + n, BATCH):
        yield [record(i) for i in range(start, min(start + BATCH, first + n))]


def rss_mb() -> float:
    gc.collect()
    release_free_memory()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median milliseconds of ``fn``: wall clock, and this thread's CPU time
    (steadier on a shared machine, where the wall clock includes waiting)."""
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.thread_time()
        fn()
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.thread_time() - c) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def fill(sink: StoreSink, first: int, n: int) -> tuple[float, float, float]:
    """CPU seconds spent encoding the records' JSON (shared with the flow log
    in the proxy), appending them to the waiting rows (what a flow costs
    while no browser watches) and indexing them (when one looks)."""
    encode = wait = index = 0.0
    for batch in batches(first, n):
        t = time.thread_time()
        sink.encoded.lines(batch)
        t2 = time.thread_time()
        sink.prepare(batch)
        t3 = time.thread_time()
        sink.index_all()
        encode += t2 - t
        wait += t3 - t2
        index += time.thread_time() - t3
    return encode, wait, index


def has_header(name: str) -> Callable[[StoredFlow], bool]:
    def match(f: StoredFlow) -> bool:
        return any(k.lower() == name for k, _ in f.record.get("request", {}).get("headers", ()))

    return match


def speed_run(n: int, repeat: int) -> None:
    store = FlowStore(max_flows=n)
    sink = StoreSink(store)
    encode, wait, index = fill(sink, 0, n)
    print(f"## {n:,} flows (one in ten with 4 KB captured bodies), batches of {BATCH}\n")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n")
    print("| what | figure |\n|---|---|")
    print(f"| flow-log JSON (shared with the flow log), CPU per flow | {encode / n * 1e6:.1f} µs |")
    print(f"| waiting row (no browser watching), CPU per flow | {wait / n * 1e6:.1f} µs |")
    print(f"| indexing (a browser or API client looks), CPU per flow | {index / n * 1e6:.1f} µs |")
    print(f"| store size (records + bodies) | {store.size_bytes / 2**20:.1f} MiB |")
    print(f"| file size (with WAL) | {_file_mb(store.path):.1f} MiB |\n")
    print("| read | wall (ms) | CPU (ms) |\n|---|---|---|")
    last = store.query(limit=1)[0][0]["id"]
    reads: list[tuple[str, Callable[[], object]]] = [
        ("list 500, newest first (offset 0)", lambda: store.query(None, 0, 500)),
        (f"list 500 at offset {n // 2:,}", lambda: store.query(None, n // 2, 500)),
        (f"list 500 at offset {n - 500:,}", lambda: store.query(None, n - 500, 500)),
        ("list 500, oldest first", lambda: store.query(None, 0, 500, newest_first=False)),
        ("filter on the summary (status 404), page 1", lambda: store.query(_is_404, 0, 500)),
        ("filter parsing every record (a header)", lambda: store.query(has_header("x-none"))),
        ("filter reading a body on 1 in 7 flows", lambda: store.query(_body_has)),
        ("get one flow + its record", lambda: store.get(last).record),  # type: ignore[union-attr]
        ("one body", lambda: store.body(last, "response")),
    ]
    for name, fn in reads:
        wall, cpu = timed(fn, repeat)
        print(f"| {name} | {wall:.1f} | {cpu:.1f} |")
    print()
    sink.close()


def _is_404(f: StoredFlow) -> bool:
    return bool(f.summary["status"] == 404)


def _body_has(f: StoredFlow) -> bool:
    if f.summary["status"] != 404:
        return False
    body = f.body("response")
    return body is not None and b'"id": 39' in body


def _file_mb(path: str) -> float:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p)) / 2**20


def rss_run(total: int, cap: int) -> None:
    store = FlowStore(max_flows=cap)
    sink = StoreSink(store)
    base = rss_mb()
    fill(sink, 0, cap)
    full = rss_mb()
    fill(sink, cap, total - cap)
    end = rss_mb()
    print(f"## RSS: {total:,} flows into a store capped at {cap:,}\n")
    print("| point | RSS (MiB) |\n|---|---|")
    print(f"| empty store | {base:.1f} |")
    print(f"| after {cap:,} flows (store full) | {full:.1f} |")
    print(f"| after {total:,} flows ({store.dropped:,} dropped) | {end:.1f} |")
    print(f"| growth from full to end | {(end / full - 1) * 100:+.1f}% |")
    print(f"\nSQLite page cache: {CACHE_KIB // 1024} MiB per connection, 2 connections.")
    sink.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rss-flows", type=int, default=200_000)
    ap.add_argument("--rss-cap", type=int, default=10_000)
    args = ap.parse_args()
    speed_run(args.flows, args.repeat)
    rss_run(args.rss_flows, args.rss_cap)


if __name__ == "__main__":
    main()
