"""Small Python load clients for bench/run.py (each run as its own pinned process).

    python -m bench.clients idle --port P --target T --host H -n 1000
        open N keep-alive connections, one request each, print ``READY ok=N``,
        hold them open until stdin closes (or --hold seconds pass), then exit.
    python -m bench.clients count --port P --target T --host H -n 100000 -c 8
        N requests in all over C keep-alive connections (as fast as they go,
        bounded by --max-seconds); prints one JSON line with the count done.
    python -m bench.clients seq --port P --target T --host H -n 2000 --warmup 200
        N requests one at a time over one keep-alive connection; prints one
        JSON line with the p50/p99/mean latency in microseconds.

``--port`` is what to connect to (the proxy, or the origin for direct);
``--target`` is the request target (absolute-form through a proxy).
Every loop is bounded in count and time; only 127.0.0.1 is ever dialled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import sys
import time

from bench.common import raise_nofile


def request_bytes(target: str, host: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tapproxy-bench\r\n\r\n".encode()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError(f"no Content-Length in {head[:200]!r}")


# -- idle connections ------------------------------------------------------------


async def _one_idle(port: int, req: bytes, timeout: float) -> asyncio.StreamWriter:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    writer.write(req)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    await asyncio.wait_for(reader.readexactly(_content_length(head)), timeout)
    return writer


async def idle_main(args: argparse.Namespace) -> int:
    req = request_bytes(args.target, args.host)
    sem = asyncio.Semaphore(64)

    async def one() -> asyncio.StreamWriter | BaseException:
        async with sem:
            try:
                return await _one_idle(args.port, req, 20.0)
            except Exception as e:  # reported, not raised
                return e

    results = await asyncio.gather(*(one() for _ in range(args.n)))
    writers = [r for r in results if isinstance(r, asyncio.StreamWriter)]
    errors = [repr(r) for r in results if not isinstance(r, asyncio.StreamWriter)]
    print(f"READY ok={len(writers)} failed={len(errors)} {errors[:1]}", flush=True)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), args.hold)
    for w in writers:
        w.close()
    return 0


# -- a counted number of requests ------------------------------------------------


async def count_main(args: argparse.Namespace) -> int:
    req = request_bytes(args.target, args.host)
    left = args.n
    done = 0
    errors: list[str] = []
    deadline = time.monotonic() + args.max_seconds

    async def conn() -> None:
        nonlocal left, done
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        try:
            while left > 0 and time.monotonic() < deadline:
                left -= 1
                writer.write(req)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
                await reader.readexactly(_content_length(head))
                if not head.startswith(b"HTTP/1.1 200"):
                    raise ValueError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                done += 1
        finally:
            writer.close()

    t0 = time.monotonic()
    results = await asyncio.gather(*(conn() for _ in range(args.c)), return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    print(
        json.dumps({"done": done, "seconds": time.monotonic() - t0, "errors": errors[:3]}),
        flush=True,
    )
    return 0 if not errors else 1


# -- sequential latency ----------------------------------------------------------


def seq_main(args: argparse.Namespace) -> int:
    req = request_bytes(args.target, args.host)
    sock = socket.create_connection(("127.0.0.1", args.port), 10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    lat: list[float] = []
    deadline = time.monotonic() + args.max_seconds
    for i in range(args.warmup + args.n):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter_ns()
        sock.sendall(req)
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("connection closed by peer")
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        need = _content_length(head)
        while len(buf) < need:
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("connection closed mid-body")
            buf += chunk
        buf = buf[need:]
        t1 = time.perf_counter_ns()
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"bad response: {head[:80]!r}")
        if i >= args.warmup:
            lat.append((t1 - t0) / 1000)
    sock.close()
    lat.sort()
    out = {
        "n": len(lat),
        "p50_us": statistics.median(lat),
        "p99_us": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "mean_us": statistics.fmean(lat),
    }
    print(json.dumps(out), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("idle", "count", "seq"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--target", required=True)
        p.add_argument("--host", required=True)
        p.add_argument("-n", type=int, default={"idle": 1000, "count": 100_000}.get(name, 2000))
        if name != "idle":
            p.add_argument("--max-seconds", type=float, default=120.0)
    sub.choices["idle"].add_argument("--hold", type=float, default=300.0)
    sub.choices["count"].add_argument("-c", type=int, default=8, help="connections")
    sub.choices["seq"].add_argument("--warmup", type=int, default=200)
    args = ap.parse_args()
    raise_nofile()
    if args.cmd == "idle":
        return asyncio.run(idle_main(args))
    if args.cmd == "count":
        return asyncio.run(count_main(args))
    return seq_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
