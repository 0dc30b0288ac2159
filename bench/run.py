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
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import h2_bench, tls_bench, workers_bench
from bench.common import (
    LOAD_CPU,
    PROXY_CPU,
    ROOT,
    OtherLoad,
    cpu_model,
    raise_nofile,
    taskset,
    tool_version,
    tree_cpu_seconds,
    tree_rss_kb,
    wait_quiet,
)
from bench.loadgen import curl_cmd_text, curl_fetch, run_wrk, wrk_script
from bench.origin import Origin, start_origin
from bench.peers import (
    EXTRA_PEERS,
    PEERS,
    RELAY,
    SHELL,
    Running,
    peer_version,
    start_or_reason,
)
from bench.report import Column, Table

GiB, MiB = 1024**3, 1024**2
SCENARIOS = "abcdefgh"


@dataclass
class Settings:
    runs: int
    load_seconds: float  # a, b
    warmup_seconds: float
    tls_seconds: float  # d
    big: int = GiB  # c, one stream
    par_size: int = 256 * MiB  # c, each parallel stream
    par_streams: int = 8
    idle_conns: int = 1000  # e
    flows_small: int = 1000
    flows_large: int = 100_000
    seq_requests: int = 2000  # f
    seq_warmup: int = 200
    h2_requests: int = 20_000  # h, per h2load run
    quiet_wait: float = 5.0  # max wait for other processes to calm down before a measurement


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, settings: Settings, peers: tuple[str, ...], workdir: Path) -> None:
        self.s = settings
        self.peers = peers
        self.workdir = workdir
        self.commands: dict[str, str] = {}
        self.origin: Origin | None = None
        self._n = 0

    # -- plumbing ----------------------------------------------------------------

    def get_origin(self) -> Origin:
        if self.origin is None or not self.origin.alive():
            self.origin = start_origin(self.workdir / "origin", (self.s.big, self.s.par_size))
            self.commands["origin"] = self.origin.cmd
        return self.origin

    def start(self, name: str, scenario: str, table: Table) -> Running | None:
        self._n += 1
        wd = self.workdir / f"{scenario}-{name.replace(' ', '_')}-{self._n}"
        origin = self.get_origin().http_port if name == SHELL else None
        run = start_or_reason(name, wd, origin=origin)
        if isinstance(run, str):
            table.note(name, f"not run: {run}")
            log(f"  {scenario} {name}: not run: {run}")
            return None
        if run.proc:
            self.commands.setdefault(f"proxy {name}", " ".join(run.proc.cmd))
        return run

    def pids(self, run: Running) -> tuple[int, ...]:
        origin = self.get_origin()
        return tuple(p.pid for p in origin.procs) + ((run.proc.pid,) if run.proc else ())

    def quiet(self, run: Running) -> OtherLoad:
        """Wait for the machine to calm down, then start measuring others' load."""
        wait_quiet(self.pids(run), max_wait=self.s.quiet_wait)
        return OtherLoad(*self.pids(run))

    def target(self, run: Running, path: str) -> tuple[str, str | None, str | None]:
        """(URL wrk connects to, absolute-form target or None, Host or None)."""
        origin = self.get_origin()
        if run.proc is None:
            return origin.url(path), None, None
        return f"http://127.0.0.1:{run.port}/", origin.url(path), f"127.0.0.1:{origin.http_port}"

    # -- a, b: small GETs with wrk --------------------------------------------------

    def small_gets(self, close: bool) -> Table:
        s = self.s
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
            list(self.peers),
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
            for name in self.peers:
                run = self.start(name, letter, table)
                if run is None:
                    continue
                try:
                    url, target, host = self.target(run, "/small")
                    script = wrk_script(self.workdir, target=target, host=host, close=close)
                    if s.warmup_seconds:
                        run_wrk(url, script, connections=conns, duration=s.warmup_seconds)
                    meter = self.quiet(run)
                    cpu0 = tree_cpu_seconds(run.proc.pid) if run.proc else 0.0
                    res = run_wrk(url, script, connections=conns, duration=s.load_seconds)
                    cpu = tree_cpu_seconds(run.proc.pid) - cpu0 if run.proc else None
                    table.add(name, "bg", meter.stop())
                    self.commands.setdefault(
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

    # -- c: bulk downloads ----------------------------------------------------------

    def _download(self, run: Running, size: int, streams: int) -> tuple[float, float | None]:
        origin = self.get_origin()
        url = origin.url(origin.big_path(size))
        self.meter = self.quiet(run)
        t0 = time.monotonic()
        procs = [curl_fetch(url, run.proxy_url, timeout=300) for _ in range(streams)]
        outs = [p.communicate(timeout=360) for p in procs]
        wall = time.monotonic() - t0
        self.commands.setdefault(
            f"c curl {'direct' if run.proc is None else 'via proxy'} x{streams}",
            curl_cmd_text(url, run.proxy_url)
            + (f"   # x{streams} in parallel" if streams > 1 else ""),
        )
        for p, (out, err) in zip(procs, outs, strict=True):
            got = out.split()
            if p.returncode != 0 or len(got) < 2 or int(got[0]) != size or got[1] != "200":
                log(f"  download failed: got {out.strip()!r} of {size} bytes: {err.strip()}")
                reason = err.strip().split("\n")[0][:160] or f"HTTP {got[1:2]}, short body"
                raise RuntimeError(f"download failed (curl exit {p.returncode}: {reason})")
        peak = tree_rss_kb(run.proc.pid, "VmHWM") / 1024 if run.proc else None
        return size * streams / wall / 1e6, peak

    def bulk(self) -> Table:
        s = self.s
        table = Table(
            f"c. bulk download: one {s.big / GiB:g} GiB stream, {s.par_streams} parallel "
            f"{s.par_size / MiB:g} MiB streams (curl), {s.runs} run(s)",
            [
                Column("one", "1 stream MB/s"),
                Column("one_x", "÷ bare relay", 2),
                Column("one_rss", "peak RSS MB", 1),
                Column("par", f"{s.par_streams} streams MB/s"),
                Column("par_x", "÷ bare relay", 2),
                Column("par_rss", "peak RSS MB", 1),
                Column("bg", "others' CPUs", 2),
            ],
            list(self.peers),
        )
        table.footnotes.append(
            "MB = 10^6 bytes; every body's size is checked. Peak RSS: VmHWM from "
            "/proc/PID/status (summed over the proxy's processes), for a proxy started "
            "fresh for that transfer."
        )
        for i in range(s.runs):
            one: dict[str, float] = {}
            par: dict[str, float] = {}
            for key, size, streams, bucket in (
                ("one", s.big, 1, one),
                ("par", s.par_size, s.par_streams, par),
            ):
                for name in self.peers:
                    run = self.start(name, "c", table)
                    if run is None:
                        continue
                    try:
                        mbps, peak = self._download(run, size, streams)
                        table.add(name, "bg", self.meter.stop())
                        if not run.alive():
                            table.note(name, f"crashed: {run.exit_reason()}")
                            continue
                        bucket[name] = mbps
                        table.add(name, key, mbps)
                        table.add(name, f"{key}_rss", peak)
                        log(
                            f"  c run {i + 1} {key} {name:10} {mbps:7.0f} MB/s"
                            f" peak {peak or 0:.1f} MB"
                        )
                    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                        table.note(name, f"{key}: {e}")
                        log(f"  c {key} {name}: failed: {e}")
                    finally:
                        run.stop()
            table.add_ratio("one_x", one, RELAY)
            table.add_ratio("par_x", par, RELAY)
        return table

    # -- e: memory -----------------------------------------------------------------

    def _client_cmd(self, kind: str, run: Running, n: int, *extra: str) -> list[str]:
        origin = self.get_origin()
        if run.proc is None:
            port, target = origin.http_port, "/small"
        else:
            port, target = run.port, origin.url("/small")
        return [
            *taskset(LOAD_CPU),
            sys.executable,
            "-m",
            "bench.clients",
            kind,
            "--port",
            str(port),
            "--target",
            target,
            "--host",
            f"127.0.0.1:{origin.http_port}",
            "-n",
            str(n),
            *extra,
        ]

    def _seq(self, run: Running, n: int, warmup: int, record: bool = True) -> dict[str, float]:
        import json

        cmd = self._client_cmd("seq", run, n, "--warmup", str(warmup))
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"seq client: {(r.stderr or r.stdout).strip()[-300:]}")
        if record:
            self.commands.setdefault(
                f"f seq client {'direct' if run.proc is None else 'via proxy'}", " ".join(cmd)
            )
        return json.loads(r.stdout.strip().splitlines()[-1])

    def _idle_conns(self, run: Running) -> tuple[float, float, int]:
        """(RSS idle KB, RSS with N idle connections KB, connections held)."""
        assert run.proc is not None
        self._seq(run, 20, 0, record=False)  # warm the code paths once
        time.sleep(0.5)
        idle = tree_rss_kb(run.proc.pid)
        cmd = self._client_cmd("idle", run, self.s.idle_conns, "--hold", "120")
        self.commands.setdefault("e idle client", " ".join(cmd))
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
            if ok < self.s.idle_conns:
                raise RuntimeError(f"only {ok} of {self.s.idle_conns} connections: {line}")
            time.sleep(1.0)
            with_conns = tree_rss_kb(run.proc.pid)
            client.stdin.close()
            client.wait(30)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        return idle, with_conns, ok

    def _flows(self, run: Running) -> tuple[float, float, int, int]:
        """(RSS after the small count, RSS after the large count, counts done)."""
        import json

        assert run.proc is not None
        counts = []
        rss = []
        for n in (self.s.flows_small, self.s.flows_large - self.s.flows_small):
            cmd = self._client_cmd("count", run, n, "-c", "8", "--max-seconds", "150")
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=200)
            self.commands.setdefault("e count client", " ".join(cmd))
            if not r.stdout.strip():
                raise RuntimeError(f"count client: {r.stderr.strip()[-300:]}")
            res = json.loads(r.stdout.strip().splitlines()[-1])
            if res["errors"]:
                raise RuntimeError(f"count client errors: {res['errors']}")
            counts.append(res["done"])
            time.sleep(1.0)
            rss.append(tree_rss_kb(run.proc.pid))
        return rss[0], rss[1], counts[0], counts[0] + counts[1]

    def memory(self) -> Table:
        s = self.s
        peers = [p for p in self.peers if p != "direct"]
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
                run = self.start(name, "e", table)
                if run is None:
                    continue
                try:
                    idle, with_conns, ok = self._idle_conns(run)
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
                run = self.start(name, "e", table)
                if run is None:
                    continue
                try:
                    small, large, n_small, n_large = self._flows(run)
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

    # -- f: added latency ------------------------------------------------------------

    def latency(self) -> Table:
        s = self.s
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
            list(self.peers),
        )
        table.footnotes.append(
            "Client: bench/clients.py seq (blocking socket, TCP_NODELAY) on CPU 1. Added = "
            "peer - direct within the same run; over bare relay = peer p50 - bare relay p50 "
            "(the proxy's own work, without the two extra loopback hops and cross-CPU "
            "wake-ups that any proxy pays)."
        )
        peers = ["direct", *[p for p in self.peers if p != "direct"]]
        if RELAY in peers:  # the relay first, so that every peer has its figure in the run
            peers.remove(RELAY)
            peers.insert(1, RELAY)
        for i in range(s.runs):
            direct: dict[str, float] | None = None
            relay: dict[str, float] | None = None
            for name in peers:
                run = self.start(name, "f", table)
                if run is None:
                    continue
                try:
                    meter = self.quiet(run)
                    res = self._seq(run, s.seq_requests, s.seq_warmup)
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
                    if name in self.peers:
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

    def close(self) -> None:
        if self.origin:
            self.origin.stop()


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
                if letter == "a":
                    md = bench.small_gets(close=False).markdown()
                elif letter == "b":
                    md = bench.small_gets(close=True).markdown()
                elif letter == "c":
                    md = bench.bulk().markdown()
                elif letter == "d":
                    tls_peers = tuple(p for p in peers if p != RELAY)
                    table, leaf = tls_bench.run_scenario(
                        Path(d) / "tls",
                        runs=runs,
                        duration=settings.tls_seconds,
                        warmup=1.0,
                        peers=tls_peers,
                        commands=bench.commands,
                        log=log,
                        quiet_wait=settings.quiet_wait,
                    )
                    md = table.markdown() + "\n" + leaf
                elif letter == "e":
                    md = bench.memory().markdown()
                elif letter == "g":
                    md = workers_bench.run_scenario(
                        Path(d) / "workers",
                        runs=runs,
                        duration=settings.load_seconds,
                        log=log,
                        quiet_wait=settings.quiet_wait,
                        commands=bench.commands,
                    ).markdown()
                elif letter == "h":
                    md = "\n".join(
                        t.markdown()
                        for t in h2_bench.run_scenario(
                            Path(d) / "h2",
                            runs=runs,
                            requests=settings.h2_requests,
                            peers=peers,
                            log=log,
                            quiet_wait=settings.quiet_wait,
                            commands=bench.commands,
                        )
                    )
                else:
                    md = bench.latency().markdown()
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
