"""tapproxy against mitmdump, proxy.py and a bare asyncio relay, side by side.

    python -m bench.run                  # everything, 3 runs each (about 35-45 min)
    python -m bench.run --quick          # 1 run, shorter durations (about 8-10 min)
    python -m bench.run --only a,b,d     # a subset of the scenarios
    python -m bench.run --peers tapproxy,bare\\ relay --runs 5

Scenarios (docs/performance.md has the details and the targets):

a. small GET (100 B), keep-alive, 32 connections, wrk: req/s, p50/p99, proxy CPU
b. the same with a new connection per request (16 concurrent, Connection: close)
c. bulk download: 1 GiB on one stream, 8 parallel 256 MiB streams (curl): MB/s, peak RSS
d. HTTPS interception, fresh connection per request, same / distinct SNI (bench/tls_bench.py)
e. memory: RSS idle, with 1000 idle keep-alive connections, after 1k vs 100k requests
f. added latency: one request at a time over one keep-alive connection, proxy minus direct
g. tapproxy --workers 2 against 1 worker under a's load (bench/workers_bench.py)
h. HTTP/2: h2load -c 10 -m 100 through reverse proxies to nghttpd, h2c and TLS with
   interception: req/s, CPU per request, RSS (bench/h2_bench.py)

Everything runs on 127.0.0.1. The proxy under test is pinned to CPU 0, the
load generators and the origin (nginx from Debian, with its own config in a
temp dir; bench/upstream.py without it) to CPU 1. Each proxy is started
fresh for each measurement and stopped after it. Each figure is the median
of the runs with (min-max); ratios are computed within each run. A peer that
cannot be installed or crashes is reported with the reason. The Markdown is
printed and saved to bench/results/<date>-<host>.md (``-quick`` and the
scenario letters are appended for partial runs, the time of day when that
file exists already; ``--out`` overrides).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

from bench import bulk, gets, h2_bench, latency, memory, tls_bench, workers_bench
from bench.common import LOAD_CPU, PROXY_CPU, ROOT, cpu_model, raise_nofile, tool_version
from bench.harness import Bench, Settings, log
from bench.peers import EXTRA_PEERS, PEERS, RELAY, peer_version

SCENARIOS = "abcdefgh"


# -- the report ----------------------------------------------------------------------


def header(settings: Settings, peers: tuple[str, ...], argv: list[str]) -> str:
    versions = {
        "python (tapproxy, bare relay, clients)": sys.version.split()[0],
        "tapproxy": peer_version("tapproxy"),
        "mitmproxy": peer_version("mitmdump") if "mitmdump" in peers else "not selected",
        "proxy.py": peer_version("proxy.py") if "proxy.py" in peers else "not selected",
        "nginx": tool_version(["nginx", "-v"]).replace("nginx version: ", ""),
        "wrk": tool_version(["wrk", "-v"]).split(" Copyright")[0],
        "curl": tool_version(["curl", "--version"]),
        "h2load, nghttpd": tool_version(["h2load", "--version"]),
        "kernel": platform.release(),
    }
    lines = [
        f"# tapproxy benchmark, {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Command: `{' '.join(['python -m bench.run', *argv])}`",
        "",
        f"- machine: {os.cpu_count()} CPUs (nproc {os.cpu_count()}), {cpu_model()}, "
        f"host {socket.gethostname()}",
        f"- pinning: proxy on CPU {PROXY_CPU}; wrk, curl, Python clients and the origin on CPU "
        f"{LOAD_CPU} (taskset)",
        f"- runs: {settings.runs} per figure (median, min-max in parentheses)",
        "- others' CPUs: how many CPUs, on average, processes other than the benchmark's "
        "used during a measurement (other test runs on a shared machine skew the figures); "
        f"before each measurement the script waits up to {settings.quiet_wait:g} s (5 min in "
        "all) for that to fall below 0.3",
    ]
    lines += [f"- {k}: {v}" for k, v in versions.items()]
    return "\n".join(lines) + "\n"


def scenario(bench: Bench, letter: str, workdir: Path) -> str:
    """The Markdown of one scenario (its table, or tables)."""
    settings = bench.s
    if letter == "a":
        md = gets.small_gets(bench, close=False).markdown()
    elif letter == "b":
        md = gets.small_gets(bench, close=True).markdown()
    elif letter == "c":
        md = bulk.bulk(bench).markdown()
    elif letter == "d":
        tls_peers = tuple(p for p in bench.peers if p != RELAY)
        table, leaf = tls_bench.run_scenario(
            workdir / "tls",
            runs=settings.runs,
            duration=settings.tls_seconds,
            warmup=1.0,
            peers=tls_peers,
            commands=bench.commands,
            log=log,
            quiet_wait=settings.quiet_wait,
        )
        md = table.markdown() + "\n" + leaf
    elif letter == "e":
        md = memory.memory(bench).markdown()
    elif letter == "g":
        md = workers_bench.run_scenario(
            workdir / "workers",
            runs=settings.runs,
            duration=settings.load_seconds,
            log=log,
            quiet_wait=settings.quiet_wait,
            commands=bench.commands,
        ).markdown()
    elif letter == "h":
        md = "\n".join(
            t.markdown()
            for t in h2_bench.run_scenario(
                workdir / "h2",
                runs=settings.runs,
                requests=settings.h2_requests,
                peers=bench.peers,
                log=log,
                quiet_wait=settings.quiet_wait,
                commands=bench.commands,
            )
        )
    else:
        md = latency.latency(bench).markdown()
    return md


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="1 run, shorter durations")
    ap.add_argument("--only", default=SCENARIOS, help="scenarios to run, e.g. a,c (default all)")
    ap.add_argument("--runs", type=int, help="runs per figure (default 3, --quick 1)")
    ap.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated subset of: {','.join(PEERS + EXTRA_PEERS)}",
    )
    ap.add_argument("--out", type=Path, help="where to save the Markdown")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=5.0,
        help="before each measurement, wait up to this many seconds for other "
        "processes to use < 0.3 CPU (0: don't wait; at most 5 min in all); "
        "default 5",
    )
    args = ap.parse_args()
    only = [c for c in args.only.replace(",", "").strip().lower() if c in SCENARIOS]
    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    bad = [p for p in peers if p not in PEERS + EXTRA_PEERS]
    if bad or not only:
        ap.error(f"unknown peers {bad}" if bad else "no scenario selected")
    runs = args.runs or (1 if args.quick else 3)
    settings = Settings(
        runs=runs,
        load_seconds=3.0 if args.quick else 10.0,
        warmup_seconds=1.0 if args.quick else 2.0,
        tls_seconds=3.0 if args.quick else 10.0,
        h2_requests=5_000 if args.quick else 20_000,
        quiet_wait=args.quiet_wait,
    )
    raise_nofile()
    log("versions (installs mitmproxy / proxy.py venvs on first use)...")
    head = header(settings, peers, sys.argv[1:])
    print(head)
    started = time.monotonic()
    sections: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tapproxy-bench-") as d:
        bench = Bench(settings, peers, Path(d))
        try:
            for letter in only:
                log(f"scenario {letter}...")
                t0 = time.monotonic()
                md = scenario(bench, letter, Path(d))
                md += f"\n_{letter}: {time.monotonic() - t0:.0f} s_\n"
                print(md, flush=True)
                sections.append(md)
        finally:
            bench.close()
    cmds = ["### Commands", "", "Ports are picked free at each start; paths are temp dirs.", ""]
    cmds += [f"- {k}: `{v}`" for k, v in bench.commands.items()]
    cmds.append(f"\nTotal time: {(time.monotonic() - started) / 60:.1f} min")
    tail = "\n".join(cmds) + "\n"
    print(tail)
    out = args.out
    if out is None:
        suffix = ("-quick" if args.quick else "") + (
            "" if "".join(only) == SCENARIOS else "-" + "".join(only)
        )
        name = f"{datetime.date.today().isoformat()}-{socket.gethostname()}{suffix}"
        out = ROOT / "bench" / "results" / f"{name}.md"
        if out.exists():  # a second run the same day: keep the first
            out = out.with_name(f"{name}-{datetime.datetime.now().strftime('%H%M')}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(head + "\n" + "\n".join(sections) + "\n" + tail)
    log(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
