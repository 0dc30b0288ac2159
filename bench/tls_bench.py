"""Scenario d: HTTPS with interception, one fresh connection per request.

    python -m bench.tls_bench                 # 3 runs of 10 s per peer and mode
    python -m bench.tls_bench --quick         # 1 run of 3 s
    python -m bench.tls_bench --peers tapproxy,mitmdump --runs 5

Every request is a fresh TCP connection to the proxy: ``CONNECT
127.0.0.1:PORT``, a TLS handshake with the proxy (which intercepts: it makes
or reuses a leaf for the SNI and opens its own TLS connection to the origin),
one ``GET /small``, close. Two modes:

* same SNI: ``h0.bench.test`` every time (the leaf is cached after the first);
* distinct SNI: ``h<N>.bench.test`` with a new N every time (a new leaf every
  connection, as when browsing many hosts).

The origin (nginx, or bench/upstream.py without it) serves a wildcard
certificate for ``*.bench.test`` signed by a bench CA; each proxy is told to
trust that CA (tapproxy ``--upstream-ca``, mitmdump
``ssl_verify_upstream_trusted_ca``, proxy.py ``--ca-file``) and the client
trusts the proxy's CA. ``direct`` is the client straight to the HTTPS origin:
the ceiling of this client on this machine.

The client: W worker processes x T threads of blocking ``ssl`` sockets
(the handshakes run in OpenSSL outside the GIL), pinned with the origin to
CPU 1; the proxy is alone on CPU 0. Connections completed during a warm-up
are not counted. Also reports tapproxy's in-process leaf issuance time per
new host (``LeafIssuer.issue``, and ``server_tls`` with the endpoint built on it).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import tempfile
from pathlib import Path

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
from bench.origin import Origin, make_bench_pki, start_origin
from bench.peers import PEERS, RELAY, Running, TlsSetup, peer_version, start_or_reason
from bench.report import Column, Table
from bench.tls_client import client_main
from bench.tls_leaves import leaf_issuance, leaf_table

MODES = ("same", "distinct")
TLS_PEERS = tuple(p for p in PEERS if p != RELAY)


# -- one measurement -------------------------------------------------------------


def measure(
    run: Running,
    origin: Origin,
    mode: str,
    *,
    duration: float,
    warmup: float,
    workers: int,
    threads: int,
    upstream_ca: Path,
    quiet_wait: float = 5.0,
) -> dict:
    cfg = {
        "proxy_port": run.port,
        "origin_port": origin.tls_port,
        "mode": mode,
        "client_ca": str(run.client_ca or upstream_ca),
        "no_hostname_check": run.name == "proxy.py",
        "duration": duration,
        "warmup": warmup,
        "workers": workers,
        "threads": threads,
        "max_per_thread": 1_000_000,
    }
    cmd = [*taskset(LOAD_CPU), sys.executable, "-m", "bench.tls_bench", "_client", json.dumps(cfg)]
    pids = tuple(p.pid for p in origin.procs) + ((run.proc.pid,) if run.proc else ())
    wait_quiet(pids, max_wait=quiet_wait)
    meter = OtherLoad(*pids)
    cpu0 = tree_cpu_seconds(run.proc.pid) if run.proc else 0.0
    r = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, timeout=warmup + duration + 120
    )
    cpu1 = tree_cpu_seconds(run.proc.pid) if run.proc else 0.0
    bg = meter.stop()
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"TLS client failed: {(r.stderr or r.stdout)[-400:]}")
    res = json.loads(line.split(" ", 1)[1])
    done = res["done"]
    res["cpu_ms_per_conn"] = (cpu1 - cpu0) * 1000 / done if run.proc and done else None
    res["rss_mb"] = tree_rss_kb(run.proc.pid) / 1024 if run.proc and run.alive() else None
    res["cmd"] = " ".join(cmd[:-1]) + " '<json config>'"
    res["bg"] = bg
    return res


# -- the scenario ----------------------------------------------------------------


def run_scenario(
    workdir: Path,
    *,
    runs: int,
    duration: float,
    warmup: float,
    peers: tuple[str, ...],
    workers: int = 4,
    threads: int = 8,
    commands: dict[str, str] | None = None,
    log=print,  # type: ignore[no-untyped-def]
    quiet_wait: float = 5.0,
) -> tuple[Table, str]:
    """Run scenario d; returns the table and the leaf-issuance table."""
    commands = {} if commands is None else commands
    pki = make_bench_pki(workdir / "pki")
    origin = start_origin(workdir / "origin-tls", tls=True, pki=pki)
    commands["d origin"] = origin.cmd
    table = Table(
        f"d. HTTPS interception, new connection per request ({workers}x{threads} client "
        f"threads, {duration:g} s, {runs} run(s))",
        [
            Column("same", "same SNI conn/s"),
            Column("same_x", "same ÷ mitmdump", 2),
            Column("distinct", "distinct SNI conn/s"),
            Column("distinct_x", "distinct ÷ mitmdump", 2),
            Column("cpu_same", "proxy CPU ms/conn same", 2),
            Column("cpu_same_x", "CPU/conn: mitmdump ÷ peer, same", 2),
            Column("cpu_distinct", "proxy CPU ms/conn distinct", 2),
            Column("cpu_distinct_x", "CPU/conn: mitmdump ÷ peer, distinct", 2),
            Column("rss", "proxy RSS after distinct MB", 1),
            Column("bg", "others' CPUs", 2),
        ],
        list(peers),
    )
    table.footnotes.append(
        "Ratios are within each run (peer ÷ mitmdump of the same run). `direct` is the "
        "client straight to the HTTPS origin (no CONNECT): the client's ceiling here. "
        "CPU/conn: mitmdump ÷ peer is how many times less proxy CPU the peer spends per "
        "connection than mitmdump in the same run (holds up better than conn/s when other "
        "processes share the proxy's CPU)."
    )
    try:
        for i in range(runs):
            for mode in MODES:
                per_run: dict[str, float] = {}
                per_cpu: dict[str, float] = {}
                for name in peers:
                    if not origin.alive():
                        raise RuntimeError("the origin died")
                    wd = workdir / f"{name.replace(' ', '_')}-{mode}-{i}"
                    run = start_or_reason(name, wd, TlsSetup(pki.ca_pem, workdir))
                    if isinstance(run, str):
                        table.note(name, f"not run: {run}")
                        continue
                    try:
                        if run.proc:
                            commands.setdefault(f"d {name}", " ".join(run.proc.cmd))
                        res = measure(
                            run,
                            origin,
                            mode,
                            duration=duration,
                            warmup=warmup,
                            workers=workers,
                            threads=threads,
                            upstream_ca=pki.ca_pem,
                            quiet_wait=quiet_wait,
                        )
                        table.add(name, "bg", res["bg"])
                        commands.setdefault("d client", res["cmd"])
                        table.note(name, run.note)
                        if not run.alive():
                            table.note(name, f"crashed: {run.exit_reason()}")
                            continue
                        if res["errors"]:
                            table.note(
                                name,
                                f"{mode}: {res['errors']} failed connections "
                                f"({res['first_error']})",
                            )
                        if res["counted"] == 0:
                            continue
                        per_run[name] = res["conn_per_s"]
                        table.add(name, mode, res["conn_per_s"])
                        table.add(name, f"cpu_{mode}", res["cpu_ms_per_conn"])
                        if res["cpu_ms_per_conn"]:
                            per_cpu[name] = 1 / res["cpu_ms_per_conn"]
                        if mode == "distinct":
                            table.add(name, "rss", res["rss_mb"])
                        log(
                            f"  d run {i + 1} {mode:8} {name:10} {res['conn_per_s']:8.0f} conn/s"
                            f"  errors {res['errors']}"
                        )
                    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                        table.note(name, f"{mode}: failed: {e}")
                    finally:
                        run.stop()
                table.add_ratio(f"{mode}_x", per_run, "mitmdump")
                table.add_ratio(f"cpu_{mode}_x", per_cpu, "mitmdump")
    finally:
        origin.stop()
    n = 1000
    leaf = leaf_table(leaf_issuance(n), n)
    return table, leaf


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "_client":
        raise_nofile()
        return client_main(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="1 run of 3 s")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=5.0,
        help="wait up to this long for other processes to calm down before "
        "each measurement (0: don't)",
    )
    ap.add_argument(
        "--peers",
        default=",".join(TLS_PEERS),
        help=f"comma-separated subset of {','.join(TLS_PEERS)}",
    )
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    duration = args.duration or (3.0 if args.quick else 10.0)
    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    raise_nofile()
    print(
        f"machine: {cpu_model()}, {multiprocessing.cpu_count()} CPUs; proxy on CPU "
        f"{PROXY_CPU}, client + origin on CPU {LOAD_CPU}"
    )
    for p in peers:
        if p != "direct":
            print(f"{p}: {peer_version(p)}")
    print(f"nginx: {tool_version(['nginx', '-v'])}")
    with tempfile.TemporaryDirectory(prefix="tapproxy-tls-bench-") as d:
        table, leaf = run_scenario(
            Path(d),
            runs=runs,
            duration=duration,
            warmup=1.0,
            peers=peers,
            workers=args.workers,
            threads=args.threads,
            quiet_wait=args.quiet_wait,
        )
    print()
    print(table.markdown())
    print(leaf)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
