"""HTTP/2 under load and with a slow reader, through a reverse listener (issue 15).

h2load runs 20,000 requests over 10 connections with 100 concurrent streams
each; every one must succeed and leave its record. A client that reads a
1 GiB HTTP/2 download slowly (curl ``--limit-rate``: it stops taking DATA,
so its flow-control window closes) must not make the proxy buffer: its peak
resident size (``VmHWM``) stays under 80 MB while every byte arrives intact.
The same holds for a 1 GiB upload to an upstream that reads slowly.
Both are long runs: marked ``slow`` (``-m "not slow"`` leaves them out).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.h2clients import assert_h2_record, records_for, tag
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import Upstreams, pattern_chunks, pattern_sha256

GIB = 1024**3
RSS_LIMIT_KB = 80 * 1000  # 80 MB
READ_RATE = 40 * 1024 * 1024  # the slow reader's bytes per second
pytestmark = pytest.mark.slow


@pytest.fixture
def rev(upstreams: Upstreams, tmp_path: Path) -> Iterator[ProxyProcess]:
    p = start_proxy("--mode", "reverse:" + upstreams.url, flow_log=tmp_path / "flows.jsonl")
    yield p
    p.stop()


@pytest.mark.timeout(600)
@pytest.mark.skipif(not shutil.which("h2load"), reason="h2load (nghttp2-client) missing")
def test_h2load_twenty_thousand_requests_all_succeed(rev: ProxyProcess) -> None:
    marker = tag()
    out = subprocess.run(
        ["h2load", "-n", "20000", "-c", "10", "-m", "100", f"{rev.url}/bytes/100?{marker}"],
        capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out.stdout,
    )
    assert m, out.stdout
    total, started, done, succeeded, failed, errored, timeouts = map(int, m.groups())
    assert (total, started, done, succeeded) == (20000,) * 4, out.stdout
    assert (failed, errored, timeouts) == (0, 0, 0), out.stdout
    assert "status codes: 20000 2xx" in out.stdout, out.stdout
    recs = records_for(rev, marker, 20000, timeout=60)
    assert {r["request"]["http_version"] for r in recs} == {"HTTP/2.0"}
    assert {r["response"]["status"] for r in recs} == {200}
    assert len({r["client"]["port"] for r in recs}) == 10, "ten client connections"


def _status_kb(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    assert m, text
    return int(m.group(1))


@pytest.mark.timeout(600)
def test_slow_reader_of_one_gib_keeps_the_proxy_small(rev: ProxyProcess) -> None:
    pid = rev.proc.pid
    before = _status_kb(pid, "VmHWM")
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            samples.append(_status_kb(pid, "VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    marker = tag()
    started = time.monotonic()
    curl = subprocess.Popen(
        ["curl", "-sS", "--http2-prior-knowledge", "--limit-rate", str(READ_RATE),
         f"{rev.url}/bytes/{GIB}?{marker}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert curl.stdout is not None
    digest = hashlib.sha256()
    count = 0
    try:
        while chunk := curl.stdout.read(1 << 20):
            digest.update(chunk)
            count += len(chunk)
        assert curl.wait(60) == 0, curl.stderr.read() if curl.stderr else b""
    finally:
        done.set()
        sampler.join(5)
        if curl.poll() is None:
            curl.kill()
    took = time.monotonic() - started
    peak = _status_kb(pid, "VmHWM")
    assert count == GIB
    assert took > 0.8 * GIB / READ_RATE, f"the reader was not slow ({took:.1f} s)"
    assert peak < RSS_LIMIT_KB, f"VmHWM {peak} kB (before the download: {before} kB)"
    assert samples and max(samples) < RSS_LIMIT_KB, samples
    [rec] = records_for(rev, marker)
    assert_h2_record(rec)
    assert rec["response"]["body_size"] == GIB
    assert digest.hexdigest() == pattern_sha256(GIB)


async def _slow_upload(request: web.Request) -> web.Response:
    """Read the body at READ_RATE: the proxy must stop taking the client's DATA."""
    digest = hashlib.sha256()
    size = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    async for chunk in request.content.iter_chunked(1 << 16):
        digest.update(chunk)
        size += len(chunk)
        ahead = start + size / READ_RATE - loop.time()
        if ahead > 0:
            await asyncio.sleep(ahead)
    return web.json_response({"sha256": digest.hexdigest(), "size": size})


@pytest.mark.timeout(600)
def test_slow_upstream_reader_of_one_gib_upload_keeps_the_proxy_small(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    """The other direction: a 1 GiB upload (no content-length: chunked upstream)
    to an upstream that reads slowly. The client's DATA is acknowledged only as
    the upstream takes it, so the proxy holds no more than its windows."""
    app = web.Application(client_max_size=2**40)
    app.router.add_post("/slow-upload", _slow_upload)
    runner = web.AppRunner(app, access_log=None)
    upstreams.call(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    upstreams.call(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    p = start_proxy(
        "--mode", f"reverse:http://127.0.0.1:{port}", flow_log=tmp_path / "flows.jsonl"
    )  # fmt: skip
    try:
        marker = tag()
        curl = subprocess.Popen(
            ["curl", "-sS", "--http2-prior-knowledge", "-T", "-", "-X", "POST",
             f"{p.url}/slow-upload?{marker}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert curl.stdin is not None

        def feed() -> None:
            assert curl.stdin is not None
            try:
                for chunk in pattern_chunks(GIB, 1 << 20):
                    curl.stdin.write(chunk)
            finally:
                curl.stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        started = time.monotonic()
        feeder.start()
        assert curl.stdout is not None and curl.stderr is not None
        out = curl.stdout.read()  # the answer comes once the whole body is in
        feeder.join(60)
        took = time.monotonic() - started
        peak = _status_kb(p.proc.pid, "VmHWM")
        assert curl.wait(60) == 0, curl.stderr.read()
        seen = json.loads(out)
        assert seen == {"sha256": pattern_sha256(GIB), "size": GIB}, seen
        assert took > 0.8 * GIB / READ_RATE, f"the upstream was not slow ({took:.1f} s)"
        assert peak < RSS_LIMIT_KB, f"VmHWM {peak} kB"
        [rec] = records_for(p, marker)
        assert_h2_record(rec)
        assert rec["request"]["body_size"] == GIB
    finally:
        p.stop()
        upstreams.call(runner.cleanup())
