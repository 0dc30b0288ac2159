"""Upstream mutual TLS with ``--client-certs``: nginx with ``ssl_verify_client on``
reached with the configured certificate; without one, nginx's own refusal. A
stricter server (``openssl s_server -Verify``, TLS 1.3 and 1.2)
fails the handshake: the 502 names the alert and says a client certificate
is needed. The certificate is chosen by SNI from a directory of HOST.pem
files; a single file serves every host; a bad file stops the start."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.certs import CertAuthority
from tests.support.nginx import nginx_conf
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import Upstreams

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is needed")

SERVER = """\
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {cert};
        ssl_certificate_key {cert};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        location / {{ return 200 "client $ssl_client_s_dn verify $ssl_client_verify\\n"; }}
    }}
"""


@dataclass
class Servers:
    ca: CertAuthority
    certs: Path  # a directory with localhost.pem (client certificate and key)
    nginx: int
    strict13: int  # openssl s_server -Verify 1, TLS 1.3 only
    strict12: int  # the same, TLS 1.2 only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args[0]} exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("nginx never listened")


def _strict(cert: Path, ca: Path, version: str) -> tuple[subprocess.Popen[bytes], int]:
    """``openssl s_server`` demanding a client certificate (``-Verify``): it fails
    the handshake with a TLS alert, as OpenSSL-based servers do."""
    port = _free_port()
    proc = subprocess.Popen(
        ["openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}", "-cert", str(cert),
         "-key", str(cert), "-CAfile", str(ca), "-Verify", "1", "-verify_return_error",
         f"-{version}", "-www"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_port(port, proc)
    return proc, port


@pytest.fixture(scope="module")
def servers(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    tmp = tmp_path_factory.mktemp("mtls")
    ca = CertAuthority.create(tmp / "ca")
    cert = ca.server_cert(["localhost", "127.0.0.1"], "server.pem")
    certs = tmp / "clients"
    certs.mkdir()
    ca.client_cert("tapproxy-client", "client.pem").rename(certs / "localhost.pem")
    port = _free_port()
    server = SERVER.format(port=port, cert=cert, ca=ca.cert_path)
    (tmp / "nginx.conf").write_text(nginx_conf(tmp, server))
    nginx = subprocess.Popen(
        [str(NGINX), "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stricts: list[subprocess.Popen[bytes]] = []
    try:
        _wait_port(port, nginx)
        s13, p13 = _strict(cert, ca.cert_path, "tls1_3")
        stricts.append(s13)
        s12, p12 = _strict(cert, ca.cert_path, "tls1_2")
        stricts.append(s12)
        yield Servers(ca, certs, port, p13, p12)
    finally:
        for proc in stricts:
            proc.kill()
            proc.wait(15)
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(timeout=15)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait(timeout=15)


def reverse(s: Servers, port: int, *extra: str) -> ProxyProcess:
    return start_proxy(
        "--mode", f"reverse:https://localhost:{port}", "--upstream-ca", str(s.ca.cert_path),
        *extra,
    )  # fmt: skip


def get(p: ProxyProcess, path: str = "/") -> tuple[int, str]:
    out = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", f"{p.url}{path}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    body, _, status = out.stdout.rpartition("\n")
    return int(status), body


def test_nginx_with_the_configured_certificate(servers: Servers) -> None:
    p = reverse(servers, servers.nginx, "--client-certs", str(servers.certs))
    try:
        status, body = get(p)
        assert status == 200 and "CN=tapproxy-client" in body and "verify SUCCESS" in body
    finally:
        p.stop()
    single = reverse(servers, servers.nginx, "--client-certs", str(servers.certs / "localhost.pem"))
    try:
        assert get(single)[0] == 200  # one file for every host
    finally:
        single.stop()


def test_nginx_without_a_certificate_refuses(servers: Servers, tmp_path: Path) -> None:
    other = tmp_path / "others"
    other.mkdir()
    shutil.copy(servers.certs / "localhost.pem", other / "elsewhere.test.pem")  # not our SNI
    p = reverse(servers, servers.nginx, "--client-certs", str(other))
    try:
        status, body = get(p)
        # nginx completes the handshake and answers itself (it never sets
        # FAIL_IF_NO_PEER_CERT): its 400 is relayed as the server's answer.
        assert status == 400 and "No required SSL certificate was sent" in body
    finally:
        p.stop()


@pytest.mark.parametrize("version", ["strict13", "strict12"])
def test_a_server_that_requires_one_gives_502_saying_so(servers: Servers, version: str) -> None:
    port = getattr(servers, version)
    p = reverse(servers, port)
    try:
        status, body = get(p, "/")
        assert status == 502, body
        assert "client certificate" in body, body
        if version == "strict13":  # refused after the handshake, alert 116 (RFC 8446 §4.4.2.4)
            assert "certificate_required" in body, body
    finally:
        p.stop()
    p = reverse(servers, port, "--client-certs", str(servers.certs))
    try:
        status, body = get(p, "/")
        assert status == 200 and "Client certificate" in body  # s_server's status page
    finally:
        p.stop()


def test_a_bad_client_certificate_file_stops_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    out = subprocess.run(
        ["python3", "-m", "proxy", "--client-certs", str(bad), "-p", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and f"--client-certs {bad}" in out.stderr
