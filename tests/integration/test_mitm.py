"""TLS interception end to end: our CA, per-host leaves, failures, passthrough."""

from __future__ import annotations

import hashlib
import shutil
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.certs import CertAuthority
from tests.support.proxyproc import ProxyProcess, our_ca, running_proxy, start_proxy
from tests.support.rawhttp import connect, recv_response
from tests.support.upstreams import Upstreams, make_app, pattern_sha256, start_https


@dataclass
class HttpsUpstreams:
    ca: CertAuthority
    good: int  # valid for localhost and 127.0.0.1
    expired: int
    wrong_name: int


@pytest.fixture(scope="module")
def https(
    upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpsUpstreams]:
    ca = CertAuthority.create(tmp_path_factory.mktemp("testca"))
    runners = []
    ports = []
    for file_name, names, expired in [
        ("good.pem", ["localhost", "127.0.0.1"], False),
        ("expired.pem", ["localhost", "127.0.0.1"], True),
        ("wrong.pem", ["elsewhere.test"], False),
    ]:
        cert = ca.server_cert(names, file_name, expired=expired)
        runner, port = upstreams.call(start_https(make_app(), str(cert)))
        runners.append(runner)
        ports.append(port)
    yield HttpsUpstreams(ca, *ports)
    for r in runners:
        upstreams.call(r.cleanup())


@pytest.fixture(scope="module")
def mitm(https: HttpsUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    d = tmp_path_factory.mktemp("mitm")
    p = start_proxy(
        "--mitm", "--certs", str(d / "certs"), "--upstream-ca", str(https.ca.cert_path),
        "--ignore-hosts", rf"^localhost:{https.wrong_name}$",
        flow_log=d / "flows.jsonl",
    )  # fmt: skip
    yield p
    p.stop()


def curl(p: ProxyProcess, url: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "-x", p.url, url, *extra], capture_output=True, timeout=60
    )


def test_curl_through_mitm_byte_identical_and_logged(
    mitm: ProxyProcess, https: HttpsUpstreams
) -> None:
    size = 1024 * 1024
    out = curl(mitm, f"https://localhost:{https.good}/bytes/{size}", "--cacert", our_ca(mitm))
    assert out.returncode == 0, out.stderr
    assert hashlib.sha256(out.stdout).hexdigest() == pattern_sha256(size)
    recs = [r for r in mitm.records(1) if r["request"]["url"].endswith(f"/bytes/{size}")]
    assert recs, "the decrypted request is in the flow log"
    rec = recs[0]
    assert rec["request"]["url"] == f"https://localhost:{https.good}/bytes/{size}"
    assert rec["response"]["status"] == 200
    tls = rec["tls"]
    assert tls["intercepted"] is True and tls["keylog"] is False
    # curl offers h2 first, and gets it: the proxy speaks HTTP/2 to clients.
    assert tls["client"]["sni"] == "localhost" and tls["client"]["alpn"] == "h2"
    assert rec["request"]["http_version"] == "HTTP/2.0"
    assert tls["server"]["certificate"]["issuer"] == "CN=tapproxy test CA"


def test_python_ssl_client_trusting_only_our_ca(mitm: ProxyProcess, https: HttpsUpstreams) -> None:
    s = connect(mitm.port)
    s.sendall(
        b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (https.good, https.good)
    )
    assert s.recv(1024).startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context(cafile=our_ca(mitm))
    tls = ctx.wrap_socket(s, server_hostname="127.0.0.1")  # an IP: checked against an IP SAN
    tls.sendall(b"GET /echo/ip HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    resp = recv_response(tls)
    assert resp.startswith(b"HTTP/1.1 200 ") and b'"path": "/echo/ip"' in resp
    issuer = dict(x[0] for x in tls.getpeercert()["issuer"])
    assert issuer["organizationName"] == "tapproxy"
    tls.close()


def test_httpx_requests_and_aiohttp_through_mitm(mitm: ProxyProcess, https: HttpsUpstreams) -> None:
    """The Python clients people script with, each trusting only our CA, keep-alive."""
    import asyncio

    import aiohttp
    import httpx
    import requests

    base = f"https://localhost:{https.good}/echo"
    verify = ssl.create_default_context(cafile=our_ca(mitm))
    with httpx.Client(proxy=mitm.url, verify=verify) as client:
        for i in range(3):  # one tunnel, three requests
            r = client.get(f"{base}/httpx/{i}")
            assert r.status_code == 200 and f"/echo/httpx/{i}" in r.text
    with requests.Session() as session:
        session.proxies = {"https": mitm.url}
        for i in range(3):
            r = session.post(f"{base}/requests/{i}", data=b"x" * 100_000, verify=our_ca(mitm))
            assert r.status_code == 200 and f"/echo/requests/{i}" in r.text

    async def with_aiohttp() -> list[int]:
        ctx = ssl.create_default_context(cafile=our_ca(mitm))
        async with aiohttp.ClientSession() as session:
            statuses = []
            for i in range(3):
                url = f"{base}/aiohttp/{i}"
                async with session.get(url, proxy=mitm.url, ssl=ctx) as resp:
                    assert f"/echo/aiohttp/{i}" in await resp.text()
                    statuses.append(resp.status)
            return statuses

    assert asyncio.run(with_aiohttp()) == [200, 200, 200]
    wanted = {f"{base}/{name}/{i}" for name in ("httpx", "requests", "aiohttp") for i in range(3)}
    deadline = time.monotonic() + 10
    while True:  # the flow log is written in batches: wait (bounded) for all nine
        urls = {r["request"]["url"] for r in mitm.records() if isinstance(r.get("request"), dict)}
        if wanted <= urls or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert wanted <= urls, wanted - urls


def test_client_close_notify_ends_the_intercepted_connection(
    mitm: ProxyProcess, https: HttpsUpstreams
) -> None:
    """close_notify is the client's end of stream (RFC 8446 §6.1): we answer in kind."""
    s = connect(mitm.port, timeout=5)
    s.sendall(
        b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (https.good, https.good)
    )
    assert s.recv(1024).startswith(b"HTTP/1.1 200")
    tls = ssl.create_default_context(cafile=our_ca(mitm)).wrap_socket(
        s, server_hostname="127.0.0.1"
    )
    tls.sendall(b"GET /echo/a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert recv_response(tls).startswith(b"HTTP/1.1 200 ")
    t0 = time.monotonic()
    plain = tls.unwrap()  # sends close_notify, waits for ours (5 s socket timeout)
    assert time.monotonic() - t0 < 3
    assert plain.recv(1) == b""  # and then the TCP connection is closed
    plain.close()


def test_known_host_skips_the_probe_and_reuses_the_pooled_upstream(
    mitm: ProxyProcess, https: HttpsUpstreams
) -> None:
    """The upstream's names are learnt once; later tunnels take the pooled connection."""
    ctx = ssl.create_default_context(cafile=our_ca(mitm))
    peers, names = [], []
    for _ in range(3):
        s = connect(mitm.port, timeout=5)
        s.sendall(
            b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % ((https.good,) * 2)
        )
        assert s.recv(1024).startswith(b"HTTP/1.1 200")
        tls = ctx.wrap_socket(s, server_hostname="localhost")
        tls.sendall(b"GET /peer HTTP/1.1\r\nHost: localhost\r\n\r\n")
        resp = recv_response(tls)
        assert resp.startswith(b"HTTP/1.1 200 ")
        peers.append(resp.split(b"\r\n\r\n", 1)[1])
        names.append(tls.getpeercert()["subjectAltName"])
        tls.close()
    assert len(set(peers)) == 1, peers  # one upstream connection for all three
    assert names[0] == names[1] == names[2]  # the same leaf, with the upstream's names
    assert ("IP Address", "127.0.0.1") in names[0]


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("expired", b"certificate has expired"),
        ("wrong_name", b"Hostname mismatch"),
        ("untrusted", b"unable to get local issuer certificate"),
    ],
)
def test_bad_upstream_certificate_is_502_naming_why(
    which: str, reason: bytes, https: HttpsUpstreams, tmp_path: Path
) -> None:
    port = https.good if which == "untrusted" else getattr(https, which)
    extra = [] if which == "untrusted" else ["--upstream-ca", str(https.ca.cert_path)]
    with running_proxy("--mitm", "--certs", str(tmp_path / "c"), *extra) as p:
        out = curl(p, f"https://localhost:{port}/echo", "--cacert", our_ca(p))
    assert out.stdout.startswith(b"502 Bad Gateway: upstream localhost:%d" % port), out
    assert reason in out.stdout
    # What to do about it (issue 14 item 8).
    assert b"--upstream-ca FILE trusts the server's CA; --insecure skips verification" in out.stdout


def test_insecure_skips_upstream_verification(https: HttpsUpstreams, tmp_path: Path) -> None:
    with running_proxy("--mitm", "--insecure", "--certs", str(tmp_path / "c")) as p:
        out = curl(p, f"https://localhost:{https.expired}/echo/x", "--cacert", our_ca(p))
        assert "NOT verified" in p.stderr_text  # the warning is printed at start
    assert b'"path": "/echo/x"' in out.stdout


def test_client_trusting_another_ca_is_logged(mitm: ProxyProcess, https: HttpsUpstreams) -> None:
    out = curl(
        mitm, f"https://localhost:{https.good}/echo/rejected", "--cacert", str(https.ca.cert_path)
    )
    assert out.returncode != 0
    recs = [r for r in mitm.records(1) if r.get("error") and "rejected" in r["error"]]
    if not recs:
        recs = [
            r for r in mitm.records(10**6, timeout=3) if r.get("error") and "rejected" in r["error"]
        ]
    assert recs, "the flow log says the client rejected our certificate"
    assert "client rejected the proxy's certificate for localhost" in recs[0]["error"]
    assert "unknown_ca" in recs[0]["error"]


def test_ignored_host_is_relayed_untouched(mitm: ProxyProcess, https: HttpsUpstreams) -> None:
    # --ignore-hosts ^localhost:<wrong_name>$: the client must see the upstream's own
    # certificate (for elsewhere.test, issued by the test CA), not one of ours.
    s = connect(mitm.port)
    port = https.wrong_name
    s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (port, port))
    assert s.recv(1024).startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context(cafile=str(https.ca.cert_path))
    tls = ctx.wrap_socket(s, server_hostname="elsewhere.test")
    cert = tls.getpeercert()
    assert dict(x[0] for x in cert["issuer"])["commonName"] == "tapproxy test CA"
    tls.sendall(b"GET /echo/raw HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n")
    assert b'"path": "/echo/raw"' in recv_response(tls)
    tls.close()


def test_ca_key_private_and_never_served(mitm: ProxyProcess) -> None:
    certs = Path(our_ca(mitm)).parent
    key_file = certs / "tapproxy-ca-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    key_body = b"".join(key.splitlines()[1:-1])
    for path in (
        "/",
        "/cert/pem",
        "/cert/der",
        "/cert/p12",
        "/key",
        "/cert/key",
        "/../tapproxy-ca-key.pem",
    ):
        out = curl(mitm, f"http://tapproxy.ca{path}")
        assert out.returncode == 0
        assert b"PRIVATE KEY" not in out.stdout and key_body[:40] not in out.stdout
    pem = curl(mitm, "http://tapproxy.ca/cert/pem").stdout
    assert pem == Path(our_ca(mitm)).read_bytes()


def test_keylog_lets_tshark_decrypt(https: HttpsUpstreams, tmp_path: Path) -> None:
    if not (shutil.which("tshark") and shutil.which("tcpdump")):
        pytest.skip("tshark/tcpdump not installed (.ci/run installs them)")
    keylog = tmp_path / "keys.log"
    cap = tmp_path / "cap.pcap"
    with running_proxy(
        "--mitm", "--certs", str(tmp_path / "c"), "--upstream-ca", str(https.ca.cert_path),
        "--keylog", str(keylog), flow_log=tmp_path / "f.jsonl",
    ) as p:  # fmt: skip
        dump = subprocess.Popen(
            ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-w", str(cap), f"tcp port {p.port}"],
            stderr=subprocess.PIPE,
        )
        assert dump.stderr is not None
        line = dump.stderr.readline()  # "listening on lo, ..." once the capture runs
        assert b"listening" in line, line
        out = curl(
            p, f"https://localhost:{https.good}/echo/keylog-check", "--cacert", our_ca(p),
            "--http1.1",  # tshark's http.request is HTTP/1's
        )  # fmt: skip
        assert b"keylog-check" in out.stdout
        dump.terminate()
        dump.wait(10)
    assert b"CLIENT_" in keylog.read_bytes() or b"TRAFFIC_SECRET" in keylog.read_bytes()
    shown = subprocess.run(
        ["tshark", "-r", str(cap), "-o", f"tls.keylog_file:{keylog}", "-Y", "http.request",
         "-T", "fields", "-e", "http.request.uri"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "/echo/keylog-check" in shown.stdout, shown.stdout + shown.stderr
    recs = [r for r in p.records(1) if r.get("tls")]
    assert recs and all(r["tls"]["keylog"] is True for r in recs)  # the record says so


def test_plain_http_inside_connect_is_decoded(mitm: ProxyProcess, upstreams: Upstreams) -> None:
    s = connect(mitm.port)
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % upstreams.port)
    assert s.recv(1024).startswith(b"HTTP/1.1 200")
    s.sendall(b"GET /echo/inside HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert b'"path": "/echo/inside"' in recv_response(s)
    s.close()
    recs = [r for r in mitm.records(1) if r["request"]["url"].endswith("/echo/inside")]
    if not recs:
        recs = [
            r
            for r in mitm.records(10**6, timeout=3)
            if r["request"]["url"].endswith("/echo/inside")
        ]
    assert recs and recs[0]["request"]["url"] == f"http://127.0.0.1:{upstreams.port}/echo/inside"


def test_silent_client_gets_raw_relay(mitm: ProxyProcess, upstreams: Upstreams) -> None:
    async def banner(conn):  # type: ignore[no-untyped-def]
        conn.send(b"220 server speaks first\r\n")
        await conn.writer.drain()
        await conn.read_some(5)

    server = upstreams.raw(banner)
    s = connect(mitm.port)
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % server.port)
    data = b""
    while b"220 server" not in data:
        chunk = s.recv(1024)
        assert chunk
        data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    s.close()


def test_auto_passthrough_after_a_client_rejects_our_certificate(
    https: HttpsUpstreams, tmp_path: Path
) -> None:
    args = ["--mitm", "--auto-passthrough", "--certs", str(tmp_path / "c"),
            "--upstream-ca", str(https.ca.cert_path)]  # fmt: skip
    url = f"https://localhost:{https.good}/echo/pinned"
    with running_proxy(*args, flow_log=tmp_path / "f.jsonl") as p:
        # A client that pins (trusts only the real CA) refuses our leaf once...
        first = curl(p, url, "--cacert", str(https.ca.cert_path))
        assert first.returncode != 0
        # ...after which the host is relayed untouched and the same client works.
        second = curl(p, url, "--cacert", str(https.ca.cert_path))
        assert second.returncode == 0 and b'"path": "/echo/pinned"' in second.stdout
        recs = p.records(2)
    assert any(
        "later connections to this host will be passed through" in (r["error"] or "") for r in recs
    )
    assert any(r["kind"] == "tunnel" and r["tls"]["intercepted"] is False for r in recs)


def test_reverse_listener_terminates_client_tls(upstreams: Upstreams, tmp_path: Path) -> None:
    args = ["--mitm", "--certs", str(tmp_path / "c"), "--mode", f"reverse:{upstreams.url}"]
    with running_proxy(*args, flow_log=tmp_path / "f.jsonl") as p:
        tls = curl(
            p, f"https://localhost:{p.port}/echo/tls", "--cacert", our_ca(p), "--noproxy", "*"
        )
        plain = curl(p, f"http://127.0.0.1:{p.port}/echo/plain", "--noproxy", "*")
        recs = p.records(2)
    assert b'"path": "/echo/tls"' in tls.stdout, tls.stderr
    assert b'"path": "/echo/plain"' in plain.stdout
    by_path = {r["request"]["url"].rsplit("/", 1)[1]: r for r in recs}
    assert by_path["tls"]["tls"]["intercepted"] is True
    assert by_path["tls"]["tls"]["client"]["sni"] == "localhost"
    assert "tls" not in by_path["plain"]
