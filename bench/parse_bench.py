"""What one HTTP/1.1 head costs our parser: µs and objects per message.

    python -m bench.parse_bench                  # the table
    python -m bench.parse_bench --profile chunked # cProfile of one kind

Four messages a proxy sees all day, each fed in one read to a parser that is
reused across messages (keep-alive) and drained to its ``EndOfMessage``:

- ``curl GET``: a small curl-like GET (4 lines);
- ``browser GET``: a 613-byte browser GET with cookies (11 lines);
- ``nginx 200``: nginx's response head and a 615-byte body (Content-Length);
- ``chunked 200``: a chunked response head and two small chunks.

Time: the best of ``--repeats`` runs of ``--number`` messages (the best run is
the one least disturbed by other processes on a shared machine), in µs per
message. Objects, two figures per message: every memory block CPython
allocates while parsing it, temporaries included (exact, bench/alloc_counter.py's
hook on the allocator; "n/a" without a C compiler), and the blocks still held
once it is parsed while its events are kept (``sys.getallocatedblocks``
before and after 2,000 messages): what a parsed message is made of. The
garbage collector is off while either is counted.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.alloc_counter import load as load_alloc_counter
from proxy.http1 import EndOfMessage, Event, RequestParser, ResponseParser

CURL_GET = (
    b"GET /small HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
)
BROWSER_GET = (
    b"GET /catalog/items?page=2&sort=price HTTP/1.1\r\n"
    b"Host: shop.example.com\r\n"
    b"Connection: keep-alive\r\n"
    b'sec-ch-ua: "Chromium";v="124", "Not-A.Brand";v="99"\r\n'
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
    b"(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,"
    b"image/avif,image/webp,*/*;q=0.8\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Referer: https://shop.example.com/catalog/items?page=1\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-GB,en;q=0.9\r\n"
    b"Cookie: session=9f8e7d6c5b4a39281706f5e4d3c2b1a0; cart=3; theme=dark; "
    b"_ga=GA1.2.123456789.1700000000\r\n"
    b"\r\n"
)
NGINX_BODY = b"x" * 615
NGINX_200 = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.24.0\r\n"
    b"Date: Mon, 07 Dec 2026 21:13:19 GMT\r\n"
    b"Content-Type: text/html\r\n"
    b"Content-Length: 615\r\n"
    b"Last-Modified: Tue, 11 Apr 2023 01:45:34 GMT\r\n"
    b"Connection: keep-alive\r\n"
    b'ETag: "6434bbbe-267"\r\n'
    b"Accept-Ranges: bytes\r\n"
    b"\r\n" + NGINX_BODY
)
CHUNKED_200 = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.24.0\r\n"
    b"Date: Mon, 07 Dec 2026 21:13:19 GMT\r\n"
    b"Content-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"Connection: keep-alive\r\n"
    b"Vary: Accept-Encoding\r\n"
    b"Cache-Control: no-cache\r\n"
    b"\r\n"
    b"1a\r\n" + b'{"items": [1, 2, 3], "n": ' + b"\r\n"
    b"3\r\n" + b"3}\n" + b"\r\n"
    b"0\r\n\r\n"
)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    message: bytes
    method: bytes | None  # None: a request; else the method a response answers


CASES = (
    Case("curl GET", CURL_GET, None),
    Case("browser GET", BROWSER_GET, None),
    Case("nginx 200", NGINX_200, b"GET"),
    Case("chunked 200", CHUNKED_200, b"GET"),
)


def parse_one(case: Case) -> Callable[[list[Event]], None]:
    """A function that parses ``case.message`` once into the list it is given."""
    message = case.message
    if case.method is None:
        req = RequestParser()

        def run_request(out: list[Event]) -> None:
            req.feed(message)
            while True:
                event = req.next_event()
                assert event is not None, "incomplete message"
                out.append(event)
                if type(event) is EndOfMessage:
                    return

        return run_request
    resp = ResponseParser()
    method = case.method

    def run_response(out: list[Event]) -> None:
        resp.expect(method)
        resp.feed(message)
        while True:
            event = resp.next_event()
            assert event is not None, "incomplete message"
            out.append(event)
            if type(event) is EndOfMessage:
                return

    return run_response


def time_per_message(case: Case, number: int, repeats: int) -> float:
    """Best µs per message over ``repeats`` runs of ``number`` messages."""
    run = parse_one(case)
    best = float("inf")
    for _ in range(repeats):
        out: list[Event] = []
        start = time.perf_counter_ns()
        for _ in range(number):
            run(out)
            out.clear()
        best = min(best, (time.perf_counter_ns() - start) / number / 1000)
    return best


def blocks_per_message(case: Case, number: int = 2000) -> float:
    """Memory blocks left allocated per message while its events are kept."""
    run = parse_one(case)
    kept: list[list[Event]] = [[] for _ in range(number)]
    run([])  # warm up: first-use caches (regex, interned names) are not per message
    gc.collect()
    gc.disable()
    try:
        before = sys.getallocatedblocks()
        for out in kept:
            run(out)
        after = sys.getallocatedblocks()
    finally:
        gc.enable()
    return (after - before) / number


def allocations_per_message(case: Case, number: int = 2000) -> float | None:
    """Memory blocks allocated per message, temporaries included; None
    without the allocation counter (no C compiler or Python headers)."""
    counter = load_alloc_counter()
    if counter is None:
        return None
    run = parse_one(case)
    out: list[Event] = []
    run(out)  # warm up, as above
    out.clear()
    gc.collect()
    gc.disable()
    counter.install()
    try:
        start = counter.count()
        for _ in range(number):
            run(out)
            out.clear()
        allocated: int = counter.count() - start
    finally:
        counter.uninstall()
        gc.enable()
    return allocated / number


def table(number: int, repeats: int) -> str:
    rows = [f"{'message':<13} {'bytes':>6} {'µs/message':>11} {'allocs/message':>15} {'kept':>5}"]
    for case in CASES:
        us = time_per_message(case, number, repeats)
        allocs = allocations_per_message(case)
        shown = "n/a" if allocs is None else f"{allocs:.1f}"
        kept = blocks_per_message(case)
        rows.append(f"{case.name:<13} {len(case.message):>6} {us:>11.2f} {shown:>15} {kept:>5.0f}")
    return "\n".join(rows)


def profile(name: str, number: int) -> None:
    case = next(c for c in CASES if c.name.split()[0] == name.split()[0])
    run = parse_one(case)
    out: list[Event] = []
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(number):
        run(out)
        out.clear()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--number", type=int, default=3000, help="messages per timed run")
    ap.add_argument("--repeats", type=int, default=40, help="timed runs per case (best kept)")
    ap.add_argument(
        "--profile", metavar="KIND", help="cProfile one kind: curl, browser, nginx, chunked"
    )
    args = ap.parse_args(argv)
    if args.profile:
        profile(args.profile, args.number)
        return
    print(f"Python {sys.version.split()[0]}, best of {args.repeats} x {args.number} messages")
    print(table(args.number, args.repeats))


if __name__ == "__main__":
    main()
