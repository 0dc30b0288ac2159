"""Scenario e of ``python -m bench.run``: memory.

RSS idle, with 1000 idle keep-alive connections (KB per connection), and
after 1k vs 100k requests on a separate fresh proxy (growth), measured with
the Python clients of ``bench/clients.py``.
"""

from __future__ import annotations

import json
import subprocess
import time

from bench.common import ROOT, tree_rss_kb
from bench.harness import Bench, log
from bench.peers import Running
from bench.report import Column, Table


def _idle_conns(bench: Bench, run: Running) -> tuple[float, float, int]:
    """(RSS idle KB, RSS with N idle connections KB, connections held)."""
    assert run.proc is not None
    bench.seq(run, 20, 0, record=False)  # warm the code paths once
    time.sleep(0.5)
    idle = tree_rss_kb(run.proc.pid)
    cmd = bench.client_cmd("idle", run, bench.s.idle_conns, "--hold", "120")
    bench.commands.setdefault("e idle client", " ".join(cmd))
    client = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert client.stdout is not None and client.stdin is not None
        line = client.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"idle client: {line.strip()} {client.stderr.read()[-300:]}")
        ok = int(line.split("ok=")[1].split()[0])
        if ok < bench.s.idle_conns:
            raise RuntimeError(f"only {ok} of {bench.s.idle_conns} connections: {line}")
        time.sleep(1.0)
        with_conns = tree_rss_kb(run.proc.pid)
        client.stdin.close()
        client.wait(30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    return idle, with_conns, ok


def _flows(bench: Bench, run: Running) -> tuple[float, float, int, int]:
    """(RSS after the small count, RSS after the large count, counts done)."""
    assert run.proc is not None
    counts = []
    rss = []
    for n in (bench.s.flows_small, bench.s.flows_large - bench.s.flows_small):
        cmd = bench.client_cmd("count", run, n, "-c", "8", "--max-seconds", "150")
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=200)
        bench.commands.setdefault("e count client", " ".join(cmd))
        if not r.stdout.strip():
            raise RuntimeError(f"count client: {r.stderr.strip()[-300:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        if res["errors"]:
            raise RuntimeError(f"count client errors: {res['errors']}")
        counts.append(res["done"])
        time.sleep(1.0)
        rss.append(tree_rss_kb(run.proc.pid))
    return rss[0], rss[1], counts[0], counts[0] + counts[1]


def memory(bench: Bench) -> Table:
    s = bench.s
    peers = [p for p in bench.peers if p != "direct"]
    table = Table(
        f"e. memory: RSS idle, with {s.idle_conns} idle keep-alive connections, after "
        f"{s.flows_small} vs {s.flows_large} requests, {s.runs} run(s)",
        [
            Column("idle", "RSS idle MB", 1),
            Column("with", f"RSS +{s.idle_conns} conns MB", 1),
            Column("kb_conn", "KB per idle conn", 1),
            Column("rss_small", f"RSS after {s.flows_small // 1000}k req MB", 1),
            Column("rss_large", f"RSS after {s.flows_large // 1000}k req MB", 1),
            Column("growth", "growth %", 1),
        ],
        peers,
    )
    table.footnotes.append(
        "RSS idle: after 20 warm-up requests. KB per connection = (RSS with - RSS idle) "
        f"/ {s.idle_conns}; each connection sent one request and stays open. The request "
        "counts run on a separate fresh proxy (bench/clients.py count, 8 keep-alive "
        "connections); growth = after "
        f"{s.flows_large} ÷ after {s.flows_small} - 1."
    )
    for i in range(s.runs):
        for name in peers:
            run = bench.start(name, "e", table)
            if run is None:
                continue
            try:
                idle, with_conns, ok = _idle_conns(bench, run)
                kb = (with_conns - idle) / ok
                table.add(name, "idle", idle / 1024)
                table.add(name, "with", with_conns / 1024)
                table.add(name, "kb_conn", kb)
                log(
                    f"  e run {i + 1} {name:10} idle {idle / 1024:.1f} MB, with {ok} conns "
                    f"{with_conns / 1024:.1f} MB, {kb:.1f} KB/conn"
                )
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                table.note(name, f"idle connections failed: {e}")
                log(f"  e {name}: idle connections failed: {e}")
            finally:
                if not run.alive():
                    table.note(name, f"crashed: {run.exit_reason()}")
                run.stop()
            run = bench.start(name, "e", table)
            if run is None:
                continue
            try:
                small, large, n_small, n_large = _flows(bench, run)
                if not run.alive():
                    table.note(name, f"crashed: {run.exit_reason()}")
                    continue
                if n_large < s.flows_large * 0.95:
                    table.note(
                        name, f"run {i + 1}: only {n_large} requests in the time bound (150 s)"
                    )
                table.add(name, "rss_small", small / 1024)
                table.add(name, "rss_large", large / 1024)
                table.add(name, "growth", (large / small - 1) * 100)
                log(
                    f"  e run {i + 1} {name:10} after {n_small}: {small / 1024:.1f} MB, "
                    f"after {n_large}: {large / 1024:.1f} MB"
                )
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                table.note(name, f"request counts failed: {e}")
                log(f"  e {name}: request counts failed: {e}")
            finally:
                run.stop()
    return table
