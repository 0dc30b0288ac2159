"""Scenarios a and b of ``python -m bench.run``: small GETs with wrk.

a. small GET (100 B), keep-alive, 32 connections: req/s, p50/p99, proxy CPU;
b. the same with a new connection per request (16 concurrent, Connection: close).
Ratios are within each run (peer ÷ bare relay of the same run).
"""

from __future__ import annotations

import subprocess

from bench.common import tree_cpu_seconds
from bench.harness import Bench, log
from bench.loadgen import run_wrk, wrk_script
from bench.peers import RELAY
from bench.report import Column, Table


def small_gets(bench: Bench, close: bool) -> Table:
    s = bench.s
    conns = 16 if close else 32
    letter = "b" if close else "a"
    what = "new connection per request (Connection: close)" if close else "keep-alive"
    table = Table(
        f"{letter}. small GET (100 B body), {what}, {conns} connections, "
        f"{s.load_seconds:g} s, {s.runs} run(s)",
        [
            Column("rps", "req/s"),
            Column("ratio", "÷ bare relay", 2),
            Column("p50", "p50 ms", 2),
            Column("p99", "p99 ms", 2),
            Column("cpu", "proxy CPU s"),
            Column("cpu_req", "proxy CPU µs/req"),
            Column("eff", "req per CPU-s ÷ bare relay", 2),
            Column("bg", "others' CPUs", 2),
        ],
        list(bench.peers),
    )
    table.footnotes.append(
        f"wrk -t1 -c{conns}, {s.warmup_seconds:g} s warm-up not counted; the ratio is "
        "within each run (peer ÷ bare relay of the same run). CPU s: utime+stime of "
        "the proxy (all its processes) from /proc/PID/stat over the measured run. "
        "req per CPU-s ÷ bare relay: requests per proxy CPU-second relative to the bare "
        "relay's in the same run; it holds up better than req/s when other processes "
        "share the proxy's CPU."
    )
    for i in range(s.runs):
        per_run: dict[str, float] = {}
        per_cpu: dict[str, float] = {}
        for name in bench.peers:
            run = bench.start(name, letter, table)
            if run is None:
                continue
            try:
                url, target, host = bench.target(run, "/small")
                script = wrk_script(bench.workdir, target=target, host=host, close=close)
                if s.warmup_seconds:
                    run_wrk(url, script, connections=conns, duration=s.warmup_seconds)
                meter = bench.quiet(run)
                cpu0 = tree_cpu_seconds(run.proc.pid) if run.proc else 0.0
                res = run_wrk(url, script, connections=conns, duration=s.load_seconds)
                cpu = tree_cpu_seconds(run.proc.pid) - cpu0 if run.proc else None
                table.add(name, "bg", meter.stop())
                bench.commands.setdefault(
                    f"{letter} wrk {'direct' if run.proc is None else 'via proxy'}",
                    res.cmd + f"   # script: {script.read_text().count(chr(10))} lines, "
                    f"target={target}, Host={host}, close={close}",
                )
                if not run.alive():
                    table.note(name, f"crashed: {run.exit_reason()}")
                    continue
                if res.error_text:
                    table.note(name, f"run {i + 1}: wrk errors: {res.error_text}")
                per_run[name] = res.rps
                table.add(name, "rps", res.rps)
                table.add(name, "p50", res.p50_us / 1000)
                table.add(name, "p99", res.p99_us / 1000)
                if cpu:
                    table.add(name, "cpu", cpu)
                    table.add(name, "cpu_req", cpu * 1e6 / max(1, res.requests))
                    per_cpu[name] = res.requests / cpu
                log(
                    f"  {letter} run {i + 1} {name:10} {res.rps:9.0f} req/s "
                    f"p50 {res.p50_us / 1000:.2f} ms p99 {res.p99_us / 1000:.2f} ms"
                    f" cpu {cpu or 0:.1f} s {res.error_text}"
                )
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                table.note(name, f"run {i + 1} failed: {e}")
                log(f"  {letter} {name}: failed: {e}")
            finally:
                run.stop()
        table.add_ratio("ratio", per_run, RELAY)
        table.add_ratio("eff", per_cpu, RELAY)
    return table
