"""``--pcap``: tshark reads what the proxy relayed, decrypted, like the flow log."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.certs import CertAuthority
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import Upstreams, make_app, start_https

pytestmark = pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed")


def tshark(*args: str) -> str:
    out = subprocess.run(["tshark", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def mitm_with_https(
    upstreams: Upstreams, tmp_path: Path, cap: Path
) -> tuple[ProxyProcess, Any, int, Path]:
    """An HTTPS upstream with a test CA, and a --mitm proxy writing ``cap``."""
    ca = CertAuthority.create(tmp_path / "ca")
    runner, https_port = upstreams.call(
        start_https(make_app(), str(ca.server_cert(["localhost"], "s.pem")))
    )
    certs = tmp_path / "certs"
    p = start_proxy(
        "--mitm", "--certs", str(certs), "--upstream-ca", str(ca.cert_path), "--pcap", str(cap),
        flow_log=tmp_path / "flows.jsonl",
    )  # fmt: skip
    return p, runner, https_port, certs


def test_pcap_matches_flow_log_plain_and_intercepted(upstreams: Upstreams, tmp_path: Path) -> None:
    cap = tmp_path / "live.pcapng"
    p, runner, https_port, certs = mitm_with_https(upstreams, tmp_path, cap)
    try:
        urls = [
            f"{upstreams.url}/echo/plain-1",
            f"{upstreams.url}/bytes/100000",
            f"https://localhost:{https_port}/echo/tls-1",
            f"https://localhost:{https_port}/bytes/5000",
        ]
        for url in urls:
            subprocess.run(
                ["curl", "-sS", "--fail", "-x", p.url, "--cacert", str(certs / "tapproxy-ca.pem"),
                 "--http1.1", "-o", "/dev/null", url],  # HTTP/2 has a test of its own
                check=True, timeout=30,
            )  # fmt: skip
        subprocess.run(
            ["curl", "-sS", "-x", p.url, "-d", "x=1", f"{upstreams.url}/echo/post"],
            check=True, timeout=30, capture_output=True,
        )  # fmt: skip
        records = p.records(5)
    finally:
        assert p.stop() == 0
        upstreams.call(runner.cleanup())
    http_records = [r for r in records if r["kind"] == "http"]
    assert len(http_records) == 5
    expert = tshark("-r", str(cap), "-q", "-z", "expert,warn")
    assert "Malformed" not in expert and "Error" not in expert, expert
    # The client-side conversations (to the proxy's port) list the same
    # requests as the flow log, in order, decrypted ones included.
    only = f"http.request && tcp.dstport == {p.port} && http.request.method != CONNECT"
    listing = tshark(
        "-r", str(cap), "-Y", only, "-T", "fields",
        "-e", "http.request.method", "-e", "http.request.uri", "-e", "frame.comment",
    )  # fmt: skip
    rows = [line.split("\t") for line in listing.strip().splitlines()]
    assert [(r[0], r[1].split("//", 1)[-1].split("/", 1)[-1]) for r in rows] == [
        (rec["request"]["method"], rec["request"]["url"].split("//", 1)[1].split("/", 1)[1])
        for rec in http_records
    ]
    assert [r[2] for r in rows] == [f"tapproxy flow {rec['id']}" for rec in http_records]
    # The upstream side carries the same requests in origin form.
    upstream_uris = tshark(
        "-r", str(cap), "-Y", f"http.request && tcp.dstport != {p.port}", "-T", "fields",
        "-e", "http.request.uri",
    ).split()  # fmt: skip
    assert upstream_uris == [
        "/echo/plain-1",
        "/bytes/100000",
        "/echo/tls-1",
        "/bytes/5000",
        "/echo/post",
    ]


def test_pcap_of_concurrent_connections_is_in_time_order(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    """Issue 14 item 8: packets are written in time order, so tshark shows no
    negative ``frame.time_delta`` over many interleaved connections."""
    import concurrent.futures
    import urllib.request

    cap = tmp_path / "concurrent.pcapng"
    p = start_proxy("--pcap", str(cap), flow_log=tmp_path / "flows.jsonl")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": p.url}))

    def fetch(i: int) -> int:
        path = f"/bytes/{20000 + i}" if i % 2 else f"/echo/c{i}"
        with opener.open(upstreams.url + path, timeout=30) as r:
            return len(r.read())

    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            sizes = list(pool.map(fetch, range(64)))
        assert all(sizes)
        assert len(p.records(64)) == 64
    finally:
        assert p.stop() == 0
    deltas = tshark("-r", str(cap), "-T", "fields", "-e", "frame.time_delta").split()
    assert len(deltas) > 64 * 10
    negative = [d for d in deltas if float(d) < 0]
    assert negative == [], f"{len(negative)} negative deltas of {len(deltas)}"
    expert = tshark("-r", str(cap), "-q", "-z", "expert,warn")
    assert "Malformed" not in expert, expert


def test_pcap_holds_http2_as_wireshark_decodes_it(upstreams: Upstreams, tmp_path: Path) -> None:
    """curl --http2 through --mitm: the decrypted HTTP/2 is a TCP stream of its own
    (after the CONNECT and the ClientHello), so tshark, told the port is HTTP/2
    (it has no port of its own), lists the request and its response."""
    cap = tmp_path / "h2.pcapng"
    p, runner, https_port, certs = mitm_with_https(upstreams, tmp_path, cap)
    try:
        out = subprocess.run(
            ["curl", "-sS", "--fail", "--http2", "-x", p.url, "--cacert",
             str(certs / "tapproxy-ca.pem"), "-o", "/dev/null", "-w", "%{http_version}",
             f"https://localhost:{https_port}/echo/over-h2"],
            check=True, timeout=30, capture_output=True, text=True,
        )  # fmt: skip
        assert out.stdout == "2"
        (record,) = p.records(1)
    finally:
        assert p.stop() == 0
        upstreams.call(runner.cleanup())
    assert record["request"]["http_version"] == "HTTP/2.0"
    fields = tshark(
        "-r", str(cap), "-d", f"tcp.port=={p.port},http2", "-Y", "http2.type == 1",
        "-T", "fields", "-e", "http2.headers.path", "-e", "http2.headers.status",
    )  # fmt: skip
    rows = [line.split("\t") for line in fields.strip().splitlines()]
    assert ["/echo/over-h2", ""] in rows and ["", "200"] in rows, rows
