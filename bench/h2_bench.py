"""Scenario h: HTTP/2 load (h2load) through the proxy, h2c and TLS with interception.

    python -m bench.h2_bench                  # 3 runs of 20,000 requests per peer and mode
    python -m bench.h2_bench --quick          # 1 run of 5,000
    python -m bench.h2_bench --peers tapproxy,mitmdump --runs 5

``h2load -n N -c 10 -m 100 URL``: N requests for ``/small`` (100 bytes) over
10 connections with 100 concurrent streams each, against nghttpd (Debian's
nghttp2-server, ``bench/h2tools.py``). h2load cannot use an HTTP proxy, so
each proxy is a reverse proxy in front of nghttpd, in two modes:

* **h2c**: cleartext HTTP/2 with prior knowledge on both legs. tapproxy
  ``--mode reverse:h2c://127.0.0.1:ORIGIN``. mitmdump is tried as
  ``--mode reverse:http://127.0.0.1:ORIGIN`` with a 10-request probe first and
  reported n/a with the probe's outcome when it fails (mitmproxy has no h2c,
  its issues #2116, #3362, #6998); proxy.py has no HTTP/2.
* **TLS, MitM**: h2 over TLS on both legs. tapproxy ``--mode
  reverse:https://127.0.0.1:ORIGIN --mitm --upstream-ca BENCH_CA --certs DIR``
  (the listener terminates TLS with a leaf from its own CA); mitmdump
  ``--mode reverse:https://127.0.0.1:ORIGIN --set
  ssl_verify_upstream_trusted_ca=BENCH_CA``. Both verify the origin's
  certificate; h2load does not verify theirs.

tapproxy runs as in every scenario (flow log on, ten non-matching rules),
mitmdump as in every scenario (``-q``, ``stream_large_bodies=1``). Each proxy
is started fresh and warmed with the same load (N requests), then measured:
the measured run is the second batch, so "RSS after ÷ before" says whether
memory stays flat from one batch to the next (as scenario e does for
HTTP/1). Figures: h2load's req/s, requests that succeeded, the proxy's CPU
per request (``/proc``, all its processes), RSS before the measured run, its
peak during it (VmHWM reset by ``clear_refs`` after the warm-up), RSS one
second after and, for tapproxy, after a full collection (its SIGUSR1 stats),
and the most connections to the origin seen during the run. ``direct`` is
h2load straight to nghttpd: the ceiling of this client and origin on this
machine. The proxy is pinned to CPU 0, h2load and nghttpd to CPU 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    PROXY_CPU,
    OtherLoad,
    free_port,
    launch,
    tree_cpu_seconds,
    tree_pids,
    tree_rss_kb,
    wait_quiet,
)
from bench.h2tools import (
    CONNECTIONS,
    STREAMS,
    H2LoadResult,
    H2Origin,
    OriginConns,
    reset_peak_rss,
    run_h2load,
    start_h2_origin,
    wait_for_lines,
)
from bench.peers import (
    CACHE,
    PEERS,
    RELAY,
    PeerUnavailable,
    Running,
    _foreign_env,
    _started,
    _wait_log,
    ensure_venv,
    tapproxy_rules,
)
from bench.report import Column, Table

MODES = ("h2c", "tls")
H2_PEERS = tuple(p for p in PEERS if p != RELAY)
NO_HTTP2 = "n/a: proxy.py speaks no HTTP/2"
PROBE = 10  # requests tried through a peer whose h2c support is in doubt


def _upstream(origin: H2Origin, mode: str) -> str:
    if mode == "h2c":
        return f"h2c://127.0.0.1:{origin.h2c_port}"
    return f"https://127.0.0.1:{origin.tls_port}"


def start_h2_peer(name: str, mode: str, origin: H2Origin, workdir: Path) -> Running:
    """Start ``name`` as a reverse proxy to the origin (PeerUnavailable: why not)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    if name == "direct":
        return Running(name, None, 0)
    if name == "tapproxy":
        cmd = [sys.executable, "-m", "proxy", "-q", "-p", "0", "--loop", "asyncio",
               "--mode", f"reverse:{_upstream(origin, mode)}",
               "--flow-log", str(workdir / "flows.jsonl"),
               "--rules", str(tapproxy_rules(workdir))]  # fmt: skip
        if mode == "tls":
            cmd += ["--mitm", "--upstream-ca", str(origin.pki.ca_pem),
                    "--certs", str(workdir / "certs")]  # fmt: skip
        p = launch(cmd, cpu=PROXY_CPU, log=log)
        m = _wait_log(p, log, r"listening at \S+:(\d+)")
        return Running(name, p, int(m.group(1)))
    if name == "mitmdump":
        exe = ensure_venv("mitmproxy", "mitmproxy", "mitmdump")
        port = free_port()
        upstream = _upstream(origin, mode).replace("h2c://", "http://")
        cmd = [str(exe), "-q", "--listen-host", "127.0.0.1", "-p", str(port),
               "--mode", f"reverse:{upstream}",
               "--set", "stream_large_bodies=1",
               "--set", f"confdir={CACHE / 'mitmproxy-conf'}"]  # fmt: skip
        if mode == "tls":
            cmd += ["--set", f"ssl_verify_upstream_trusted_ca={origin.pki.ca_pem}"]
        p = launch(cmd, cpu=PROXY_CPU, log=log, cwd=workdir, env=_foreign_env())
        _started(name, p, port, log)
        return Running(name, p, port)
    if name == "proxy.py":
        raise PeerUnavailable(NO_HTTP2)
    raise ValueError(f"unknown peer {name!r}")


def url_for(run: Running, origin: H2Origin, mode: str) -> str:
    scheme = "http" if mode == "h2c" else "https"
    port = run.port if run.proc else (origin.h2c_port if mode == "h2c" else origin.tls_port)
    return f"{scheme}://127.0.0.1:{port}/small"


def _probe(run: Running, url: str) -> str:
    """Empty if a few h2c requests get through mitmdump, else why not."""
    res = run_h2load(url, PROBE, timeout=30, connections=1)
    if not res.problem:
        return ""
    return f"n/a: no h2c (probe, h2load prior knowledge: {res.problem})"


def warmup_for(n: int) -> int:
    """Warm-up requests: a whole first batch, so that the measured one finds the proxy
    in the state a long-running proxy is in (pools, caches, heap) and growth from
    one batch to the next shows."""
    return n


def h2_table(mode: str, peers: tuple[str, ...], runs: int, n: int) -> Table:
    what = "h2c, prior knowledge on both legs" if mode == "h2c" else "h2 over TLS, MitM"
    warmup = warmup_for(n)
    table = Table(
        f"h ({mode}). HTTP/2, {what}: h2load -n {n} -c {CONNECTIONS} -m {STREAMS}, {runs} run(s)",
        [
            Column("rps", "req/s"),
            Column("x_mitm", "÷ mitmdump", 2),
            Column("x_direct", "÷ direct", 2),
            Column("ok", f"succeeded of {n}"),
            Column("mean", "mean request ms", 1),
            Column("cpu_req", "proxy CPU µs/req"),
            Column("eff", "CPU/req: mitmdump ÷ peer", 2),
            Column("rss0", "RSS before MB", 1),
            Column("peak", "peak RSS MB", 1),
            Column("rss1", "RSS after MB", 1),
            Column("growth", "after ÷ before %", 1),
            Column("rss_gc", "RSS after gc MB", 1),
            Column("up", "origin conns (max)"),
            Column("bg", "others' CPUs", 2),
        ],
        list(peers),
    )
    table.footnotes.append(
        f"Each proxy started fresh and warmed with the same load first ({warmup} "
        "requests, not counted). req/s: h2load's (all N requests over the time from its first "
        "connection); ratios within each run. CPU: utime+stime of the proxy's processes "
        "over the measured run ÷ requests that succeeded. RSS before: after the warm-up "
        "batch; "
        "peak: VmHWM reset after the warm-up; after: 1 s after h2load ended; growth = "
        "after ÷ before - 1. origin conns: established connections to nghttpd's port, "
        "sampled every 0.2 s: the proxy's upstream connections. RSS after gc: tapproxy "
        "only, after its SIGUSR1 stats (a full gc.collect() and malloc_trim), which tells "
        "garbage waiting for the cyclic collector from memory still held."
    )
    return table


class H2Scenario:
    """Runs scenario h and fills its two tables (one per mode)."""

    def __init__(self, workdir: Path, n: int, log: Callable[[str], None], quiet_wait: float):
        self.workdir = workdir
        self.n = n
        self.warmup = warmup_for(n)
        self.log = log
        self.quiet_wait = quiet_wait
        self.commands: dict[str, str] = {}
        self.origin = start_h2_origin(workdir / "origin")
        self.commands["h origin (nghttpd)"] = self.origin.cmd
        self._count = 0
        self._wd = workdir  # the current peer's directory (its log, its flow log)

    def run_one(self, name: str, mode: str, table: Table) -> tuple[float, float] | None:
        """Measure one peer in one mode: (req/s, requests per proxy CPU-second)."""
        self._count += 1
        self._wd = self.workdir / f"{mode}-{name.replace(' ', '_')}-{self._count}"
        try:
            run = start_h2_peer(name, mode, self.origin, self._wd)
        except (PeerUnavailable, RuntimeError, OSError) as e:
            table.note(name, str(e) if str(e).startswith("n/a") else f"not run: {e}")
            self.log(f"  h {mode} {name}: {e}")
            return None
        try:
            if run.proc is not None:
                self.commands.setdefault(f"h {mode} proxy {name}", " ".join(run.proc.cmd))
            return self._measure(run, mode, table)
        except (RuntimeError, OSError) as e:
            table.note(name, f"failed: {e}")
            self.log(f"  h {mode} {name}: failed: {e}")
            return None
        finally:
            if not run.alive():
                table.note(name, f"crashed: {run.exit_reason()}")
            run.stop()

    def _measure(self, run: Running, mode: str, table: Table) -> tuple[float, float] | None:
        name, url = run.name, url_for(run, self.origin, mode)
        if name == "mitmdump" and mode == "h2c":
            why = _probe(run, url)
            if why:
                table.note(name, why)
                self.log(f"  h {mode} {name}: {why}")
                return None
        warm = run_h2load(url, self.warmup, timeout=60 + self.warmup / 10)
        if warm.problem:
            self._failed(run, table, "warm-up", warm)
        pids = [p.pid for p in self.origin.procs]
        proc_pids = tree_pids(run.proc.pid) if run.proc else []
        wait_quiet((*pids, *proc_pids[:1]), max_wait=self.quiet_wait)
        rss0 = tree_rss_kb(run.proc.pid) if run.proc else 0
        reset = reset_peak_rss(proc_pids)
        meter = OtherLoad(*pids, *proc_pids[:1])
        cpu0 = tree_cpu_seconds(run.proc.pid) if run.proc else 0.0
        with OriginConns(self.origin.h2c_port if mode == "h2c" else self.origin.tls_port) as up:
            res = run_h2load(url, self.n, timeout=60 + self.n / 20)
        table.add(name, "bg", meter.stop())
        where = "direct" if run.proc is None else "via proxy"
        self.commands.setdefault(f"h {mode} h2load {where}", res.cmd)
        if res.problem:
            self._failed(run, table, "measured run", res)
        table.add(name, "rps", res.rps)
        table.add(name, "ok", res.succeeded)
        table.add(name, "mean", res.mean_request_ms)
        eff = 0.0
        if run.proc is not None:
            cpu = tree_cpu_seconds(run.proc.pid) - cpu0
            peak = tree_rss_kb(run.proc.pid, "VmHWM") if reset else None
            time.sleep(1.0)  # let the proxy settle before "after" (not synchronisation)
            rss1 = tree_rss_kb(run.proc.pid)
            done = max(1, res.succeeded)
            table.add(name, "up", up.peak)
            table.add(name, "cpu_req", cpu * 1e6 / done)
            eff = done / cpu if cpu > 0 else 0.0
            table.add(name, "rss0", rss0 / 1024)
            table.add(name, "peak", peak / 1024 if peak is not None else None)
            table.add(name, "rss1", rss1 / 1024)
            table.add(name, "growth", (rss1 / rss0 - 1) * 100 if rss0 else None)
            self._check_records(run, table)
            table.add(name, "rss_gc", self._rss_after_gc(run))
            self.log(f"  h {mode} {name:9} {res.rps:8.0f} req/s {res.succeeded}/{res.total} ok, "
                     f"cpu {cpu * 1e6 / done:.0f} µs/req, rss {rss0 / 1024:.1f} -> "
                     f"{rss1 / 1024:.1f} MB (peak {(peak or 0) / 1024:.1f}), "
                     f"origin conns {up.peak}")  # fmt: skip
        else:
            self.log(f"  h {mode} {name:9} {res.rps:8.0f} req/s {res.succeeded}/{res.total} ok")
        return res.rps, eff

    def _failed(self, run: Running, table: Table, what: str, res: H2LoadResult) -> None:
        """Put a failed h2load run in the notes, with the proxy's last words, and the log."""
        log = self._wd / f"{run.name}.log"
        stderr = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        last = " ".join(stderr.split())[-120:]
        table.note(run.name, f"{what}: {res.problem}" + (f"; proxy log: {last}" if last else ""))
        self.log(f"  h {run.name} {what}: {res.problem}\n{res.output[-1500:]}\n{stderr}")

    def _check_records(self, run: Running, table: Table) -> None:
        """tapproxy writes one flow record per stream: say so when some are missing."""
        if run.name != "tapproxy":
            return
        want = self.n + self.warmup
        have = wait_for_lines(self._wd / "flows.jsonl", want)
        if have != want:
            table.note(run.name, f"{have} flow records for {want} requests")

    def _rss_after_gc(self, run: Running) -> float | None:
        """tapproxy's RSS in MB after its SIGUSR1 stats (gc + heap trim), None if no answer."""
        if run.name != "tapproxy" or run.proc is None:
            return None
        log = self._wd / "tapproxy.log"
        before = log.read_text(errors="replace").count("tapproxy-stats")
        os.kill(run.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and run.alive():
            if log.read_text(errors="replace").count("tapproxy-stats") > before:
                return tree_rss_kb(run.proc.pid) / 1024
            time.sleep(0.1)
        return None

    def close(self) -> None:
        self.origin.stop()


def run_scenario(
    workdir: Path,
    *,
    runs: int,
    requests: int,
    peers: tuple[str, ...] = H2_PEERS,
    log: Callable[[str], None] = print,
    quiet_wait: float = 5.0,
    commands: dict[str, str] | None = None,
) -> list[Table]:
    """Both modes, ``runs`` times each; one table per mode."""
    rows = tuple(p for p in peers if p in H2_PEERS)
    tables = {mode: h2_table(mode, rows, runs, requests) for mode in MODES}
    try:
        scen = H2Scenario(workdir, requests, log, quiet_wait)
    except (RuntimeError, OSError) as e:
        for table in tables.values():
            for name in rows:
                table.note(name, f"not run: {e}")
        log(f"  h: not run: {e}")
        return list(tables.values())
    try:
        for _ in range(runs):
            for mode in MODES:
                rps: dict[str, float] = {}
                eff: dict[str, float] = {}
                for name in rows:
                    got = scen.run_one(name, mode, tables[mode])
                    if got is not None:
                        rps[name], eff[name] = got
                        if not eff[name]:
                            del eff[name]
                tables[mode].add_ratio("x_mitm", rps, "mitmdump")
                tables[mode].add_ratio("x_direct", rps, "direct")
                tables[mode].add_ratio("eff", eff, "mitmdump")
    finally:
        scen.close()
        if commands is not None:
            commands.update(scen.commands)
    return [tables[m] for m in MODES]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 run of 5,000 requests")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--peers", default=",".join(H2_PEERS))
    ap.add_argument("--quiet-wait", type=float, default=5.0)
    args = ap.parse_args()
    runs, n = (1, 5_000) if args.quick else (args.runs, args.requests)
    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    with tempfile.TemporaryDirectory(prefix="tapproxy-h2-") as d:
        tables = run_scenario(
            Path(d), runs=runs, requests=n, peers=peers, quiet_wait=args.quiet_wait,
            log=lambda m: print(m, file=sys.stderr, flush=True),
        )  # fmt: skip
    print("\n".join(t.markdown() for t in tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
