"""HTTP/2 servers behind the proxy under load: 1 GiB bodies and h2load (issue 15).

nghttpd (``tests.support.nghttpd``, not verbose here: logging every DATA
frame of a GiB would slow it down; ``test_http2_upstreams`` proves from its
verbose log that these routes reach it over HTTP/2, and the records here
say so: ``server_version``, ``tls.server.alpn``) serves a 1 GiB file of
the deterministic test pattern, written for this module and deleted after,
and echoes uploads. Through ``reverse:h2c://`` (curl prior knowledge) and
``--mitm`` (curl ``--http2 -x``, h2 in TLS on both legs):

* a 1 GiB download read slowly (curl ``--limit-rate``) arrives intact while
  the proxy's peak resident size (``VmHWM``) stays under 80 MB: the proxy
  acknowledges the server's DATA only as the client takes it;
* a 1 GiB upload streamed from the test (never held in memory) comes back
  echoed intact, under the same memory bound.

h2load runs 20,000 requests over 10 connections, 100 streams each, through
``reverse:h2c://``: all succeed, and the upstream connections (sampled with
``ss`` while it runs) are never more than one per client connection, and
are gone once the clients are. All long runs: marked ``slow``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from tests.integration.test_http2_upstreams import server_version
from tests.support.certs import CertAuthority
from tests.support.h2clients import records_for, tag, write_pattern
from tests.support.nghttpd import NGHTTPD, Nghttpd, start_nghttpd
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import pattern_chunks, pattern_sha256

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not NGHTTPD, reason="nghttpd (nghttp2-server) missing"),
]

GIB = 1024**3
RSS_LIMIT_KB = 80 * 1000  # 80 MB
READ_RATE = 40 * 1024 * 1024  # the slow reader's bytes per second
ROUTES = ["h2c", "mitm"]


@dataclass(frozen=True)
class Origins:
    ca: CertAuthority
    h2c: Nghttpd
    tls: Nghttpd
    workdir: Path


@pytest.fixture(scope="module")
def origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origins]:
    """nghttpd, h2c and TLS, over a document root with ``big`` (1 GiB) and ``small``."""
    d = tmp_path_factory.mktemp("h2-upstreams-load")
    ca = CertAuthority.create(d / "ca")
    cert = ca.server_cert(["localhost", "127.0.0.1"], "nghttpd.pem")
    www = d / "www"
    www.mkdir()
    big = write_pattern(www / "big", pattern_chunks(GIB, 1 << 20))
    write_pattern(www / "small", pattern_chunks(100))
    h2c = start_nghttpd(d / "h2c", www, verbose=False)
    tls = start_nghttpd(d / "tls", www, cert=cert, verbose=False)
    try:
        yield Origins(ca, h2c, tls, d)
    finally:
        h2c.stop()
        tls.stop()
        big.unlink()


@dataclass(frozen=True)
class Leg:
    proxy: ProxyProcess
    url: str  # the origin URL the client asks for
    curl_args: tuple[str, ...]
    origin: Nghttpd


@pytest.fixture(params=ROUTES)
def leg(request: pytest.FixtureRequest, origins: Origins, tmp_path: Path) -> Iterator[Leg]:
    """A proxy of the test's own (its VmHWM is this test's alone) on one route."""
    log = tmp_path / "flows.jsonl"
    if request.param == "h2c":
        p = start_proxy("--mode", f"reverse:h2c://127.0.0.1:{origins.h2c.port}", flow_log=log)
        leg = Leg(p, p.url, ("--http2-prior-knowledge",), origins.h2c)
    else:
        certs = tmp_path / "certs"
        p = start_proxy(
            "--mitm", "--certs", str(certs), "--upstream-ca", str(origins.ca.cert_path),
            flow_log=log,
        )  # fmt: skip
        args = ("--http2", "-x", p.url, "--cacert", str(certs / "tapproxy-ca.pem"))
        leg = Leg(p, f"https://localhost:{origins.tls.port}", args, origins.tls)
    try:
        yield leg
    finally:
        p.stop()


def status_kb(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    assert m, text
    return int(m.group(1))


def hash_stream(stream: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    count = 0
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
        count += len(chunk)
    return digest.hexdigest(), count


class Sampler:
    """Calls ``probe`` every ``every`` seconds in a thread until stopped (bounded)."""

    def __init__(self, probe: Callable[[], int], every: float, limit: float = 600) -> None:
        self.samples: list[int] = []
        self._probe, self._every, self._limit = probe, every, limit
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self._limit
        while not self._done.wait(self._every) and time.monotonic() < deadline:
            self.samples.append(self._probe())

    def stop(self) -> list[int]:
        self._done.set()
        self._thread.join(10)
        return self.samples


def check_record(leg: Leg, marker: str) -> dict[str, Any]:
    [rec] = records_for(leg.proxy, marker, timeout=30)
    assert rec["error"] is None, rec["error"]
    assert rec["request"]["http_version"] == "HTTP/2.0", rec["request"]
    assert rec["response"]["http_version"] == "HTTP/2.0", rec["response"]
    assert server_version(rec) == "HTTP/2.0", rec["response"]
    assert rec["response"]["status"] == 200
    assert rec["server"]["port"] == leg.origin.port
    if leg.url.startswith("https:"):
        assert rec["tls"]["client"]["alpn"] == "h2", rec["tls"]
        assert rec["tls"]["server"]["alpn"] == "h2", rec["tls"]
    return rec


@pytest.mark.timeout(600)
def test_one_gib_download_to_a_slow_reader(leg: Leg) -> None:
    pid = leg.proxy.proc.pid
    rss = Sampler(lambda: status_kb(pid, "VmRSS"), 0.25)
    marker = tag()
    started = time.monotonic()
    curl = subprocess.Popen(
        ["curl", "-sS", *leg.curl_args, "--limit-rate", str(READ_RATE),
         f"{leg.url}/big?{marker}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert curl.stdout is not None and curl.stderr is not None
    try:
        digest, count = hash_stream(curl.stdout)
        assert curl.wait(60) == 0, curl.stderr.read()
    finally:
        samples = rss.stop()
        if curl.poll() is None:
            curl.kill()
    took = time.monotonic() - started
    peak = status_kb(pid, "VmHWM")
    print(f"1 GiB download in {took:.1f} s; proxy VmHWM {peak} kB")
    assert count == GIB
    assert digest == pattern_sha256(GIB)
    assert took > 0.8 * GIB / READ_RATE, f"the reader was not slow ({took:.1f} s)"
    assert samples and max(samples) < RSS_LIMIT_KB, samples
    assert peak < RSS_LIMIT_KB, f"VmHWM {peak} kB"
    rec = check_record(leg, marker)
    assert rec["response"]["body_size"] == GIB


@pytest.mark.timeout(600)
def test_one_gib_upload_echoed(leg: Leg) -> None:
    """curl reads the body from a pipe the test feeds from the pattern (no
    content-length: DATA until END_STREAM); nghttpd echoes it once it has it all."""
    pid = leg.proxy.proc.pid
    marker = tag()
    curl = subprocess.Popen(
        ["curl", "-sS", *leg.curl_args, "-T", "-", "-X", "POST", f"{leg.url}/echo?{marker}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert curl.stdin is not None and curl.stdout is not None and curl.stderr is not None
    stdin = curl.stdin
    started = time.monotonic()

    def feed() -> None:
        try:
            for chunk in pattern_chunks(GIB, 1 << 20):
                stdin.write(chunk)
        except BrokenPipeError:
            pass  # curl failed: its exit status says why
        finally:
            stdin.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        digest, count = hash_stream(curl.stdout)
        assert curl.wait(60) == 0, curl.stderr.read()
    finally:
        feeder.join(60)
        if curl.poll() is None:
            curl.kill()
    peak = status_kb(pid, "VmHWM")
    print(f"1 GiB echoed in {time.monotonic() - started:.1f} s; proxy VmHWM {peak} kB")
    assert count == GIB
    assert digest == pattern_sha256(GIB)
    assert peak < RSS_LIMIT_KB, f"VmHWM {peak} kB"
    rec = check_record(leg, marker)
    assert rec["request"]["body_size"] == GIB
    assert rec["response"]["body_size"] == GIB
    assert ["nghttpd-response", "echo"] in rec["response"]["headers"]


# -- h2load ---------------------------------------------------------------------------------------


def upstream_connections(port: int) -> int:
    """Established TCP connections to ``port`` (the proxy's side of them)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return len(out.stdout.splitlines())


H2LOAD_TOTALS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)


@pytest.mark.timeout(600)
@pytest.mark.skipif(not shutil.which("h2load"), reason="h2load (nghttp2-client) missing")
def test_h2load_through_h2c_shares_few_upstream_connections(
    origins: Origins, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    port = origins.h2c.port
    p = start_proxy("--mode", f"reverse:h2c://127.0.0.1:{port}", flow_log=tmp_path / "f.jsonl")
    try:
        assert upstream_connections(port) == 0
        marker = tag()
        ss = Sampler(lambda: upstream_connections(port), 0.1)
        try:
            out = subprocess.run(
                ["h2load", "-n", "20000", "-c", "10", "-m", "100", f"{p.url}/small?{marker}"],
                capture_output=True, text=True, timeout=540,
            )  # fmt: skip
        finally:
            samples = ss.stop()
        assert out.returncode == 0, out.stderr
        m = H2LOAD_TOTALS.search(out.stdout)
        assert m, out.stdout
        total, started, done, succeeded, failed, errored, timeouts = map(int, m.groups())
        assert (total, started, done, succeeded) == (20000,) * 4, out.stdout
        assert (failed, errored, timeouts) == (0, 0, 0), out.stdout
        assert "status codes: 20000 2xx" in out.stdout, out.stdout
        peak = max(samples, default=0)
        record_property("max_upstream_connections", peak)
        print(f"upstream connections to nghttpd: max {peak} over {len(samples)} samples")
        assert 1 <= peak <= 10, samples
        recs = records_for(p, marker, 20000, timeout=60)
        assert {r["request"]["http_version"] for r in recs} == {"HTTP/2.0"}
        assert {r["response"]["status"] for r in recs} == {200}
        assert {r["server"]["port"] for r in recs} == {port}
        assert len({r["client"]["port"] for r in recs}) == 10, "ten client connections"
        deadline = time.monotonic() + 10
        while (left := upstream_connections(port)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == 0, "the upstream connections outlived their client connections"
    finally:
        p.stop()
