"""Scenario h's tools: an nghttpd origin, h2load runs, and an origin-connection counter.

* ``start_h2_origin(workdir)`` starts Debian's ``nghttpd`` (nghttp2-server)
  twice, pinned to the load CPU: ``--no-tls`` (h2c, prior knowledge) and over
  TLS with a certificate for 127.0.0.1 signed by a bench CA made for the run
  (``bench.origin.make_bench_pki``). Both serve ``/small``, 100 bytes, as in
  scenario a.
* ``run_h2load(url, n)`` runs ``h2load -n N -c 10 -m 100 URL`` pinned to the
  load CPU and parses its summary. h2load uses h2c prior knowledge on an
  ``http://`` URL and ALPN h2 on ``https://`` (it does not verify the
  certificate). It cannot use an HTTP proxy, so the proxies run as reverse
  proxies in front of the origin.
* ``OriginConns`` samples ``/proc/net/tcp`` while the load runs and keeps the
  largest number of established connections to the origin's port (through a
  proxy: how many upstream connections the proxy opened for the streams).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import LOAD_CPU, Launched, free_port, launch, taskset, wait_port
from bench.origin import SMALL_BODY, BenchPKI, make_bench_pki

NGHTTPD = shutil.which("nghttpd", path="/usr/sbin:/usr/bin:/sbin:/bin")
H2LOAD = shutil.which("h2load")
#: h2load's client connections and concurrent streams per connection (the issue's load).
CONNECTIONS = 10
STREAMS = 100


@dataclass
class H2Origin:
    """nghttpd serving ``/small`` in cleartext (h2c) and over TLS (h2)."""

    h2c_port: int
    tls_port: int
    pki: BenchPKI
    procs: list[Launched]

    @property
    def cmd(self) -> str:
        return " ; ".join(" ".join(p.cmd) for p in self.procs)

    def alive(self) -> bool:
        return all(p.alive() for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


def start_h2_origin(workdir: Path) -> H2Origin:
    """Start the two nghttpd listeners pinned to the load CPU (raises RuntimeError)."""
    if NGHTTPD is None:
        raise RuntimeError("nghttpd is not installed (apt-get install nghttp2-server)")
    www = workdir / "www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "small").write_bytes(b"x" * (SMALL_BODY - 1) + b"\n")
    pki = make_bench_pki(workdir / "pki")
    h2c_port, tls_port = free_port(), free_port()
    common = ["-a", "127.0.0.1", "-d", str(www)]
    h2c = launch(
        [NGHTTPD, *common, "--no-tls", str(h2c_port)], cpu=LOAD_CPU, log=workdir / "h2c.log"
    )
    tls = launch(
        [NGHTTPD, *common, str(tls_port), str(pki.key_pem), str(pki.cert_pem)],
        cpu=LOAD_CPU,
        log=workdir / "tls.log",
    )
    origin = H2Origin(h2c_port, tls_port, pki, [h2c, tls])
    try:
        wait_port(h2c_port, 15, h2c.popen)
        wait_port(tls_port, 15, tls.popen)
    except RuntimeError as e:
        origin.stop()
        logs = " / ".join(
            (workdir / f).read_text(errors="replace")[-300:] for f in ("h2c.log", "tls.log")
        )
        raise RuntimeError(f"nghttpd did not start: {e}: {logs.strip()}") from e
    return origin


@dataclass
class H2LoadResult:
    """h2load's summary of one run."""

    total: int
    succeeded: int
    failed: int
    errored: int
    timeouts: int
    status_2xx: int
    seconds: float
    rps: float
    mean_request_ms: float
    protocol: str
    cmd: str
    output: str  # the whole of stdout and stderr, for the report when something failed

    @property
    def problem(self) -> str:
        """Empty when every request succeeded with a 2xx, else what went wrong."""
        if self.succeeded == self.total and self.status_2xx == self.total:
            return ""
        return (
            f"{self.succeeded} of {self.total} succeeded ({self.failed} failed, "
            f"{self.errored} errored, {self.timeouts} timeout, {self.status_2xx} 2xx)"
        )


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0


def parse_h2load(out: str, cmd: str) -> H2LoadResult:
    """The figures of h2load's summary; RuntimeError when it printed none."""
    fin = re.search(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", out)
    req = re.search(
        r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out,
    )
    if fin is None or req is None:
        raise RuntimeError(f"h2load printed no summary: {out.strip()[-400:]}")
    codes = re.search(r"status codes: (\d+) 2xx", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    total, ok, failed, errored, timeouts = (int(g) for g in req.groups())
    return H2LoadResult(
        total=total,
        succeeded=ok,
        failed=failed,
        errored=errored,
        timeouts=timeouts,
        status_2xx=int(codes.group(1)) if codes else 0,
        seconds=float(fin.group(1)) * _UNITS[fin.group(2)] / 1e3,
        rps=float(fin.group(3)),
        mean_request_ms=_ms(mean.group(1)) if mean else 0.0,
        protocol=proto.group(1) if proto else "none",
        cmd=cmd,
        output=out,
    )


def h2load_cmd(url: str, n: int, connections: int = CONNECTIONS) -> list[str]:
    if H2LOAD is None:
        raise RuntimeError("h2load is not installed (apt-get install nghttp2-client)")
    streams = min(STREAMS, max(1, n // connections))
    return [*taskset(LOAD_CPU), H2LOAD, "-n", str(n), "-c", str(connections),
            "-m", str(streams), url]  # fmt: skip


def run_h2load(url: str, n: int, *, timeout: float, connections: int = CONNECTIONS) -> H2LoadResult:
    """One bounded h2load run pinned to the load CPU."""
    cmd = h2load_cmd(url, n, connections)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"h2load did not finish {n} requests in {timeout:.0f} s") from e
    return parse_h2load(r.stdout + r.stderr, " ".join(cmd))


def _established_to(port: int) -> int:
    """Established IPv4 TCP connections whose remote end is 127.0.0.1:``port``."""
    want = f"0100007F:{port:04X}"
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[2] == want and fields[3] == "01":
                count += 1
    return count


class OriginConns:
    """The most connections to the origin's port seen, sampled every 0.2 s in a thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, _established_to(self.port))
            if self._stop.wait(0.2):
                return

    def __enter__(self) -> OriginConns:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, _established_to(self.port))


def reset_peak_rss(pids: list[int]) -> bool:
    """Reset VmHWM to the current RSS (``clear_refs`` 5, Linux >= 4.0); False if refused."""
    ok = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def wait_for_lines(path: Path, want: int, timeout: float = 10.0) -> int:
    """Lines in ``path`` once it has ``want`` of them or ``timeout`` passed (flow log)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, "rb") as f:
                have = sum(1 for _ in f)
        except OSError:
            have = 0
        if have >= want or time.monotonic() >= deadline:
            return have
        time.sleep(0.2)
