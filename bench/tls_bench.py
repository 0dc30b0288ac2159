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
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
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

MODES = ("same", "distinct")
TLS_PEERS = tuple(p for p in PEERS if p != RELAY)


# -- the client (runs in its own pinned process: python -m bench.tls_bench _client) ------


def _recv_head(sock: socket.socket | ssl.SSLSocket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(16384)
        if not chunk:
            raise ConnectionError("closed before the end of the head")
        buf += chunk
        if len(buf) > 65536:
            raise ConnectionError("head too long")
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def one_connection(cfg: dict, ctx: ssl.SSLContext, sni: str) -> None:
    port = cfg["proxy_port"] or cfg["origin_port"]
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if cfg["proxy_port"]:
            authority = f"127.0.0.1:{cfg['origin_port']}"
            sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
            head, rest = _recv_head(sock)
            if not head.split(b" ", 2)[1:2] == [b"200"] or rest:
                raise ConnectionError(f"CONNECT: {head[:60]!r}")
        tls = ctx.wrap_socket(sock, server_hostname=sni)
        sock = tls
        tls.sendall(
            f"GET /small HTTP/1.1\r\nHost: {sni}\r\nUser-Agent: tapproxy-bench\r\n\r\n".encode()
        )
        head, body = _recv_head(tls)
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"GET: {head[:60]!r}")
        length = next(
            int(v)
            for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n"))
            if k.strip().lower() == b"content-length"
        )
        while len(body) < length:
            chunk = tls.recv(16384)
            if not chunk:
                raise ConnectionError("closed mid-body")
            body += chunk
    finally:
        sock.close()


def _worker(wid: int, cfg: dict, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    ctx = ssl.create_default_context(cafile=cfg["client_ca"])
    ctx.set_alpn_protocols(["http/1.1"])
    if cfg["no_hostname_check"]:
        ctx.check_hostname = False
    counts = {"done": 0, "counted": 0, "errors": 0}
    first_error: list[str] = []
    lock = threading.Lock()

    def loop(tid: int) -> None:
        base = (wid * cfg["threads"] + tid) * 10_000_000
        for i in range(cfg["max_per_thread"]):
            now = time.monotonic()
            if now >= cfg["t_end"]:
                return
            sni = "h0.bench.test" if cfg["mode"] == "same" else f"h{base + i}.bench.test"
            try:
                one_connection(cfg, ctx, sni)
            except (OSError, ValueError, StopIteration) as e:
                with lock:
                    counts["errors"] += 1
                    if not first_error:
                        first_error.append(f"{type(e).__name__}: {e}"[:200])
                time.sleep(0.01)
                continue
            t = time.monotonic()
            with lock:
                counts["done"] += 1
                if cfg["t_start"] <= t <= cfg["t_end"]:
                    counts["counted"] += 1

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(cfg["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({**counts, "first_error": first_error[0] if first_error else ""})


def client_main(cfg: dict) -> int:
    now = time.monotonic()
    cfg["t_start"] = now + cfg["warmup"]
    cfg["t_end"] = cfg["t_start"] + cfg["duration"]
    q: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [
        multiprocessing.Process(target=_worker, args=(w, cfg, q)) for w in range(cfg["workers"])
    ]
    for p in procs:
        p.start()
    results = [q.get(timeout=cfg["warmup"] + cfg["duration"] + 60) for _ in procs]
    for p in procs:
        p.join(10)
    total = {k: sum(r[k] for r in results) for k in ("done", "counted", "errors")}
    total["first_error"] = next((r["first_error"] for r in results if r["first_error"]), "")
    total["conn_per_s"] = total["counted"] / cfg["duration"]
    print("BENCHJSON " + json.dumps(total), flush=True)
    return 0


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


# -- leaf issuance in-process ------------------------------------------------------


def leaf_issuance(n: int = 1000) -> dict[str, dict[str, float]]:
    """Microseconds per new host for tapproxy's LeafIssuer (EC leaves, the default)."""
    from proxy.tls.ca import CertificateAuthority
    from proxy.tls.endpoint import TlsEndpoint
    from proxy.tls.leaf import LeafIssuer

    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as d:
        ca = CertificateAuthority.load_or_create(Path(d) / "ca")
        issuer = LeafIssuer(ca, cache_size=4 * n, context_cache_size=4 * n)

        def timed(label: str, fn) -> None:  # type: ignore[no-untyped-def]
            lat = []
            for i in range(n):
                t0 = time.perf_counter_ns()
                fn(i)
                lat.append((time.perf_counter_ns() - t0) / 1000)
            lat.sort()
            out[label] = {
                "mean": statistics.fmean(lat),
                "p50": statistics.median(lat),
                "p99": lat[int(n * 0.99)],
            }

        timed("issue(new host)", lambda i: issuer.issue(f"h{i}.bench.test"))
        timed(
            "TlsEndpoint(server_tls(host issued, first connection)): shared context",
            lambda i: TlsEndpoint(issuer.server_tls(f"h{i}.bench.test")),
        )
        timed(
            "TlsEndpoint(server_tls(second connection)): its own context built",
            lambda i: TlsEndpoint(issuer.server_tls(f"h{i}.bench.test")),
        )
        timed(
            "TlsEndpoint(server_tls(later connections)): its own context cached",
            lambda i: TlsEndpoint(issuer.server_tls(f"h{i % 256}.bench.test")),
        )
        timed(
            "TlsEndpoint(server_tls(new host)): issue + endpoint",
            lambda i: TlsEndpoint(issuer.server_tls(f"g{i}.bench.test")),
        )
        issuer.close()
    return out


def leaf_table(res: dict[str, dict[str, float]], n: int) -> str:
    lines = [
        f"### d2. tapproxy leaf issuance per new host (in-process, {n} hosts, EC P-256)",
        "",
        "| operation | mean µs | p50 µs | p99 µs |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, v in res.items():
        lines.append(f"| `{label}` | {v['mean']:.0f} | {v['p50']:.0f} | {v['p99']:.0f} |")
    return "\n".join(lines) + "\n"


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
