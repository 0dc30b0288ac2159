"""Scenario g: does ``--workers 2`` beat one worker on this 2-core machine?

Same load as scenario a (wrk, 32 keep-alive connections, small GETs through
the proxy with the flow log on), run against tapproxy with one worker pinned
to the proxy CPU, as in a, and with two workers allowed on both CPUs. wrk and
the origin stay pinned to the load CPU in both cases, so the second worker
shares that CPU with them: the gain shows how much a core the load side
leaves idle is worth, not the ceiling of a machine with cores to spare.

    python -m bench.workers_bench              # 3 runs of 10 s
    python -m bench.workers_bench --quick      # 1 run of 3 s
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.common import PROXY_CPU, OtherLoad, launch, tree_cpu_seconds, wait_quiet
from bench.loadgen import run_wrk, wrk_script
from bench.origin import Origin, start_origin
from bench.peers import Running, _wait_log, tapproxy_rules
from bench.report import Column, Table

#: (row label, --workers, CPU to pin the proxy to; None: both CPUs).
SETUPS = (("1 worker, CPU 0", 1, PROXY_CPU), ("2 workers, CPUs 0-1", 2, None))


def _start(workdir: Path, workers: int, cpu: int | None) -> Running:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "tapproxy.log"
    cmd = [sys.executable, "-m", "proxy", "-q", "-p", "0", "--loop", "asyncio",
           "--workers", str(workers),
           "--flow-log", str(workdir / "flows.jsonl"),
           "--rules", str(tapproxy_rules(workdir))]  # fmt: skip
    p = launch(cmd, cpu=cpu, log=log)
    m = _wait_log(p, log, r"listening at \S+:(\d+)")
    return Running("tapproxy", p, int(m.group(1)))


def _measure(
    origin: Origin, run: Running, workdir: Path, duration: float, quiet_wait: float
) -> tuple[float, float, float, float]:
    """(req/s, p99 ms, proxy CPU-seconds, others' CPUs) of one measured wrk run."""
    assert run.proc is not None
    target = origin.url("/small")
    script = wrk_script(workdir, target=target, host=f"127.0.0.1:{origin.http_port}")
    url = f"http://127.0.0.1:{run.port}/"
    run_wrk(url, script, connections=32, duration=2)  # warm-up
    pids = (run.proc.pid, *(p.pid for p in origin.procs))
    wait_quiet(pids, max_wait=quiet_wait)
    meter = OtherLoad(*pids)
    cpu0 = tree_cpu_seconds(run.proc.pid)
    res = run_wrk(url, script, connections=32, duration=duration)
    cpu = tree_cpu_seconds(run.proc.pid) - cpu0
    return res.rps, res.p99_us / 1000, cpu, meter.stop()


def run_scenario(
    workdir: Path,
    *,
    runs: int,
    duration: float,
    log: Callable[[str], None] = print,
    quiet_wait: float = 5.0,
    commands: dict[str, str] | None = None,
) -> Table:
    table = Table(
        f"g. --workers 2 against 1: scenario a's load (wrk -t1 -c32 keep-alive, flow log on), "
        f"{duration:g} s, {runs} run(s)",
        [
            Column("rps", "req/s"),
            Column("ratio", "÷ 1 worker", 2),
            Column("p99", "p99 ms", 2),
            Column("cpu", "proxy CPU s (all workers)", 1),
            Column("bg", "others' CPUs", 2),
        ],
        [label for label, _, _ in SETUPS],
    )
    table.footnotes.append(
        "wrk and nginx stay pinned to CPU 1 in both rows, so the second worker shares "
        "CPU 1 with them. The ratio is within each run."
    )
    origin = start_origin(workdir / "origin")
    try:
        for i in range(runs):
            per_run: dict[str, float] = {}
            for label, workers, cpu in SETUPS:
                run = _start(workdir / f"{i}-{workers}", workers, cpu)
                if commands is not None and run.proc is not None:
                    commands.setdefault(f"g proxy ({label})", " ".join(run.proc.cmd))
                try:
                    rps, p99, cpu_s, bg = _measure(origin, run, workdir, duration, quiet_wait)
                finally:
                    run.stop()
                per_run[label] = rps
                for key, value in (("rps", rps), ("p99", p99), ("cpu", cpu_s), ("bg", bg)):
                    table.add(label, key, value)
                log(f"  g run {i + 1} {label:20} {rps:9.0f} req/s cpu {cpu_s:.1f} s")
            table.add_ratio("ratio", per_run, SETUPS[0][0])
    finally:
        origin.stop()
    return table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 run of 3 s")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--quiet-wait", type=float, default=5.0)
    args = ap.parse_args()
    runs, duration = (1, 3.0) if args.quick else (args.runs, args.duration)
    with tempfile.TemporaryDirectory(prefix="tapproxy-workers-") as d:
        table = run_scenario(
            Path(d), runs=runs, duration=duration, quiet_wait=args.quiet_wait,
            log=lambda m: print(m, file=sys.stderr),
        )  # fmt: skip
    print(table.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
