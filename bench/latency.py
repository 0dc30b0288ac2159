"""Scenario f of ``python -m bench.run``: added latency.

One request at a time over one keep-alive connection (``bench/clients.py
seq``): p50/p99 per peer, added over going direct, and over the bare relay.
"""

from __future__ import annotations

import subprocess

from bench.harness import Bench, log
from bench.peers import RELAY
from bench.report import Column, Table


def latency(bench: Bench) -> Table:
    s = bench.s
    table = Table(
        f"f. latency of one request at a time ({s.seq_requests} sequential requests over "
        f"one keep-alive connection after {s.seq_warmup} warm-up), {s.runs} run(s)",
        [
            Column("p50", "p50 µs"),
            Column("p99", "p99 µs"),
            Column("add50", "added p50 µs"),
            Column("add99", "added p99 µs"),
            Column("over_relay", "p50 over bare relay µs"),
            Column("bg", "others' CPUs", 2),
        ],
        list(bench.peers),
    )
    table.footnotes.append(
        "Client: bench/clients.py seq (blocking socket, TCP_NODELAY) on CPU 1. Added = "
        "peer - direct within the same run; over bare relay = peer p50 - bare relay p50 "
        "(the proxy's own work, without the two extra loopback hops and cross-CPU "
        "wake-ups that any proxy pays)."
    )
    peers = ["direct", *[p for p in bench.peers if p != "direct"]]
    if RELAY in peers:  # the relay first, so that every peer has its figure in the run
        peers.remove(RELAY)
        peers.insert(1, RELAY)
    for i in range(s.runs):
        direct: dict[str, float] | None = None
        relay: dict[str, float] | None = None
        for name in peers:
            run = bench.start(name, "f", table)
            if run is None:
                continue
            try:
                meter = bench.quiet(run)
                res = bench.seq(run, s.seq_requests, s.seq_warmup)
                table.add(name, "bg", meter.stop())
                if not run.alive():
                    table.note(name, f"crashed: {run.exit_reason()}")
                    continue
                if name == "direct":
                    direct = res
                if name == RELAY:
                    relay = res
                if relay is not None and name not in ("direct",):
                    table.add(name, "over_relay", res["p50_us"] - relay["p50_us"])
                if name in bench.peers:
                    table.add(name, "p50", res["p50_us"])
                    table.add(name, "p99", res["p99_us"])
                    if direct is not None:
                        table.add(name, "add50", res["p50_us"] - direct["p50_us"])
                        table.add(name, "add99", res["p99_us"] - direct["p99_us"])
                log(
                    f"  f run {i + 1} {name:10} p50 {res['p50_us']:.0f} µs "
                    f"p99 {res['p99_us']:.0f} µs"
                )
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
                table.note(name, f"run {i + 1} failed: {e}")
                log(f"  f {name}: failed: {e}")
            finally:
                run.stop()
    return table
