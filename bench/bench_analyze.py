"""Benchmark ``tapproxy analyze`` against tshark and a scapy extraction.

    python bench/bench_analyze.py --size-mb 1024          # the full run
    python bench/bench_analyze.py --size-mb 50            # a quick check

1. Generates a pcapng of at least ``--size-mb`` megabytes with
   ``proxy.pcap.writer``: keep-alive HTTP/1.1 connections over Ethernet/IPv4,
   1-6 exchanges each, response bodies from 500 bytes to 256 KiB (a tenth
   chunked), a few POST bodies. The mix is seeded, so runs are comparable.
2. Runs, one after another, each in its own process:
   * ``tapproxy analyze CAP -o OUT`` (full TCP reassembly + HTTP decoding);
   * ``tshark -r CAP -Y http.request -T fields -e http.request.method
     -e http.request.uri`` (reassembly + HTTP dissection);
   * a scapy script: ``rdpcap(CAP)`` and a scan of each TCP payload for a
     request line (no reassembly: what a typical scapy script does). scapy
     loads the whole capture into memory; ``--scapy-max-mb`` bounds the
     file size it is given (it is skipped above that, and says so).
3. With ``--tls-size-mb N`` (default 100; 0 skips it), does the same for
   decryption: ``bench/tls_capture.py`` makes an HTTPS capture of at least N
   MB and its key log (TLS 1.2 and 1.3, ALPN http/1.1 and h2), and
   ``tapproxy analyze CAP --keylog KEYS`` runs against ``tshark -o
   tls.keylog_file:KEYS -Y "http.request or http2.headers.method"`` on it.
4. Reports wall time, MB/s, packets/s, peak RSS of each child
   (``os.wait4``'s rusage), how many requests each found, and for each pair
   the throughput ratio (tshark's seconds / analyze's seconds).

Tools that are not installed are reported as such, not failed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.pcap.writer import PcapngWriter  # noqa: E402

_SCAPY_SCRIPT = """
import sys
from scapy.all import TCP, Raw, rdpcap
methods = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ")
n = 0
with open(sys.argv[2], "w") as out:
    for pkt in rdpcap(sys.argv[1]):
        if TCP in pkt and Raw in pkt:
            data = bytes(pkt[Raw].load)
            if data.startswith(methods):
                method, uri = data.split(b" ", 2)[:2]
                out.write(f"{method.decode()}\\t{uri.decode()}\\n")
                n += 1
print(n)
"""


@dataclass
class Result:
    name: str
    seconds: float
    max_rss_mb: float
    requests: int | None
    note: str = ""


def generate(path: Path, size_mb: int, seed: int = 1) -> tuple[int, int]:
    """Write the synthetic capture; returns (packets, requests)."""
    rng = random.Random(seed)
    blob = bytes(rng.getrandbits(8) for _ in range(4096)) * 64  # 256 KiB of body material
    target = size_mb * 1_000_000
    ts, requests, conns = 1_700_000_000.0, 0, 0
    with path.open("wb", buffering=1 << 20) as f:
        w = PcapngWriter(f)
        while f.tell() < target:
            conns += 1
            client = (
                f"10.{conns >> 16 & 255}.{conns >> 8 & 255}.{conns & 255 or 1}",
                40000 + conns % 20000,
            )
            conv = w.open_conversation(client, ("192.0.2.80", 80), ts, f"bench-{conns}")
            for _ in range(rng.randint(1, 6)):
                ts += 0.001
                conv.data(ts, True, _request(rng, requests))
                ts += 0.002
                conv.data(ts, False, _response(rng, blob))
                requests += 1
            ts += 0.001
            conv.close(ts)
        packets = w.packets
    return packets, requests


def _request(rng: random.Random, n: int) -> bytes:
    if rng.random() < 0.1:
        body = b"k=v&" * rng.randint(1, 200)
        head = f"POST /submit/{n} HTTP/1.1\r\nHost: bench.example\r\n"
        head += f"Content-Length: {len(body)}\r\n"
        return (head + "Content-Type: application/x-www-form-urlencoded\r\n\r\n").encode() + body
    return (
        f"GET /item/{n}?q={rng.randint(0, 1 << 30)} HTTP/1.1\r\nHost: bench.example\r\n"
        "User-Agent: bench/1.0\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n\r\n"
    ).encode()


def _response(rng: random.Random, blob: bytes) -> bytes:
    r = rng.random()
    low, high = (300, 4096) if r < 0.6 else (4096, 32768) if r < 0.95 else (65536, 262144)
    size = rng.randint(low, high)
    body = blob[:size]
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nServer: bench\r\n"
    if rng.random() < 0.1:
        chunks = [body[i : i + 8192] for i in range(0, len(body), 8192)]
        framed = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + framed
    return (head + f"Content-Length: {size}\r\n\r\n").encode() + body


def run_child(name: str, argv: list[str], stdout_path: Path) -> tuple[float, float, int]:
    """Run a child; return (wall seconds, peak RSS MB, exit status)."""
    with stdout_path.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss / 1024, proc.returncode


def bench_analyze(cap: Path, work: Path) -> Result:
    out = work / "analyze.jsonl"
    code = "import sys; from proxy.cli.analyze_cmd import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, str(cap), "-o", str(out), "--no-progress"]
    secs, rss, status = run_child("analyze", argv, work / "analyze.stdout")
    found = sum(1 for line in out.open() if '"kind":"http"' in line) if out.exists() else None
    return Result("tapproxy analyze", secs, rss, found, _status(status))


def bench_analyze_keylog(cap: Path, keys: Path, work: Path) -> Result:
    out = work / "analyze-tls.jsonl"
    code = "import sys; from proxy.cli.analyze_cmd import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, str(cap), "--keylog", str(keys), "-o", str(out),
            "--no-progress"]  # fmt: skip
    secs, rss, status = run_child("analyze", argv, work / "analyze-tls.stdout")
    found = sum(1 for line in out.open() if '"kind":"http"' in line) if out.exists() else None
    return Result("tapproxy analyze --keylog", secs, rss, found, _status(status))


def bench_tshark_keylog(cap: Path, keys: Path, work: Path) -> Result:
    if shutil.which("tshark") is None:
        return Result("tshark (key log)", 0, 0, None, "tshark not installed")
    out = work / "tshark-tls.tsv"
    argv = ["tshark", "-r", str(cap), "-o", f"tls.keylog_file:{keys}",
            "-Y", "http.request or http2.headers.method", "-T", "fields",
            "-e", "http.request.method", "-e", "http2.headers.method",
            "-E", "occurrence=a"]  # fmt: skip
    secs, rss, status = run_child("tshark", argv, out)
    found = sum(  # one line per packet; a packet may carry several HTTP/2 requests
        len([m for m in field.split(",") if m])
        for line in out.open()
        for field in line.rstrip("\n").split("\t")
    )
    return Result("tshark -o tls.keylog_file", secs, rss, found, _status(status))


def bench_tshark(cap: Path, work: Path) -> Result:
    if shutil.which("tshark") is None:
        return Result("tshark", 0, 0, None, "tshark not installed")
    out = work / "tshark.tsv"
    argv = ["tshark", "-r", str(cap), "-Y", "http.request", "-T", "fields",
            "-e", "http.request.method", "-e", "http.request.uri"]  # fmt: skip
    secs, rss, status = run_child("tshark", argv, out)
    found = sum(1 for _ in out.open())
    return Result("tshark -Y http.request", secs, rss, found, _status(status))


def bench_scapy(cap: Path, work: Path, max_mb: int) -> Result:
    probe = subprocess.run([sys.executable, "-c", "import scapy"], capture_output=True)
    if probe.returncode != 0:
        return Result("scapy rdpcap", 0, 0, None, "scapy not installed (pip install scapy)")
    if cap.stat().st_size > max_mb * 1_000_000:
        return Result("scapy rdpcap", 0, 0, None, f"skipped: capture over --scapy-max-mb {max_mb}")
    script = work / "scapy_extract.py"
    script.write_text(_SCAPY_SCRIPT)
    out = work / "scapy.tsv"
    secs, rss, status = run_child(
        "scapy", [sys.executable, str(script), str(cap), str(out)], work / "scapy.stdout"
    )
    found = sum(1 for _ in out.open()) if out.exists() else None
    return Result("scapy rdpcap (no reassembly)", secs, rss, found, _status(status))


def _status(code: int) -> str:
    return "" if code == 0 else f"exit {code}"


def report(results: list[Result], size: int, packets: int, requests: int) -> None:
    print(f"capture: {size / 1e6:,.1f} MB, {packets:,} packets, {requests:,} requests")
    ours = next((r for r in results if r.name.startswith("tapproxy") and r.seconds), None)
    theirs = next((r for r in results if r.name.startswith("tshark") and r.seconds), None)
    print(
        f"{'tool':32} {'seconds':>8} {'MB/s':>8} {'packets/s':>11} "
        f"{'peak RSS MB':>12} {'requests':>9}"
    )
    for r in results:
        if not r.seconds:
            print(f"{r.name:32} {r.note}")
            continue
        found = "-" if r.requests is None else str(r.requests)
        print(
            f"{r.name:32} {r.seconds:8.2f} {size / 1e6 / r.seconds:8.1f} "
            f"{packets / r.seconds:11,.0f} {r.max_rss_mb:12.1f} {found:>9} {r.note}"
        )
    if ours and theirs:
        print(f"throughput ratio analyze/tshark: {theirs.seconds / ours.seconds:.2f}x")


def bench_tls(work: Path, size_mb: int, skip: list[str]) -> None:
    from bench.tls_capture import generate_tls

    blob = bytes(random.Random(1).getrandbits(8) for _ in range(4096)) * 64
    cap, keys = work / "bench-tls.pcapng", work / "bench-tls.keys"
    t0 = time.perf_counter()
    packets, requests = generate_tls(
        cap, keys, size_mb, lambda rng, n: (_request(rng, n), _response(rng, blob))
    )
    print(f"\ngenerated {cap} and {keys} in {time.perf_counter() - t0:.1f} s", flush=True)
    results = []
    if "analyze" not in skip:
        results.append(bench_analyze_keylog(cap, keys, work))
    if "tshark" not in skip:
        results.append(bench_tshark_keylog(cap, keys, work))
    report(results, cap.stat().st_size, packets, requests)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--size-mb", type=int, default=1024, help="capture size to generate (default 1024)"
    )
    p.add_argument("--workdir", type=Path, help="where to put the capture (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the capture and outputs")
    p.add_argument("--scapy-max-mb", type=int, default=2048, help="largest capture given to scapy")
    p.add_argument("--skip", action="append", default=[],
                   choices=["analyze", "tshark", "scapy", "tls"])  # fmt: skip
    p.add_argument("--tls-size-mb", type=int, default=100,
                   help="HTTPS capture for the --keylog pair (default 100; 0: none)")  # fmt: skip
    args = p.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_analyze_"))
    work.mkdir(parents=True, exist_ok=True)
    cap = work / "bench.pcapng"
    try:
        t0 = time.perf_counter()
        packets, requests = generate(cap, args.size_mb)
        print(f"generated {cap} in {time.perf_counter() - t0:.1f} s", flush=True)
        results = []
        if "analyze" not in args.skip:
            results.append(bench_analyze(cap, work))
        if "tshark" not in args.skip:
            results.append(bench_tshark(cap, work))
        if "scapy" not in args.skip:
            results.append(bench_scapy(cap, work, args.scapy_max_mb))
        report(results, cap.stat().st_size, packets, requests)
        if args.tls_size_mb and "tls" not in args.skip:
            bench_tls(work, args.tls_size_mb, args.skip)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
