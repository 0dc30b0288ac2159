"""Benchmark ``tapproxy sniff`` on loopback under mixed HTTP load (needs root).

    sudo python bench/sniff_bench.py                 # 10 s per phase
    sudo python bench/sniff_bench.py --duration 5    # a quick check

1. Starts nginx on 127.0.0.1 (a private config in a temporary directory)
   serving a mix of bodies: 1 KiB, 16 KiB, 256 KiB and 1 MiB.
2. Phase "sniff": ``tapproxy sniff -i lo --filter 'tcp port PORT'`` runs
   while wrk (keep-alive, several connections, a Lua script rotating the
   paths, paced with ``delay()`` to offer ``--rate-gbps``, 1 by default;
   0 for as fast as it goes) loads nginx. Reported: HTTP throughput (wrk's bytes/s, in Gbit/s),
   requests/s, the packets the kernel queued to sniff and the packets it
   dropped (``PACKET_STATISTICS``), the records written, and sniff's CPU
   time per packet.
3. Phases "read only": the same load, with a process that only reads the
   packet socket (bench/sniff_readers.py), once with ``recvmsg_into``
   (``LiveSource.read``) and once with a ``TPACKET_V3`` memory-mapped ring:
   their CPU time per packet says what a ring would save.

nginx and wrk are Debian packages (``apt-get install nginx-light wrk``); the
benchmark says so and stops if they are missing. Every process it starts is
stopped by it, within bounded waits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = {"s": 1 << 10, "m": 16 << 10, "l": 256 << 10, "xl": 1 << 20}
# Requests per path in one rotation of the Lua script: mostly small, some large.
MIX = ["s"] * 8 + ["m"] * 4 + ["l"] * 2 + ["xl"]
CLK_TCK = os.sysconf("SC_CLK_TCK")

NGINX_CONF = """
worker_processes 1;
user root;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
    }}
}}
"""


@dataclass
class Load:
    requests: int
    seconds: float
    bytes: int


@dataclass
class Capture:
    read: int
    kernel_packets: int
    kernel_drops: int
    records: int
    cpu_seconds: float


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load per phase")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--rate-gbps", type=float, default=1.0,
                    help="offered load, paced by wrk's delay(); 0: as fast as wrk can")  # fmt: skip
    ap.add_argument("--port", type=int, default=18481)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("sniff_bench: needs root (packet sockets)", file=sys.stderr)
        return 2
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"sniff_bench: {tool} missing: apt-get install nginx-light wrk", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="sniff-bench-") as tmp:
        nginx = _start_nginx(Path(tmp), args.port)
        try:
            return _phases(Path(tmp), args)
        finally:
            nginx.terminate()
            nginx.wait(timeout=20)


def _phases(tmp: Path, args: argparse.Namespace) -> int:
    expr = f"tcp port {args.port}"
    out = tmp / "flows.jsonl"
    sniff = _start([sys.executable, "-m", "proxy.cli.sniff_cmd", "-i", "lo", "--filter", expr,
                    "-o", str(out)])  # fmt: skip
    cpu0 = _cpu(sniff.pid)  # start-up (imports) is not per-packet work
    load = _wrk(tmp, args)
    cap = _finish_sniff(sniff, out, cpu0)
    _report_sniff(load, cap)
    for kind in ("recvmsg", "ring"):
        reader = _start([sys.executable, str(ROOT / "bench" / "sniff_readers.py"), kind, "lo",
                         expr])  # fmt: skip
        cpu0 = _cpu(reader.pid)
        load2 = _wrk(tmp, args)
        _report_reader(kind, load2, _finish_reader(reader, cpu0))
    return 0


def _start_nginx(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    www = tmp / "www"
    www.mkdir()
    for name, size in PATHS.items():
        (www / name).write_bytes(os.urandom(size))
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ok = subprocess.run(["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{port}/s"],
                            timeout=10).returncode == 0  # fmt: skip
        if ok:
            return proc
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit("nginx did not start")


def _start(cmd: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()  # "capturing on lo", or the error
    if "capturing on" not in line:
        proc.kill()
        raise SystemExit(f"capture did not start: {line}{proc.stderr.read().decode()}")
    return proc


def _wrk(tmp: Path, args: argparse.Namespace) -> Load:
    script = tmp / "mix.lua"
    paths = ", ".join(f'"/{p}"' for p in MIX)
    lua = (
        f"local paths = {{{paths}}}\nlocal i = 0\n"
        "request = function()\n  i = i % #paths + 1\n"
        "  return wrk.format(nil, paths[i])\nend\n"
    )
    if args.rate_gbps > 0:  # each connection waits so that together they offer the rate
        mean = sum(PATHS[p] for p in MIX) / len(MIX)
        per_second = args.rate_gbps * 1e9 / 8 / mean
        lua += f"delay = function()\n  return {1000 * args.connections / per_second:.3f}\nend\n"
    script.write_text(lua)
    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration:g}s", "-s", str(script),
           f"http://127.0.0.1:{args.port}/"]  # fmt: skip
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s), ([\d.]+)([KMG]?B) read", text)
    if m is None:
        raise SystemExit(f"cannot read wrk's output:\n{text}")
    secs = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    scale = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[m.group(5)]
    return Load(int(m.group(1)), secs, int(float(m.group(4)) * scale))


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def _finish_sniff(proc: subprocess.Popen[bytes], out: Path, cpu0: float) -> Capture:
    cpu = _cpu(proc.pid) - cpu0
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    summary = json.loads(out.read_text().splitlines()[-1])
    return Capture(summary["packets_read"], summary["kernel_packets"], summary["kernel_drops"],
                   summary["records"], cpu)  # fmt: skip


def _finish_reader(proc: subprocess.Popen[bytes], cpu0: float) -> Capture:
    cpu = _cpu(proc.pid) - cpu0
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=60)
    read, packets, drops = map(int, stdout.split())
    return Capture(read, packets, drops, 0, cpu)


def _gbps(x: Load) -> float:
    return x.bytes * 8 / x.seconds / 1e9


def _per_packet(c: Capture) -> float:
    return c.cpu_seconds / max(c.read, 1) * 1e6


def _report_sniff(load: Load, cap: Capture) -> None:
    drop_pct = 100.0 * cap.kernel_drops / max(cap.kernel_packets, 1)
    print(f"cores: {os.cpu_count()}  (nginx, wrk and the capture share them)")
    print("phase sniff (full pipeline: decode, reassembly, HTTP records):")
    print(
        f"  load      {_gbps(load):.2f} Gbit/s of HTTP, {load.requests / load.seconds:,.0f} req/s"
    )
    print(f"  kernel    {cap.kernel_packets:,} packets queued, {cap.kernel_drops:,} dropped "
          f"({drop_pct:.2f}%)")  # fmt: skip
    print(f"  sniff     {cap.read:,} packets read, {cap.records:,} records "
          f"(wrk: {load.requests:,} responses), {_per_packet(cap):.1f} µs CPU/packet")  # fmt: skip


def _report_reader(kind: str, load: Load, raw: Capture) -> None:
    print(f"phase read only, {kind} (each packet copied out with its time, no decoding):")
    print(f"  load      {_gbps(load):.2f} Gbit/s of HTTP")
    print(f"  reader    {raw.read:,} packets, {raw.kernel_drops:,} dropped, "
          f"{_per_packet(raw):.1f} µs CPU/packet")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
