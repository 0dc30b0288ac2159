"""What loaded rules cost: requests/s through tapproxy with 0, 10 and 1,000 rules.

    python -m bench.rules_bench                 # one run of each case, 5 s each
    python -m bench.rules_bench --runs 3 --seconds 10 --connections 32

tapproxy runs in regular mode with a flow log (JSON Lines, in a temp dir),
pinned to CPU 0; the origin (bench/upstream.py, 100-byte answers) and the
load generator (wrk with absolute-form requests, see bench/loadgen.py;
without wrk: a small asyncio keep-alive client) share CPU 1. Every case gets
a fresh proxy, a one-second warm-up, then the measured run.

Rule files are generated: N rules that do not match the benchmark's
requests, spread over the index's kinds (exact hosts, host globs with a
path prefix, a required header, host regexes with a method), and in the
"1 matches" cases one more rule at the end that does match (a response
``set_header``: the cost of a match and a head edit). The table gives
req/s and the proxy's CPU time per request, each with its ratio to "0 rules"
(an empty rules file), p50/p99 latency, and the CPU other processes used
meanwhile: on a busy machine req/s swings with the other load, CPU time per
request much less.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    LOAD_CPU,
    PROXY_CPU,
    OtherLoad,
    Proc,
    cpu_seconds,
    machine_line,
    start_tapproxy,
    start_upstream,
    wait_quiet,
)
from bench.loadgen import WRK, run_wrk, wrk_script

PATH = "/small"  # bench/upstream.py answers 100 bytes


def rule_yaml(i: int) -> str:
    """One rule that never matches a request for 127.0.0.1/small, of kind i % 4."""
    kind = i % 4
    if kind == 0:
        return (
            f"  - name: host-{i}\n    match: {{host: svc-{i}.internal}}\n"
            f'    request:\n      - set_header: {{x-rule: "{i}"}}\n'
        )
    if kind == 1:
        return (
            f"  - name: glob-{i}\n"
            f'    match: {{host: "*.zone-{i}.svc", path: {{prefix: /api/v{i}/}}}}\n'
            f'    respond: {{status: 200, body: "mock {i}\\n"}}\n'
        )
    if kind == 2:
        return (
            f"  - name: header-{i}\n    match: {{headers: {{x-tenant: t{i}}}}}\n"
            f'    response:\n      - set_header: {{x-tenant-seen: "{i}"}}\n'
        )
    return (
        f"  - name: regex-{i}\n"
        f"    match: {{host: {{regex: '^api-{i}\\.example$'}}, method: POST}}\n"
        f"    block: {{status: 403}}\n"
    )


MATCHING = (
    "  - name: bench-hit\n"
    "    match: {host: 127.0.0.1, path: /small}\n"
    "    response:\n      - set_header: {x-bench: hit}\n"
)


def write_rules(folder: Path, n: int, matching: bool) -> Path:
    path = folder / f"rules-{n}{'-hit' if matching else ''}.yaml"
    body = "".join(rule_yaml(i) for i in range(n)) + (MATCHING if matching else "")
    path.write_text("version: 1\nrules:" + ("\n" + body if body else " []\n"))
    check = subprocess.run(
        [sys.executable, "-m", "proxy", "rules", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check.returncode != 0:
        raise RuntimeError(f"generated rules do not load: {check.stderr[-500:]}")
    return path


@dataclass
class Case:
    label: str
    rules: int | None  # None: no --rules at all
    matching: bool = False


CASES = [
    Case("no --rules", None),
    Case("0 rules", 0),
    Case("10 rules, none match", 10),
    Case("10 rules, 1 matches", 10, True),
    Case("1,000 rules, none match", 1000),
    Case("1,000 rules, 1 matches", 1000, True),
]


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: str
    other: float
    cpu_us: float = 0.0  # proxy CPU time per request: robust when the machine is busy


# -- load ------------------------------------------------------------------------------


def load_wrk(workdir: Path, proxy: Proc, origin: Proc, conns: int, seconds: float) -> Result:
    target = f"http://127.0.0.1:{origin.port}{PATH}"
    script = wrk_script(workdir, target=target, host=f"127.0.0.1:{origin.port}")
    url = f"http://127.0.0.1:{proxy.port}"
    run_wrk(url, script, connections=conns, duration=1.0)  # warm-up
    meter = OtherLoad(proxy.pid, origin.pid)
    cpu0 = cpu_seconds(proxy.pid)
    r = run_wrk(url, script, connections=conns, duration=seconds)
    cpu = (cpu_seconds(proxy.pid) - cpu0) / max(1, r.requests) * 1e6
    return Result(r.rps, r.p50_us / 1000, r.p99_us / 1000, r.error_text, meter.stop(), cpu)


async def _client(port: int, origin: int, until: float, lat: list[float], errors: list[str]) -> int:
    req = (
        f"GET http://127.0.0.1:{origin}{PATH} HTTP/1.1\r\nHost: 127.0.0.1:{origin}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while time.monotonic() < until:
            t0 = time.monotonic()
            writer.write(req)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await asyncio.wait_for(reader.readexactly(length), 5)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode())
            lat.append(time.monotonic() - t0)
            done += 1
    except (OSError, asyncio.IncompleteReadError, TimeoutError) as e:
        errors.append(type(e).__name__)
    finally:
        writer.close()
    return done


async def _asyncio_load(port: int, origin: int, conns: int, seconds: float) -> Result:
    lat: list[float] = []
    errors: list[str] = []
    t0 = time.monotonic()
    counts = await asyncio.gather(
        *(_client(port, origin, t0 + seconds, lat, errors) for _ in range(conns))
    )
    elapsed = time.monotonic() - t0
    lat.sort()
    p50 = lat[len(lat) // 2] * 1000 if lat else 0.0
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
    errs = f"{len(errors)} errors" if errors else ""
    return Result(sum(counts) / elapsed, p50, p99, errs, 0.0)


def load_asyncio(proxy: Proc, origin: Proc, conns: int, seconds: float) -> Result:
    """Without wrk: keep-alive clients in this process (slower: it measures less)."""
    asyncio.run(_asyncio_load(proxy.port, origin.port, conns, 1.0))
    meter = OtherLoad(proxy.pid, origin.pid)
    cpu0 = cpu_seconds(proxy.pid)
    r = asyncio.run(_asyncio_load(proxy.port, origin.port, conns, seconds))
    r.other = meter.stop()
    r.cpu_us = (cpu_seconds(proxy.pid) - cpu0) / max(1.0, r.rps * seconds) * 1e6
    return r


# -- main ------------------------------------------------------------------------------


def run_case(case: Case, workdir: Path, origin: Proc, conns: int, seconds: float) -> Result:
    args = ["--flow-log", str(workdir / "flows.jsonl")]
    if case.rules is not None:
        args += ["--rules", str(write_rules(workdir, case.rules, case.matching))]
    proxy = start_tapproxy(*args, cpu=PROXY_CPU)
    try:
        if case.matching:  # the matching rule does apply
            out = subprocess.run(
                ["curl", "-sS", "-D", "-", "-o", "/dev/null", "-x", f"http://127.0.0.1:{proxy.port}",
                 f"http://127.0.0.1:{origin.port}{PATH}"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            if "x-bench: hit" not in out.stdout:
                raise RuntimeError(f"the matching rule did not apply: {out.stdout}")
        wait_quiet((proxy.pid, origin.pid), max_wait=10)  # let other work settle, bounded
        if WRK is not None:
            return load_wrk(workdir, proxy, origin, conns, seconds)
        return load_asyncio(proxy, origin, conns, seconds)
    finally:
        proxy.stop()
        (workdir / "flows.jsonl").unlink(missing_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=16)
    a = ap.parse_args()
    origin = start_upstream(cpu=LOAD_CPU)
    results: dict[str, list[Result]] = {c.label: [] for c in CASES}
    ratios: dict[str, list[float]] = {c.label: [] for c in CASES}
    cpu_ratios: dict[str, list[float]] = {c.label: [] for c in CASES}
    try:
        with tempfile.TemporaryDirectory(prefix="rules-bench-") as tmp:
            workdir = Path(tmp)
            for run in range(a.runs):
                base: Result | None = None
                for case in CASES:
                    print(f"run {run + 1}/{a.runs}: {case.label} ...", file=sys.stderr, flush=True)
                    r = run_case(case, workdir, origin, a.connections, a.seconds)
                    results[case.label].append(r)
                    if case.rules == 0:
                        base = r
                    if base is not None:
                        ratios[case.label].append(r.rps / base.rps)
                        cpu_ratios[case.label].append(r.cpu_us / base.cpu_us)
    finally:
        origin.stop()
    gen = "wrk" if WRK else "asyncio keep-alive client"
    print(f"\n### Rules overhead: GET {PATH} (100 B), keep-alive, {a.connections} connections, "
          f"{a.seconds:g} s, {a.runs} run(s), {gen}, flow log on\n")  # fmt: skip
    print(f"{machine_line()}\n")
    print(
        "| rules loaded | req/s | vs 0 rules | proxy CPU µs/req | vs 0 rules | p50 ms | p99 ms "
        "| other load (CPUs) | errors |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    med = statistics.median
    for case in CASES:
        rs = results[case.label]
        ratio = f"{med(ratios[case.label]):.2f}" if ratios[case.label] else "—"
        cpu_ratio = f"{med(cpu_ratios[case.label]):.2f}" if cpu_ratios[case.label] else "—"
        errors = "; ".join(r.errors for r in rs if r.errors) or "none"
        print(
            f"| {case.label} | {med(r.rps for r in rs):.0f} | {ratio} | "
            f"{med(r.cpu_us for r in rs):.0f} | {cpu_ratio} | "
            f"{med(r.p50_ms for r in rs):.2f} | {med(r.p99_ms for r in rs):.2f} | "
            f"{med(r.other for r in rs):.2f} | {errors} |"
        )
    print(
        "\nreq/s depends on what else the machine runs (other load); proxy CPU per "
        "request is the steadier measure of what rules cost."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
