"""The in-process exchange: what one keep-alive GET costs the sans-IO core.

    python -m bench.exchange_bench                 # 20,000 exchanges, 5 rounds
    python -m bench.exchange_bench -n 50000 --rounds 7
    python -m bench.exchange_bench --profile 25    # and the top 25 functions (cProfile)

No sockets: the root layer (``ClientLayers``, what the shell drives) is fed
the bytes the shell would feed it for N exchanges on one keep-alive
connection: the client's ``GET http://127.0.0.1:8080/small`` (absolute form,
``Host`` only, as wrk sends it in bench/run.py's scenario a), then the
upstream's 100-byte answer in one read. Ten rules that match none of these
requests are loaded, the same ten bench/run.py's tapproxy runs with
(bench/rules_bench.py's ``rule_yaml``), and the listener's route asks them
too, as in the server. Each exchange's ``DONE`` flow is then turned into the
flow log's line as the sinks do: ``to_record()``, then
``proxy.flow.jsonview.record_to_json`` and ``proxy.sinks.jsonenc.dumps``.

The phases run in batches (all N exchanges, then all N records, ...) as the
dispatcher takes finished flows in batches, and each phase is reported:

* µs per exchange (the best and the median of the rounds, ``perf_counter``);
* memory blocks allocated per exchange, exact (bench/alloc_counter.py: a
  hook on CPython's allocator; every tuple, dict, str and bytes counts,
  even one freed at once), and blocks still held per finished exchange
  after the core phase (``sys.getallocatedblocks``: the exchange kept for
  the sinks);
* function calls per exchange under cProfile: Python functions, and C
  functions (builtins and methods) apart.

Not a test: figures vary with the machine and its load. Run it pinned and
quiet (``taskset -c 0 nice -n -5``, or at least on an idle machine) and
compare runs of the same build only.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.alloc_counter import load as load_alloc_counter
from bench.rules_bench import rule_yaml
from proxy.flow.jsonview import record_to_json
from proxy.layers.commands import CLIENT, Command, Hook, OpenServer
from proxy.layers.events import DataReceived, ServerOpened
from proxy.layers.root import ClientLayers
from proxy.rules import RuleSet, SourceText, load_sources
from proxy.session.config import SessionConfig
from proxy.session.routing import Router
from proxy.sinks.jsonenc import dumps

RULES = 10
PEER = ("127.0.0.1", 40_000)
ORIGIN = ("127.0.0.1", 8080)
REQUEST = b"GET http://127.0.0.1:8080/small HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
PHASES = ("exchange", "record", "json", "encode")


def ruleset(n: int = RULES) -> RuleSet:
    """The benchmark's ``n`` non-matching rules, loaded as ``--rules`` loads them."""
    text = "version: 1\nrules:\n" + "".join(rule_yaml(i) for i in range(n))
    return load_sources([SourceText(Path("/bench/rules.yaml"), text)])


class Connection:
    """One client connection's layers, fed as the shell feeds them."""

    def __init__(self, rules: RuleSet) -> None:
        def current() -> RuleSet:
            return rules

        config = SessionConfig(rules=current, route=Router("regular", None, None, current))
        self.layers = ClientLayers(config, PEER)
        self.client_data = DataReceived(CLIENT, REQUEST)

    def exchange(self) -> Any:
        """One request and its response; the finished flow (the DONE hook's)."""
        layers = self.layers
        out = layers.handle(self.client_data)
        for command in out:
            if type(command) is OpenServer:  # the first exchange only: then kept alive
                out = layers.handle(ServerOpened(command.conn, ORIGIN, reused=False))
        conn = out[-1].conn  # the request's SendData names the server connection
        return _done(layers.handle(DataReceived(conn, RESPONSE)))


def _done(out: list[Command]) -> Any:
    last = out[-1]
    if type(last) is not Hook:
        raise RuntimeError(f"the exchange did not end with its DONE hook: {out!r}")
    return last.flow


@dataclass
class Batch:
    """What one phase produced for every exchange of a round."""

    flows: list[Any]
    records: list[Any]
    views: list[dict[str, Any]]
    lines: list[bytes]


def _phases(conn: Connection, n: int) -> tuple[list[Callable[[], None]], Batch]:
    batch = Batch([], [], [], [])

    def exchange() -> None:
        ex, flows = conn.exchange, batch.flows
        for _ in range(n):
            flows.append(ex())

    def record() -> None:
        batch.records = [f.to_record() for f in batch.flows]

    def json_view() -> None:
        batch.views = [record_to_json(r) for r in batch.records]

    def encode() -> None:
        batch.lines = [dumps(v) for v in batch.views]

    return [exchange, record, json_view, encode], batch


def timings(conn: Connection, n: int, rounds: int) -> dict[str, list[float]]:
    """µs per exchange of each phase, one figure per round (gc as in the proxy)."""
    out: dict[str, list[float]] = {p: [] for p in PHASES}
    for _ in range(rounds):
        steps, _batch = _phases(conn, n)
        for name, step in zip(PHASES, steps, strict=True):
            t0 = time.perf_counter()
            step()
            out[name].append((time.perf_counter() - t0) * 1e6 / n)
    return out


def allocations(conn: Connection, n: int) -> tuple[dict[str, float], float] | None:
    """Blocks allocated per exchange by each phase, and blocks held per finished
    exchange after the core phase; None without the allocation counter."""
    counter = load_alloc_counter()
    if counter is None:
        return None
    steps, _batch = _phases(conn, n)
    gc.collect()
    gc.disable()  # a collection inside a phase would count its own work
    held_before = sys.getallocatedblocks()
    per: dict[str, float] = {}
    held = 0.0
    counter.install()
    try:
        for name, step in zip(PHASES, steps, strict=True):
            start = counter.count()
            step()
            per[name] = (counter.count() - start) / n
            if name == "exchange":
                held = (sys.getallocatedblocks() - held_before) / n
    finally:
        counter.uninstall()
        gc.enable()
    return per, held


def calls(conn: Connection, n: int, top: int) -> dict[str, tuple[float, float]]:
    """(Python, C) function calls per exchange of each phase under cProfile."""
    steps, _batch = _phases(conn, n)
    out: dict[str, tuple[float, float]] = {}
    whole = cProfile.Profile()
    for name, step in zip(PHASES, steps, strict=True):
        prof = cProfile.Profile()
        prof.enable()
        step()
        prof.disable()
        whole.enable()
        step()  # a second run of the same phase for the combined profile
        whole.disable()
        py = c = 0
        for entry in prof.getstats():
            if isinstance(entry.code, str):
                c += entry.callcount
            else:
                py += entry.callcount
        # Less the phase's own closure and the profiler's disable() call.
        out[name] = ((py - 1) / n, (c - 1) / n)
    if top:
        print(f"\ncProfile, all phases, top {top} by own time (each phase run twice):")
        stats = pstats.Stats(whole, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(top)
    return out


def report(n: int, rounds: int, top: int) -> None:
    rules = ruleset()
    conn = Connection(rules)
    for _ in range(2000):  # warm-up: the first exchange opens the server connection
        conn.exchange().to_record()
    times = timings(conn, n, rounds)
    allocs = allocations(conn, n)
    counts = calls(Connection(rules), n, top)

    print(f"\nbench/exchange_bench.py: {n} keep-alive exchanges x {rounds} rounds,")
    print(f"{len(rules.rules)} non-matching rules, Python {sys.version.split()[0]}")
    columns = ("µs best", "µs median", "blocks", "py calls", "C calls")
    print(f"{'phase':<10}" + "".join(f" {c:>10}" for c in columns))
    total = [0.0] * 5
    for name in PHASES:
        best, med = min(times[name]), statistics.median(times[name])
        blocks = allocs[0][name] if allocs is not None else float("nan")
        py, c = counts[name]
        row = (best, med, blocks, py, c)
        for i, v in enumerate(row):
            total[i] += v
        print(f"{name:<10}" + "".join(f" {v:10.1f}" for v in row))
    print(f"{'total':<10}" + "".join(f" {v:10.1f}" for v in total))
    if allocs is None:
        print("blocks: not measured (no C compiler or Python headers for bench/alloc_counter.py)")
    else:
        print(f"blocks held per finished exchange (kept for the sinks): {allocs[1]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=20_000, help="exchanges per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", type=int, default=0, metavar="TOP", help="print the top functions")
    args = ap.parse_args()
    report(args.n, args.rounds, args.profile)


if __name__ == "__main__":
    main()
