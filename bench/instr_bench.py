"""Instructions per request, counted by valgrind: a figure this noisy VM cannot move.

    python -m bench.instr_bench                       # tapproxy (asyncio), tcp mode, bare relay
    python -m bench.instr_bench --peers tapproxy,tapproxy\\ uvloop --requests 200,1200

Wall-clock CPU per request here varies by ±20% from run to run (other
tenants on the host), more than most changes to the data path. Instead each
peer runs under ``valgrind --tool=callgrind`` twice, once for N1 and once for
N2 sequential keep-alive GETs of the 100-byte ``/small`` through it to the
bench origin (nginx), each answer read in full before the next request; the
peer's user-space instructions per request are ``(Ir(N2) - Ir(N1)) / (N2 -
N1)``, which cancels start-up and shutdown. Repeated runs agree within ~1%
(timestamps formatted once per second and the garbage collector's timing are
what varies). What it does not count: the kernel's work (the syscalls cost
the same for every peer making the same ones), cache misses, and waiting.

tapproxy runs as in bench/run.py's scenario a (flow log on, ten rules that
match nothing); ``tapproxy tcp`` is the shell with a raw relay layer;
``bare relay`` is bench/bare_relay.py. Under valgrind everything runs ~50x
slower: the default (200 and 1,200 requests) takes about two minutes a peer.
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT
from bench.origin import Origin, start_origin
from bench.rules_bench import write_rules

PEERS = ("tapproxy", "tapproxy uvloop", "tapproxy tcp", "bare relay")
_LISTENING = re.compile(r"listening at \S+:(\d+)")
_TOTALS = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)


def _command(peer: str, origin: Origin, workdir: Path, n: int) -> list[str]:
    base = [sys.executable, "-m", "proxy", "-q", "-p", "0"]
    log = ["--flow-log", str(workdir / f"flows-{n}.jsonl")]
    if peer == "bare relay":
        return [sys.executable, str(ROOT / "bench" / "bare_relay.py"), "0"]
    if peer == "tapproxy tcp":
        return [*base, "--loop", "asyncio", "-m", f"tcp:127.0.0.1:{origin.http_port}", *log]
    loop = "uvloop" if peer == "tapproxy uvloop" else "asyncio"
    return [*base, "--loop", loop, *log, "--rules", str(write_rules(workdir, 10, False))]


def _requests(port: int, origin: Origin, n: int) -> None:
    authority = f"127.0.0.1:{origin.http_port}"
    request = f"GET http://{authority}/small HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        for _ in range(n):
            s.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 100:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("the peer closed the connection")
                data += chunk


def instructions(peer: str, origin: Origin, workdir: Path, n: int) -> int:
    """Instructions the peer executed from start to exit, serving ``n`` requests."""
    out, log = workdir / f"callgrind-{n}.out", workdir / f"peer-{n}.log"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    with open(log, "wb") as err:
        p = subprocess.Popen([*cmd, *_command(peer, origin, workdir, n)], stderr=err, cwd=ROOT)
    try:
        deadline = time.monotonic() + 300
        while (m := _LISTENING.search(log.read_text(errors="replace"))) is None:
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{peer} did not start: {log.read_text(errors='replace')}")
            time.sleep(0.2)
        _requests(int(m.group(1)), origin, n)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(300)
    found = _TOTALS.search(out.read_text(errors="replace"))
    if found is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(found.group(1))


def per_request(peer: str, origin: Origin, n1: int, n2: int) -> float:
    with tempfile.TemporaryDirectory(prefix="instr-") as d:
        a = instructions(peer, origin, Path(d), n1)
        b = instructions(peer, origin, Path(d), n2)
    return (b - a) / (n2 - n1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--peers", default="tapproxy,tapproxy tcp,bare relay")
    ap.add_argument("--requests", default="200,1200", help="N1,N2 (default 200,1200)")
    args = ap.parse_args()
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        ap.error(f"unknown peers {unknown}; choose from {', '.join(PEERS)}")
    n1, n2 = (int(x) for x in args.requests.split(","))
    with tempfile.TemporaryDirectory(prefix="instr-origin-") as d:
        origin = start_origin(Path(d))
        try:
            figures = {peer: per_request(peer, origin, n1, n2) for peer in peers}
        finally:
            origin.stop()
    relay = figures.get("bare relay")
    print("| peer | instructions per request | ÷ bare relay |\n| --- | ---: | ---: |")
    for peer, ir in figures.items():
        ratio = f"{ir / relay:.1f}x" if relay else "-"
        print(f"| {peer} | {ir:,.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
